"""Routes over stored objects: series, instances (header as DICOM JSON, or exact bytes) and zip downloads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from dicomflow.api._access import Caller
from dicomflow.api._application import App
from dicomflow.api._archive import CHUNK, Blobs, zip_stream
from dicomflow.api._deps import current_user
from dicomflow.usecases import catalog
from dicomflow.usecases.catalog import BlobRef, SeriesInfo

router = APIRouter(dependencies=[Depends(current_user)])

_Responses = dict[int | str, dict[str, Any]]
_ZIP: _Responses = {
    200: {"content": {"application/zip": {}}, "description": "A zip of `<sop_instance_uid>.dcm`."}
}
_DICOM: _Responses = {200: {"content": {"application/dicom": {}}, "description": "The instance as received."}}
_DICOM_JSON: _Responses = {
    200: {"content": {"application/dicom+json": {}}, "description": "DICOM JSON model."}
}


@router.get("/series/{series_instance_uid}", summary="A series with its instances")
def get_series(series_instance_uid: str, app: App, caller: Caller) -> SeriesInfo:
    """Where the series was placed, what it is, and its instances by instance number."""
    return catalog.series(app, caller, series_instance_uid)


@router.get(
    "/series/{series_instance_uid}/download",
    summary="Download a series as a zip",
    response_class=StreamingResponse,
    responses=_ZIP,
)
def download_series(series_instance_uid: str, app: App, caller: Caller) -> StreamingResponse:
    """Every instance of the series, byte-identical, streamed as a zip."""
    blobs = catalog.series_blobs(app, caller, series_instance_uid)
    return _zip_response(app.store, blobs, series_instance_uid)


@router.get(
    "/sessions/{study_instance_uid}/download",
    summary="Download a session (study) as a zip",
    response_class=StreamingResponse,
    responses=_ZIP,
)
def download_session(study_instance_uid: str, app: App, caller: Caller) -> StreamingResponse:
    """Every instance of the study (its session in the caller's project), byte-identical, series after
    series, streamed as a zip."""
    blobs = catalog.study_blobs(app, caller, study_instance_uid)
    return _zip_response(app.store, blobs, study_instance_uid)


@router.get(
    "/instances/{sop_instance_uid}",
    summary="The header of an instance as DICOM JSON",
    response_class=JSONResponse,
    responses=_DICOM_JSON,
)
def get_instance(sop_instance_uid: str, app: App, caller: Caller) -> JSONResponse:
    """The stored instance read up to its pixel data, in the DICOM JSON model."""
    header = catalog.instance_header(app, caller, sop_instance_uid)
    return JSONResponse(header, media_type="application/dicom+json")


@router.get(
    "/instances/{sop_instance_uid}/file",
    summary="The instance's bytes",
    response_class=StreamingResponse,
    responses=_DICOM,
)
def get_instance_file(sop_instance_uid: str, app: App, caller: Caller) -> StreamingResponse:
    """The Part 10 file exactly as received (``application/dicom``)."""
    blob, handle = catalog.open_instance(app, caller, sop_instance_uid)
    headers = {"Content-Length": str(blob.size), **_attachment(f"{sop_instance_uid}.dcm")}
    return StreamingResponse(_chunks(handle), media_type="application/dicom", headers=headers)


def _zip_response(store: Blobs, blobs: list[BlobRef], uid: str) -> StreamingResponse:
    return StreamingResponse(
        zip_stream(store, blobs), media_type="application/zip", headers=_attachment(f"{uid}.zip")
    )


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while block := handle.read(CHUNK):
            yield block
