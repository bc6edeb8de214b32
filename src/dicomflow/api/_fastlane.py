"""The hot path of HTTP uploads, ``PUT /api/v1/uploads/{id}/files/{name}``, served without FastAPI's routing.

A client sending a study sends one request per file, hundreds a second; FastAPI's route handling (dependency
resolution, parameter validation, response handling) costs about as much CPU as storing and indexing the
file itself. With ``performance.fast_paths`` on, :func:`install_upload_fast_lane` registers a plain
Starlette route for that one path and method ahead of every other route: it resolves the caller as the
dependencies do (:func:`~dicomflow.api._deps.current_user`, :meth:`Access.of`) and calls the FastAPI route's
own function (:func:`~dicomflow.api._uploads.put_file`). Whatever it raises goes to the app's error
handlers (:mod:`dicomflow.api.errors`), as from any route. Off, FastAPI's route serves the request; the
OpenAPI schema shows that route either way.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dicomflow.api._deps import BEARER_USER, bearer_user
from dicomflow.api._uploads import put_file
from dicomflow.usecases.access import access_of
from dicomflow.usecases.accounts import UserInfo

PATH = "/api/v1/uploads/{upload_id}/files/{name:path}"
"""The path of the route (``api/_uploads.py`` declares it as ``/uploads/{upload_id}/files/{name:path}``)."""


async def put_file_fast(request: Request) -> Response:
    """``PUT`` of one file as the request body: the caller resolved, then the route's own function."""
    state = request.app.state
    user = request.scope.get("state", {}).get(BEARER_USER)  # left there by the guard (api/_guard.py)
    if not isinstance(user, UserInfo):
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        user = bearer_user(state.identities, token if scheme.lower() == "bearer" else None)
    caller = access_of(state.application, user)
    params = request.path_params
    return await put_file(params["upload_id"], params["name"], request, caller)


def install_upload_fast_lane(app: FastAPI) -> None:
    """Register the fast lane as the app's first route (call with ``performance.fast_paths`` on)."""
    app.router.routes.insert(0, Route(PATH, put_file_fast, methods=["PUT"], include_in_schema=False))
