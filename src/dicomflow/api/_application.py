"""The process's :class:`~dicomflow.runtime.Application` as a request dependency (kept by ``create_app``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dicomflow.runtime import Application


def application_of(request: Request) -> Application:
    """The application ``create_app`` keeps on ``app.state``."""
    application: Application = request.app.state.application
    return application


async def get_application(request: Request) -> Application:
    """:func:`application_of` as a dependency (a coroutine: no hop to the thread pool for an attribute)."""
    return application_of(request)


App = Annotated[Application, Depends(get_application)]
