"""What users read of the catalogue: projects, the hierarchy, series and instances, downloads, datasets
and the event log; and creating projects.

Each use case takes the process's :class:`~dicomflow.runtime.Application` and the caller
(:class:`~dicomflow.usecases.access.Access`, or ``None`` for the local operator of the command line, who
sees every project), opens one short transaction and shows only the projects the caller belongs to: a
series or study in no such project is not found, exactly as if it did not exist.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any

import pydicom
from pydicom.errors import InvalidDicomError

from dicomflow.errors import PermissionDenied, StorageError
from dicomflow.index import catalog, instances, reading, writing
from dicomflow.index.catalog import (
    DEFAULT_GROUP,
    AcquisitionNode,
    Counts,
    DatasetInfo,
    DatasetSeriesInfo,
    EventInfo,
    GroupNode,
    ProjectInfo,
    ProjectNode,
    SessionNode,
    SubjectNode,
)
from dicomflow.index.instances import BlobRef, InstanceInfo, Sees, SeriesInfo
from dicomflow.index.studies import list_studies
from dicomflow.usecases.access import Access

if TYPE_CHECKING:
    from dicomflow.runtime import Application

__all__ = [
    "DEFAULT_GROUP",
    "AcquisitionNode",
    "BlobRef",
    "Counts",
    "DatasetInfo",
    "DatasetSeriesInfo",
    "EventInfo",
    "GroupNode",
    "InstanceInfo",
    "ProjectInfo",
    "ProjectNode",
    "SeriesInfo",
    "SessionNode",
    "StudyStage",
    "SubjectNode",
    "create_project",
    "events",
    "hierarchy",
    "instance_header",
    "list_datasets",
    "list_projects",
    "open_instance",
    "series",
    "series_blobs",
    "study_blobs",
    "study_stages",
]

_HEADER_READ = 1 << 20  # bytes read for an instance's header (all of it if it is longer)


@dataclass(frozen=True, slots=True)
class StudyStage:
    """Where the newest version of a study is in the processing flow."""

    stage: str
    version: int
    reason: str


def _sees(caller: Access | None) -> Sees | None:
    return None if caller is None else caller.sees


def _require_admin(caller: Access | None, action: str) -> None:
    if caller is not None and caller.roles is not None:
        raise PermissionDenied(f"only installation admins may {action}")


# -- projects and the hierarchy -----------------------------------------------------------------------------


def create_project(
    app: Application, caller: Access | None, label: str, group: str = DEFAULT_GROUP
) -> ProjectInfo:
    """Create a project, and its group if there is none of that id (installation admins only).

    Raises
    ------
    AlreadyExists
        The group holds a project of this label (in any case).
    PermissionDenied
        The caller is not an installation admin.
    ValueError
        The label or group is empty or too long.
    """
    _require_admin(caller, "create projects")
    with writing(app.engine) as conn:
        return catalog.create_project(conn, label, group)


def list_projects(app: Application, caller: Access | None, group: str | None = None) -> list[ProjectInfo]:
    """The projects the caller belongs to (all, for admins), by group and label (of ``group`` if given)."""
    with reading(app.engine) as conn:
        found = catalog.list_projects(conn, group)
    return found if caller is None else [p for p in found if caller.sees(p.group, p.label)]


def hierarchy(app: Application, caller: Access | None) -> list[GroupNode]:
    """The tree group / project / subject / session / acquisition with counts at every level.

    Only the projects the caller belongs to are shown, and group counts cover only those.
    """
    with reading(app.engine) as conn:
        groups = catalog.hierarchy(conn)
    if caller is None or caller.roles is None:
        return groups
    shown = []
    for group in groups:
        projects = tuple(p for p in group.projects if caller.sees(group.id, p.label))
        if projects:
            counts = replace(sum((p.counts for p in projects), Counts()), projects=len(projects))
            shown.append(replace(group, projects=projects, counts=counts))
    return shown


def study_stages(app: Application, caller: Access | None) -> dict[str, StudyStage]:
    """StudyInstanceUID → the stage of its newest study version, for the studies the caller may see."""
    with reading(app.engine) as conn:
        studies = list_studies(conn, detail=False)
    if caller is not None:
        studies = caller.visible(studies)
    return {s.study_instance_uid: StudyStage(str(s.stage), s.version, s.reason) for s in studies}


def list_datasets(app: Application, caller: Access | None) -> list[DatasetInfo]:
    """Datasets by name, each with its series in the caller's projects (datasets with none are left out)."""
    with reading(app.engine) as conn:
        found = catalog.list_datasets(conn)
    if caller is None or caller.roles is None:
        return found
    shown = [replace(d, series=tuple(caller.visible(d.series))) for d in found]
    return [d for d in shown if d.series]


def events(
    app: Application,
    caller: Access | None,
    limit: int = 100,
    kind: str | None = None,
    object_uid: str | None = None,
) -> list[EventInfo]:
    """The event log, newest first: installation admins only (refused associations name no project).

    Raises
    ------
    PermissionDenied
        The caller is not an installation admin.
    ValueError
        ``limit`` is below 1.
    """
    _require_admin(caller, "read the event log")
    with reading(app.engine) as conn:
        return catalog.events(conn, limit, kind=kind, object_uid=object_uid)


# -- series, instances and downloads ------------------------------------------------------------------------


def series(app: Application, caller: Access | None, series_instance_uid: str) -> SeriesInfo:
    """Where the series was placed, what it is, and its instances by instance number.

    Raises
    ------
    NotFound
        No such series in the caller's projects.
    """
    with reading(app.engine) as conn:
        return instances.series(conn, series_instance_uid, _sees(caller))


def series_blobs(app: Application, caller: Access | None, series_instance_uid: str) -> list[BlobRef]:
    """Where the bytes of every instance of the series are (one project's copy), to download them.

    Raises
    ------
    NotFound
        The series has no instances in the caller's projects.
    """
    with reading(app.engine) as conn:
        return instances.series_blobs(conn, series_instance_uid, _sees(caller))


def study_blobs(app: Application, caller: Access | None, study_instance_uid: str) -> list[BlobRef]:
    """Where the bytes of every instance of the study are (its session in one project), series by series.

    Raises
    ------
    NotFound
        The study has no instances in the caller's projects.
    """
    with reading(app.engine) as conn:
        return instances.study_blobs(conn, study_instance_uid, _sees(caller))


def open_instance(
    app: Application, caller: Access | None, sop_instance_uid: str
) -> tuple[BlobRef, IO[bytes]]:
    """The instance's reference and its bytes exactly as received, open for reading (the caller closes it);
    if several were kept under this SOP Instance UID, the last received.

    Raises
    ------
    NotFound
        No such instance in the caller's projects.
    StorageError
        Its bytes cannot be read.
    """
    with reading(app.engine) as conn:
        blob = instances.instance_blob(conn, sop_instance_uid, _sees(caller))
    return blob, app.store.open(blob.blob_key)


def instance_header(app: Application, caller: Access | None, sop_instance_uid: str) -> dict[str, Any]:
    """The stored instance read up to its pixel data, in the DICOM JSON model.

    Raises
    ------
    NotFound
        No such instance in the caller's projects.
    StorageError
        Its stored bytes are not readable DICOM.
    """
    with reading(app.engine) as conn:
        blob = instances.instance_blob(conn, sop_instance_uid, _sees(caller))
    try:  # the header from the blob's first MiB (one range request on S3), or from all of it
        head = app.store.read_range(blob.blob_key, 0, _HEADER_READ)
        try:
            dataset = pydicom.dcmread(io.BytesIO(head), stop_before_pixels=True)
        except (EOFError, ValueError, OSError):
            if len(head) < _HEADER_READ:
                raise
            dataset = pydicom.dcmread(io.BytesIO(app.store.get(blob.blob_key)), stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise StorageError(
            f"the stored bytes of SOP Instance UID {sop_instance_uid!r} are not readable DICOM"
        ) from exc
    header: dict[str, Any] = dataset.to_json_dict()
    return header
