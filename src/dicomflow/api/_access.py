"""The caller's rights as a request dependency (the rules are :mod:`dicomflow.usecases.access`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from dicomflow.api._application import App
from dicomflow.api._deps import CurrentUser
from dicomflow.usecases.access import Access, access_of

__all__ = ["Access", "Caller", "access_of", "current_access"]


async def current_access(user: CurrentUser, app: App) -> Access:
    """The caller's :class:`Access` (on the event loop, as the other identity dependencies)."""
    return access_of(app, user)


Caller = Annotated[Access, Depends(current_access)]
