"""``dicomflow node PIPELINE.py``: one report type as its own DICOM node, for DicomNode users moving over."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

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
    from dicomflow.pipelines import report_types_from
    from dicomflow.serve import serve_node

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
    serve_node(settings, name, group_by=group_by.value, reject_status=reject_status)


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
