"""The caller's rights as a request dependency (the rules are :mod:`dicomflow.usecases.access`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from dicomflow.api._deps import App, CurrentUser
from dicomflow.usecases.access import (
    READ,
    REVIEW,
    UPLOAD,
    Access,
    InProject,
    access_of,
    no_such_project,
    project_of,
)

__all__ = [
    "READ",
    "REVIEW",
    "UPLOAD",
    "Access",
    "Caller",
    "InProject",
    "access_of",
    "current_access",
    "no_such_project",
    "project_of",
]


async def current_access(user: CurrentUser, app: App) -> Access:
    """The caller's :class:`Access` (on the event loop, as the other identity dependencies)."""
    return access_of(app, user)


Caller = Annotated[Access, Depends(current_access)]
