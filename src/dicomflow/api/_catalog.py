"""Routes over the catalogue: projects, the hierarchy, datasets and the event log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StringConstraints

from dicomflow.api._access import Caller
from dicomflow.api._application import App
from dicomflow.api._deps import AdminUser, current_user
from dicomflow.usecases import catalog
from dicomflow.usecases.catalog import DEFAULT_GROUP, DatasetInfo, EventInfo, GroupNode, ProjectInfo

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
    app: App,
    caller: Caller,
    group: Annotated[str | None, Query(description="Only this group's projects.")] = None,
) -> list[ProjectInfo]:
    """The projects the caller belongs to (all, for admins), by group and label."""
    return catalog.list_projects(app, caller, group)


@router.post("/projects", status_code=201, summary="Create a project (admins only)")
def post_project(body: ProjectCreate, app: App, _admin: AdminUser, caller: Caller) -> ProjectInfo:
    """Create a project, and its group if needed; 409 when the group has a project of that label."""
    return catalog.create_project(app, caller, body.label, body.group)


@router.get("/hierarchy", summary="The tree group / project / subject / session / acquisition")
def get_hierarchy(app: App, caller: Caller) -> list[GroupNode]:
    """Every level with counts of what lies below it; sessions carry their placement rule and reason.

    Only the projects the caller belongs to are shown, and group counts cover only those.
    """
    return catalog.hierarchy(app, caller)


@router.get("/datasets", summary="List datasets with their series")
def get_datasets(app: App, caller: Caller) -> list[DatasetInfo]:
    """Datasets by name, each with its series in the caller's projects (datasets with none are left out)."""
    return catalog.list_datasets(app, caller)


@router.get("/events", summary="The event log, newest first (admins only)")
def get_events(
    app: App,
    _admin: AdminUser,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many events.")] = 100,
    kind: Annotated[str | None, Query(description="Only events of this kind, e.g. 'placed'.")] = None,
    object_uid: Annotated[str | None, Query(description="Only events about this UID.")] = None,
) -> list[EventInfo]:
    """Who did what, when, to which object, and why: the installation's audit log (refused associations and
    files name no project), so only installation admins read it."""
    return catalog.events(app, caller, limit, kind=kind, object_uid=object_uid)
