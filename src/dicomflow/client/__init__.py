"""The Python SDK of dicomflow's native API: upload folders, follow imports and studies, fetch results.

::

    from dicomflow.client import Client, StudyFailed

    with Client("http://127.0.0.1:8080", token) as client:
        upload = client.upload_dir("ms", "scans/", "icobrain_ms")
        upload = client.wait_for_import(upload.id)
        for study in client.studies_for_upload(upload.id):
            try:
                client.wait_for_results(study.study_instance_uid, timeout=1800)
            except StudyFailed as exc:
                print(exc.reason, exc.findings)
            client.download_report_files(study.study_instance_uid, "reports/")

Errors are the classes of :mod:`dicomflow.errors`, rebuilt from the ``code`` of the API's error bodies, so
``except NotFound`` works on both sides. This package imports httpx, pydantic, ``dicomflow.schemas`` and
``dicomflow.errors`` only (Rich when a progress bar is shown), never the server's modules.
"""

from dicomflow.client._client import API_PREFIX, DEFAULT_URL, Client
from dicomflow.client._errors import error_from_response
from dicomflow.client._files import safe_name
from dicomflow.errors import (
    AlreadyExists,
    AuthenticationRequired,
    DicomflowError,
    ImportFailed,
    InvalidRequest,
    InvalidState,
    NotFound,
    PermissionDenied,
    ServerUnreachable,
    StudyFailed,
    UnknownProject,
    UnknownReportType,
    WaitTimeout,
)
from dicomflow.schemas import (
    Finding,
    Job,
    ReceivedFile,
    ResultFile,
    Stage,
    StageEntry,
    Study,
    StudyReports,
    Upload,
    UploadFileError,
    UploadState,
)

__all__ = [
    "API_PREFIX",
    "DEFAULT_URL",
    "AlreadyExists",
    "AuthenticationRequired",
    "Client",
    "DicomflowError",
    "Finding",
    "ImportFailed",
    "InvalidRequest",
    "InvalidState",
    "Job",
    "NotFound",
    "PermissionDenied",
    "ReceivedFile",
    "ResultFile",
    "ServerUnreachable",
    "Stage",
    "StageEntry",
    "Study",
    "StudyFailed",
    "StudyReports",
    "UnknownProject",
    "UnknownReportType",
    "Upload",
    "UploadFileError",
    "UploadState",
    "WaitTimeout",
    "error_from_response",
    "safe_name",
]
