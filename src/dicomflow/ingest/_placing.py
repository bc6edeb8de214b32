"""Turn a pure placement decision into hierarchy rows (get-or-create, race-safe across processes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from dicomflow.dicom import InstanceHeader
from dicomflow.index import placement as rows
from dicomflow.placement import Placement, PlacementConfig, place, project_from_called_ae


@dataclass(frozen=True, slots=True)
class PlacedSeries:
    """Where one series (acquisition) of one project lives in the index."""

    acquisition_id: int
    session_id: int
    project_id: int
    placement: Placement


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
    existing = rows.projects_of_study(conn, header.study_instance_uid)
    ae_project = project_from_called_ae(called_ae or "", config.project_ae_prefix)
    if project is None and ae_project:
        project = rows.find_project(conn, ae_project)
    placement = place(
        header,
        config,
        existing_sessions=existing,
        called_ae_project=project,
        existing_groups=rows.group_ids(conn),
        existing_projects=rows.project_refs(conn),
    )
    project_id = rows.project_for(conn, placement)
    subject_id = rows.subject_for(conn, project_id, placement)
    session_id = rows.session_for(conn, project_id, subject_id, header, placement, actor)
    acquisition_id = rows.acquisition_for(conn, session_id, header, placement, actor, series_header)
    return PlacedSeries(acquisition_id, session_id, project_id, placement)
