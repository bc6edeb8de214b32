"""``dicomflow node``: one report type as its own DICOM node (one process: receiver and processing)."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from dicomflow.config import Settings
from dicomflow.serve._signals import wait_for_signal
from dicomflow.serve._sockets import listen

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

LOGGER = logging.getLogger("dicomflow")
GROUP_SCOPES = {"PatientID": "subject", "StudyInstanceUID": "session"}
"""What instances are grouped by (DicomNode's patient identifier), and the flow's scope for it."""


def serve_node(settings: Settings, report_type: str, *, group_by: str, reject_status: int) -> None:
    """Run ``report_type`` as a DICOM SCP with durable jobs until SIGTERM or SIGINT.

    It stores what the report type's inputs accept, refuses the rest with ``reject_status``, and offers a
    group (``group_by``: ``PatientID`` or ``StudyInstanceUID``) to the flow when an association is released.

    Parameters
    ----------
    settings
        The node's settings (``processing.plugins`` names the file that defines ``report_type``).
    report_type
        Name of the report type to run.
    group_by
        A key of :data:`GROUP_SCOPES`.
    reject_status
        C-STORE status of an instance no input accepts.
    """
    from dicomflow.dimse import NodeReceiver, configure
    from dicomflow.errors import AlreadyExists
    from dicomflow.index import reading
    from dicomflow.index.studies import sessions_of_study_uid
    from dicomflow.ingest import recover_store
    from dicomflow.jobs import ProcessingEngine
    from dicomflow.runtime import open_application
    from dicomflow.usecases.catalog import create_project

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure(settings)
    application = open_application(settings)
    chosen = application.registry.get(report_type)
    with contextlib.suppress(AlreadyExists):
        create_project(application, None, chosen.name)
    recover_store(application.ingestor)
    processing = ProcessingEngine(settings, application.engine, track=False, flow=application.flow)
    scope = GROUP_SCOPES[group_by]

    def released(study_uids: set[str]) -> None:
        with reading(application.engine) as conn:
            sessions = [s for uid in study_uids for s in sessions_of_study_uid(conn, uid)]
        application.flow.offer(sessions, chosen.name, scope=scope, actor="node")

    receiver = NodeReceiver(
        application,
        accepts=_acceptor(chosen),
        project=chosen.name,
        on_released=released,
        reject_status=reject_status,
    )
    server = receiver.serve(listen(settings, option="--port"))
    processing.start()
    dimse = settings.dimse
    LOGGER.info(
        "node %s (%s v%s) on %s:%d, grouping by %s, data in %s",
        dimse.ae_title,
        chosen.name,
        chosen.version,
        dimse.host,
        dimse.port,
        group_by,
        settings.data_dir.resolve(),
    )
    wait_for_signal()
    server.shutdown()
    processing.stop()
    application.close()


def _acceptor(report_type: Any) -> Any:
    from dicomflow.pipelines import keyword

    inputs = report_type.input_objects()

    def accepts(header: Dataset) -> str | None:
        for spec in inputs.values():
            if spec.accepts(header) and all(keyword(tag) in header for tag in spec.required_tags):
                return None
        wanted = "; ".join(f"{n}: {s.describe()}" for n, s in inputs.items())
        return f"no input of {report_type.name} accepts it ({wanted})"

    return accepts
