"""Where an instance is placed: find or create its group, project, subject, session and acquisition, and
its datasets (get-or-create, race-safe across processes: a clash raises ``IntegrityError`` and the ingest
looks again).

Every function takes the caller's connection first (the ingest's write transaction) and returns ids or
frozen values, never rows. The decision itself is the pure :func:`dicomflow.placement.place`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import Connection, insert, select

from dicomflow.dicom import InstanceHeader
from dicomflow.index._models import Acquisition, Dataset, DatasetSeries, Group, Project, Session, Subject
from dicomflow.index.catalog import record_event
from dicomflow.placement import Placement

__all__ = [
    "acquisition_for",
    "add_to_dataset",
    "find_project",
    "group_ids",
    "project_for",
    "project_refs",
    "projects_of_study",
    "session_for",
    "subject_for",
]


def find_project(conn: Connection, label: str) -> tuple[str, str] | None:
    """The (group, label) of the project whose label is exactly ``label``, if exactly one exists."""
    rows = conn.execute(select(Project.group_id, Project.label).where(Project.label == label).limit(2)).all()
    return (rows[0][0], rows[0][1]) if len(rows) == 1 else None


def projects_of_study(conn: Connection, study_instance_uid: str) -> list[tuple[str, str]]:
    """The (group, label) of each project holding a session of the study, oldest session first."""
    rows = conn.execute(
        select(Project.group_id, Project.label)
        .join(Session, Session.project_id == Project.id)
        .where(Session.study_instance_uid == study_instance_uid)
        .order_by(Session.id)
    ).all()
    return [(group, label) for group, label in rows]


def group_ids(conn: Connection) -> set[str]:
    """The ids of every group."""
    return set(conn.scalars(select(Group.id)))


def project_refs(conn: Connection) -> set[tuple[str, str]]:
    """The (group, label) of every project."""
    return {(group, label) for group, label in conn.execute(select(Project.group_id, Project.label))}


def project_for(conn: Connection, placement: Placement) -> int:
    """The id of the placement's project, created (with its group) when missing."""
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


def subject_for(conn: Connection, project_id: int, placement: Placement) -> int:
    """The id of the placement's subject in the project, created when missing."""
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


def session_for(
    conn: Connection,
    project_id: int,
    subject_id: int,
    header: InstanceHeader,
    placement: Placement,
    actor: str,
) -> int:
    """The id of the study's session in the project, created (and a ``placed`` event logged) when missing."""
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


def acquisition_for(
    conn: Connection,
    session_id: int,
    header: InstanceHeader,
    placement: Placement,
    actor: str,
    series_header: Callable[[], dict[str, list[str]]] | None = None,
) -> int:
    """The id of the placement's acquisition in the session, created (and logged) when missing.

    ``series_header`` reads the series' attributes kept with a new acquisition (called only then).
    """
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
