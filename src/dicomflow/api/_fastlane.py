"""The hot path of HTTP uploads, ``PUT /api/v1/uploads/{id}/files/{name}``, served without FastAPI's routing.

A client sending a study sends one request per file, hundreds a second; FastAPI's route matching, dependency
resolution and response handling cost about as much CPU as storing and indexing the file itself. This ASGI
middleware matches that one route itself, resolves the caller as the dependencies do (:func:`bearer_user`,
:meth:`Access.of`) and calls the route's own function (:func:`~dicomflow.api._uploads.put_file`); errors get
the API's one shape. Everything else goes to the app unchanged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomflow.api._access import Access
from dicomflow.api._deps import bearer_user
from dicomflow.api._uploads import put_file
from dicomflow.api.errors import dicomflow_error_response, error_response
from dicomflow.errors import DicomflowError

LOGGER = logging.getLogger(__name__)
_ROUTE = re.compile(r"/api/v1/uploads/(?P<upload_id>[^/]+)/files/(?P<name>.+)")


class UploadFastLane:
    """ASGI middleware: answers ``PUT /api/v1/uploads/{id}/files/{name}`` itself, passes the rest on."""

    def __init__(self, app: ASGIApp, fastapi_app: Any) -> None:
        self.app = app
        self.state = fastapi_app.state  # engine, identities, uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _ROUTE.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "PUT":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
            user = bearer_user(self.state.identities, token if scheme.lower() == "bearer" else None)
            caller = Access.of(user, self.state.engine)
            response = await put_file(match["upload_id"], match["name"], request, caller)
        except DicomflowError as exc:
            response = dicomflow_error_response(exc)
        except Exception:
            LOGGER.exception("PUT %s failed", scope["path"])
            response = error_response(500, "internal-error", "the server failed; its log says why")
        await response(scope, receive, send)
