"""Routes of HTTP upload sessions: start, send files (multipart, in parallel, zips too), complete, poll."""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile

from dicomflow.api._access import Caller
from dicomflow.api._application import App, application_of
from dicomflow.api._deps import current_user
from dicomflow.errors import TooLarge
from dicomflow.schemas import FileList, ReceivedFiles, Study, Upload, UploadStart
from dicomflow.usecases import uploads

router = APIRouter(dependencies=[Depends(current_user)])


@router.post("/uploads", status_code=201, summary="Start an upload")
def post_upload(body: UploadStart, app: App, caller: Caller) -> Upload:
    """Open an upload into a project (uploaders and admins of the project)."""
    return uploads.start(
        app,
        caller,
        body.project,
        body.report_type,
        force_reprocessing=body.force_reprocessing,
    )


@router.put("/uploads/{upload_id}/files", summary="Send files (multipart parts named 'file'; zips welcome)")
def put_files(
    upload_id: str,
    app: App,
    caller: Caller,
    file: Annotated[list[UploadFile], File(description="One or more files or zips.")],
) -> ReceivedFiles:
    """Store the parts under fresh safe names; the client's file names are labels, never paths."""
    parts = [(part.filename or "file", part.file) for part in file]
    return ReceivedFiles(received=uploads.add_files(app, caller, upload_id, parts))


@router.put(
    "/uploads/{upload_id}/files/{name:path}",
    summary="Send one file as the request body (DICOM or a zip; no multipart)",
    response_model=ReceivedFiles,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                kind: {"schema": {"type": "string", "format": "binary"}}
                for kind in ("application/dicom", "application/zip", "application/octet-stream")
            },
        }
    },
)
async def put_file(
    upload_id: str,
    name: Annotated[str, Path(description="The file's label (never used as a path on the server).")],
    request: Request,
    caller: Caller,
) -> Response:
    """The cheapest way to send: the body is the file, as Orthanc's ``POST /instances`` takes it.

    The fast lane (:func:`~dicomflow.api._fastlane.put_file_fast`) calls this function itself, with the
    caller it resolved without FastAPI's routing and dependency resolution (the hot path of an upload).
    """
    application = application_of(request)
    uploads.check(application, caller, upload_id, "send")  # before the body is read
    limit = application.settings.uploads.max_file_bytes
    declared = int(request.headers["content-length"]) if "content-length" in request.headers else None
    if declared is not None and declared > limit:
        raise TooLarge(f"{name!r} is larger than {limit} bytes")
    limiter: anyio.CapacityLimiter = request.app.state.ingest_limiter
    if declared is not None and declared <= application.settings.uploads.in_memory_bytes:  # one instance
        data = await _body(request, declared)
        received = await anyio.to_thread.run_sync(
            uploads.add_bytes, application, caller, upload_id, name, data, limiter=limiter
        )
    else:  # a big file or zip, or a body of unknown length: written to the upload's folder as it arrives
        part = uploads.new_part(application, caller, upload_id)
        try:
            await _write_body(request, part, name, limit)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        received = await anyio.to_thread.run_sync(
            uploads.add_part, application, caller, upload_id, name, part, limiter=limiter
        )
    answer = {"received": [{"name": received.name, "size": received.size}]}  # ReceivedFiles, no model
    return Response(json.dumps(answer), media_type="application/json")


async def _body(request: Request, declared: int) -> bytearray:
    """The body, read into one buffer of the declared size (never a list of chunks and their join)."""
    body = bytearray(declared)
    at = 0
    with memoryview(body) as view:
        async for chunk in request.stream():
            if at + len(chunk) > declared:
                raise TooLarge(f"the request body is larger than its Content-Length {declared}")
            view[at : at + len(chunk)] = chunk
            at += len(chunk)
    del body[at:]
    return body


async def _write_body(request: Request, part: FsPath, name: str, limit: int) -> None:
    """Write the body to ``part`` as it arrives, at most ``limit`` bytes."""
    size = 0
    with part.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"{name!r} is larger than {limit} bytes")
            out.write(chunk)


@router.post("/uploads/{upload_id}/complete", status_code=202, summary="Complete an upload; import starts")
def post_complete(upload_id: str, app: App, caller: Caller) -> Upload:
    """The import runs in the background; poll ``GET /uploads/{id}`` for its state."""
    return uploads.complete(app, caller, upload_id)


@router.get("/uploads", summary="Uploads, newest first")
def get_uploads(
    app: App,
    caller: Caller,
    project: Annotated[str | None, Query(description="Only this project's uploads.")] = None,
) -> list[Upload]:
    """The uploads of the caller's projects."""
    return uploads.list_uploads(app, caller, project)


@router.get("/uploads/{upload_id}", summary="One upload: state, counts, per-file errors, studies")
def get_upload(upload_id: str, app: App, caller: Caller) -> Upload:
    """``state`` is uploading, importing, imported, failed or expired."""
    return uploads.get(app, caller, upload_id)


@router.get("/uploads/{upload_id}/files", summary="Files received and not yet imported")
def get_upload_files(upload_id: str, app: App, caller: Caller) -> FileList:
    """Stored names (a fresh UUID and the sanitised client name); empty once imported."""
    return FileList(files=uploads.received_files(app, caller, upload_id))


@router.get("/uploads/{upload_id}/studies", summary="Studies the upload's import found")
def get_upload_studies(upload_id: str, app: App, caller: Caller) -> list[Study]:
    """Each study version handed to the processing flow, with stage and jobs."""
    return uploads.studies(app, caller, upload_id)
