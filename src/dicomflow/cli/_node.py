"""``dicomflow node PIPELINE.py``: one report type as its own DICOM node, for DicomNode users moving over."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from dicomflow.cli._options import load_settings


class GroupBy(StrEnum):
    """What instances are grouped by before the inputs are checked (DicomNode's patient identifier)."""

    PATIENT_ID = "PatientID"
    STUDY_INSTANCE_UID = "StudyInstanceUID"


def node(
    pipeline: Annotated[
        Path, typer.Argument(help="Python file defining the report type (a ReportType subclass).")
    ],
    report_type: Annotated[
        str | None, typer.Option(help="Which report type, if the file defines several.")
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="DICOM port.")] = 11112,
    ae_title: Annotated[str, typer.Option(help="AE title of the node.")] = "DICOMNODE",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    group_by: Annotated[
        GroupBy, typer.Option(help="Group instances by patient or by study.")
    ] = GroupBy.PATIENT_ID,
    reject_status: Annotated[
        int,
        typer.Option(
            parser=lambda text: _status_code(text),
            metavar="HEX",
            help="C-STORE status when no input accepts an instance: 0xB007 (a warning, the sender does "
            "not retry) or a failure status such as 0xA900.",
        ),
    ] = "0xB007",  # type: ignore[assignment]  # parsed by _status_code
    data_dir: Annotated[Path, typer.Option(help="Data directory of the node.")] = Path("dicomflow-node-data"),
) -> None:
    """Run one report type as a DICOM SCP with durable jobs: store what its inputs accept, refuse the rest
    with REJECT_STATUS, process a group when an association is released and every input has its series."""
    from dicomflow.dimse import configure, listen
    from dicomflow.dimse._node import NodeReceiver
    from dicomflow.errors import AlreadyExists
    from dicomflow.index import catalog, migrate, writing
    from dicomflow.ingest import open_ingestor, recover_store
    from dicomflow.jobs import ProcessingEngine
    from dicomflow.pipelines import load_report_types, report_types_from

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plugin = str(pipeline.resolve())
    defined = [t.name for t in report_types_from(plugin)]
    name = report_type or (defined[0] if len(defined) == 1 else None)
    if name is None:
        raise typer.BadParameter(
            f"{pipeline} defines {', '.join(defined)}; choose one", param_hint="--report-type"
        )
    settings = load_settings(
        data_dir,
        **{
            "dimse.port": port,
            "dimse.ae_title": ae_title,
            "dimse.host": host,
            "processing.plugins": [plugin],
        },
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    processing = settings.processing
    registry = load_report_types(processing.plugins, processing.aliases, processing.options)
    chosen = registry.get(name)
    configure(settings)
    ingestor = open_ingestor(settings)
    migrate(ingestor.engine)
    with contextlib.suppress(AlreadyExists), writing(ingestor.engine) as conn:
        catalog.create_project(conn, chosen.name)
    recover_store(ingestor)
    engine = ProcessingEngine(settings, ingestor.engine, registry, track=False)
    scope = "subject" if group_by is GroupBy.PATIENT_ID else "session"

    def released(study_uids: set[str]) -> None:
        from dicomflow.index import reading
        from dicomflow.index.studies import sessions_of_study_uid

        with reading(ingestor.engine) as conn:
            sessions = [s for uid in study_uids for s in sessions_of_study_uid(conn, uid)]
        engine.flow.offer(sessions, chosen.name, scope=scope, actor="node")

    receiver = NodeReceiver(
        settings.dimse,
        ingestor,
        ingestor.engine,
        accepts=_acceptor(chosen),
        project=chosen.name,
        on_released=released,
        reject_status=reject_status,
    )
    server = receiver.serve(listen(settings, option="--port"))
    engine.start()
    logging.getLogger("dicomflow").info(
        "node %s (%s v%s) on %s:%d, grouping by %s, data in %s",
        ae_title,
        chosen.name,
        chosen.version,
        host,
        port,
        group_by.value,
        settings.data_dir.resolve(),
    )
    _wait_for_signal()
    server.shutdown()
    engine.stop()
    ingestor.close()


def _status_code(text: str | int) -> int:
    if isinstance(text, int):
        return text
    try:
        code = int(text, 16)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a hexadecimal status such as 0xB007") from None
    if not 0 <= code <= 0xFFFF:
        raise typer.BadParameter(f"{text} is not a 16-bit status")
    return code


def _acceptor(report_type: Any) -> Any:
    from pydicom.dataset import Dataset

    from dicomflow.pipelines import keyword

    inputs = report_type.input_objects()

    def accepts(header: Dataset) -> str | None:
        for spec in inputs.values():
            if spec.accepts(header) and all(keyword(tag) in header for tag in spec.required_tags):
                return None
        wanted = "; ".join(f"{n}: {s.describe()}" for n, s in inputs.items())
        return f"no input of {report_type.name} accepts it ({wanted})"

    return accepts


def _wait_for_signal() -> None:
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
