"""The hot path of HTTP uploads, ``PUT /api/v1/uploads/{id}/files/{name}``, served without FastAPI's routing.

A client sending a study sends one request per file, hundreds a second; FastAPI's route matching, dependency
resolution and response handling cost about as much CPU as storing and indexing the file itself. This ASGI
middleware answers that one route directly, with the same checks in the same order (bearer token, the
caller's role in the upload's project, the upload's state, size limit), the same code after them
(:func:`~dicomflow.api._uploads.receive_body`) and the same error shape. The FastAPI route of the same path
stays: it documents the request in OpenAPI. Everything else goes to the app unchanged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomflow.api._access import Access
from dicomflow.api._deps import Identities
from dicomflow.api._uploads import checked_uploads, receive_body
from dicomflow.api.errors import dicomflow_error_response, error_response
from dicomflow.errors import AuthenticationRequired, DicomflowError
from dicomflow.index import project_roles

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
            caller = self._caller(request)
            uploads = checked_uploads(request, self.state.engine, caller, match["upload_id"], "send")
            response = await receive_body(request, uploads, match["upload_id"], match["name"])
        except DicomflowError as exc:
            response = dicomflow_error_response(exc)
        except Exception:
            LOGGER.exception("PUT %s failed", scope["path"])
            response = error_response(500, "internal-error", "the server failed; its log says why")
        await response(scope, receive, send)

    def _caller(self, request: Request) -> Access:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationRequired("this request needs an 'Authorization: Bearer <token>' header")
        identities: Identities = self.state.identities
        user = identities.user(token.strip())
        if user is None:
            raise AuthenticationRequired("the bearer token is not valid")
        return Access(user, project_roles(self.state.engine, user))
