"""Turn a pure placement decision into hierarchy rows (get-or-create, race-safe across processes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from dicomflow.dicom import InstanceHeader
from dicomflow.index import (
    Acquisition,
    Dataset,
    DatasetSeries,
    Group,
    Project,
    Session,
    Subject,
    insert_event,
    utcnow,
)
from dicomflow.placement import Placement, PlacementConfig, place, project_from_called_ae


@dataclass(frozen=True, slots=True)
class PlacedSeries:
    """Where one series (acquisition) of one project lives in the index."""

    acquisition_id: int
    session_id: int
    project_id: int
    placement: Placement


def find_project(conn: Connection, label: str) -> tuple[str, str] | None:
    """The (group, label) of the project whose label is exactly ``label``, if exactly one exists."""
    rows = conn.execute(select(Project.group_id, Project.label).where(Project.label == label).limit(2)).all()
    return (rows[0][0], rows[0][1]) if len(rows) == 1 else None


def resolve_series(
    conn: Connection,
    header: InstanceHeader,
    called_ae: str | None,
    config: PlacementConfig,
    actor: str,
    project: tuple[str, str] | None = None,
    series_header: Callable[[], dict[str, list[str]]] | None = None,
) -> PlacedSeries:
    """Place the instance's series: decide with the pure rules, then find or create every level.

    ``project`` is the ``(group, label)`` the source names itself (an upload's project); it wins over the
    called AE title, which can only name a project by label. ``series_header`` reads the series' attributes
    (``dicom.read_series_attributes``), called only when the acquisition is created.
    """
    existing = conn.execute(
        select(Project.group_id, Project.label)
        .join(Session, Session.project_id == Project.id)
        .where(Session.study_instance_uid == header.study_instance_uid)
        .order_by(Session.id)
    ).all()
    ae_project = project_from_called_ae(called_ae or "", config.project_ae_prefix)
    if project is None and ae_project:
        project = find_project(conn, ae_project)
    placement = place(
        header,
        config,
        existing_sessions=[(group, label) for group, label in existing],
        called_ae_project=project,
        existing_groups=set(conn.scalars(select(Group.id))),
        existing_projects={(g, p) for g, p in conn.execute(select(Project.group_id, Project.label))},
    )
    project_id = _project(conn, placement)
    subject_id = _subject(conn, project_id, placement)
    session_id = _session(conn, project_id, subject_id, header, placement, actor)
    acquisition_id = _acquisition(conn, session_id, header, placement, actor, series_header)
    return PlacedSeries(acquisition_id, session_id, project_id, placement)


def add_to_dataset(conn: Connection, name: str, acquisition_id: int) -> None:
    """Make the acquisition a member of dataset ``name`` (created when missing)."""
    dataset_id = conn.scalar(select(Dataset.id).where(Dataset.name == name))
    if dataset_id is None:
        dataset_id = conn.execute(insert(Dataset).values(name=name).returning(Dataset.id)).scalar_one()
    member = select(DatasetSeries).where(
        DatasetSeries.dataset_id == dataset_id, DatasetSeries.acquisition_id == acquisition_id
    )
    if conn.execute(member).first() is None:
        conn.execute(insert(DatasetSeries).values(dataset_id=dataset_id, acquisition_id=acquisition_id))


def _project(conn: Connection, placement: Placement) -> int:
    if conn.scalar(select(Group.id).where(Group.id == placement.group)) is None:
        label = "Unknown" if placement.group == "unknown" else placement.group
        conn.execute(insert(Group).values(id=placement.group, label=label))
    key = placement.project.lower()
    found = conn.scalar(
        select(Project.id).where(Project.group_id == placement.group, Project.label_key == key)
    )
    if found is not None:
        return found
    values = {"group_id": placement.group, "label": placement.project, "label_key": key}
    return conn.execute(insert(Project).values(**values).returning(Project.id)).scalar_one()


def _subject(conn: Connection, project_id: int, placement: Placement) -> int:
    found = conn.scalar(
        select(Subject.id).where(Subject.project_id == project_id, Subject.label == placement.subject)
    )
    if found is not None:
        return found
    values = {
        "project_id": project_id,
        "label": placement.subject,
        "firstname": placement.subject_firstname,
        "lastname": placement.subject_lastname,
        "sex": placement.subject_sex,
    }
    return conn.execute(insert(Subject).values(**values).returning(Subject.id)).scalar_one()


def _session(
    conn: Connection,
    project_id: int,
    subject_id: int,
    header: InstanceHeader,
    placement: Placement,
    actor: str,
) -> int:
    found = conn.scalar(
        select(Session.id).where(
            Session.project_id == project_id, Session.study_instance_uid == header.study_instance_uid
        )
    )
    if found is not None:
        return found
    values = {
        "project_id": project_id,
        "subject_id": subject_id,
        "study_instance_uid": header.study_instance_uid,
        "label": placement.session_label,
        "timestamp": placement.session_timestamp,
        "timezone": placement.timezone,
        "placement_rule": str(placement.rule),
        "placement_reason": placement.reason,
    }
    session_id = conn.execute(insert(Session).values(**values).returning(Session.id)).scalar_one()
    where = f"{placement.group}/{placement.project}/{placement.subject}/{placement.session_label}"
    record_event(
        conn, "placed", actor, header.study_instance_uid, f"session placed in {where}: {placement.reason}"
    )
    return session_id


def _acquisition(
    conn: Connection,
    session_id: int,
    header: InstanceHeader,
    placement: Placement,
    actor: str,
    series_header: Callable[[], dict[str, list[str]]] | None = None,
) -> int:
    found = conn.scalar(
        select(Acquisition.id).where(
            Acquisition.session_id == session_id, Acquisition.acquisition_uid == placement.acquisition_uid
        )
    )
    if found is not None:
        return found
    values = {
        "session_id": session_id,
        "acquisition_uid": placement.acquisition_uid,
        "series_instance_uid": header.series_instance_uid,
        "label": placement.acquisition_label,
        "timestamp": placement.acquisition_timestamp,
        "modality": header.modality,
        "series_number": header.series_number,
        "series_description": header.series_description[:128],
        "series_header": None
        if series_header is None
        else json.dumps(series_header(), separators=(",", ":")),
    }
    acquisition_id = conn.execute(insert(Acquisition).values(**values).returning(Acquisition.id)).scalar_one()
    reason = f"acquisition {placement.acquisition_label!r} created for series {header.series_instance_uid}"
    record_event(conn, "placed", actor, placement.acquisition_uid, reason)
    return acquisition_id


def record_event(
    conn: Connection, kind: str, actor: str, object_uid: str, reason: str, outcome: str = "ok"
) -> None:
    """Append one entry to the event log (in the caller's transaction)."""
    row = {
        "at": utcnow(),
        "kind": kind,
        "actor": actor[:128],
        "object_uid": object_uid[:80],
        "outcome": outcome,
        "reason": reason,
    }
    insert_event(conn, row)
