"""Routes over the catalogue: projects, the hierarchy, datasets and the event log."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StringConstraints

from dicomflow.api._access import Caller
from dicomflow.api._deps import AdminUser, IndexEngine, current_user
from dicomflow.index._queries import (
    DEFAULT_GROUP,
    Counts,
    DatasetInfo,
    EventInfo,
    GroupNode,
    ProjectInfo,
    create_project,
    events,
    hierarchy,
    list_datasets,
    list_projects,
)

router = APIRouter(dependencies=[Depends(current_user)])


class ProjectCreate(BaseModel):
    """Body of ``POST /projects``."""

    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)] = Field(
        description="Project label, unique within the group whatever its case."
    )
    group: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = Field(
        DEFAULT_GROUP, description="Group id; created when no group of that id (in any case) exists."
    )


@router.get("/projects", summary="List projects")
def get_projects(
    engine: IndexEngine,
    caller: Caller,
    group: Annotated[str | None, Query(description="Only this group's projects.")] = None,
) -> list[ProjectInfo]:
    """The projects the caller belongs to (all, for admins), by group and label."""
    return [p for p in list_projects(engine, group) if caller.sees(p.group, p.label)]


@router.post("/projects", status_code=201, summary="Create a project (admins only)")
def post_project(body: ProjectCreate, engine: IndexEngine, _admin: AdminUser) -> ProjectInfo:
    """Create a project, and its group if needed; 409 when the group has a project of that label."""
    return create_project(engine, body.label, body.group)


@router.get("/hierarchy", summary="The tree group / project / subject / session / acquisition")
def get_hierarchy(engine: IndexEngine, caller: Caller) -> list[GroupNode]:
    """Every level with counts of what lies below it; sessions carry their placement rule and reason.

    Only the projects the caller belongs to are shown, and group counts cover only those.
    """
    groups = hierarchy(engine)
    if caller.roles is None:
        return groups
    shown = []
    for group in groups:
        projects = tuple(p for p in group.projects if caller.sees(group.id, p.label))
        if projects:
            counts = replace(sum((p.counts for p in projects), Counts()), projects=len(projects))
            shown.append(replace(group, projects=projects, counts=counts))
    return shown


@router.get("/datasets", summary="List datasets with their series")
def get_datasets(engine: IndexEngine, caller: Caller) -> list[DatasetInfo]:
    """Datasets by name, each with its series in the caller's projects (datasets with none are left out)."""
    found = list_datasets(engine)
    if caller.roles is None:
        return found
    shown = [replace(d, series=tuple(caller.visible(d.series))) for d in found]
    return [d for d in shown if d.series]


@router.get("/events", summary="The event log, newest first (admins only)")
def get_events(
    engine: IndexEngine,
    _admin: AdminUser,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many events.")] = 100,
    kind: Annotated[str | None, Query(description="Only events of this kind, e.g. 'placed'.")] = None,
    object_uid: Annotated[str | None, Query(description="Only events about this UID.")] = None,
) -> list[EventInfo]:
    """Who did what, when, to which object, and why: the installation's audit log (refused associations and
    files name no project), so only installation admins read it."""
    return events(engine, limit, kind=kind, object_uid=object_uid)
