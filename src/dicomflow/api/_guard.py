"""The gate in front of every route: who asks, and how much they may send, settled before any body is read.

An ASGI middleware outside the app (and outside the upload lane), so that no route, multipart parser or
JSON decoder reads a byte of a body first:

* a request to a protected path (the native API, the icometrix API but its two login routes, and the
  documentation when ``http.public_docs`` is off) needs a valid bearer token or icometrix session cookie,
  checked as the dependencies check them (:class:`~dicomflow.api._deps.Identities`); otherwise 401;
* a declared ``Content-Length`` over the route's limit is 413 at once: the upload routes take
  ``uploads.max_file_bytes``, every other route ``http.max_body_bytes``;
* a body of unknown length (chunked) is counted as it is read and stopped with 413 at the limit.

Each refusal closes the connection, so the server reads nothing more of the body. The routes' own
dependencies still decide who may do what.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomflow.api._deps import BEARER_USER, bearer_user
from dicomflow.api.errors import dicomflow_error_response
from dicomflow.errors import AuthenticationRequired, DicomflowError, InvalidRequest, TooLarge
from dicomflow.usecases.accounts import Refusal, UserInfo

COOKIE = "dicomflow_session"  # the icometrix API's session cookie (api/icometrix/_routes.py)
MULTIPART_SLACK = 64 << 10  # part headers and boundaries around a file of the largest size allowed
_ICOMETRIX = (
    "/storage-service/",
    "/uploads-service/",
    "/customer-reports-service/",
    "/authentication-service/",
)
_PROTECTED = ("/api/v1", *(prefix.rstrip("/") for prefix in _ICOMETRIX[:3]))
_LOGIN = frozenset(
    ("/authentication-service/api/v1/token-sessions", "/authentication-service/api/v1/sessions")
)
_DOCS = ("/docs", "/redoc", "/openapi.json")
_UPLOAD = re.compile(
    r"/api/v1/uploads/[^/]+/files(?P<one>/.+)?|/uploads-service/api/v1/projects/[^/]+/multi-upload/[^/]+"
)


class _BodyTooLarge(TooLarge):
    """A streamed body passed its limit (raised from ``receive``; the guard answers 413)."""


class RequestGuard:
    """ASGI middleware: authenticate from the headers and bound the body, before the app reads it."""

    def __init__(self, app: ASGIApp, fastapi_app: Any) -> None:
        self.app = app
        self.state = fastapi_app.state  # settings, identities

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            if self._protected(scope["path"], scope["method"]):
                self._user(scope, headers)
            limit = self._limit(scope["path"], scope["method"])
            declared = _declared(headers)
            if declared is not None and declared > limit:
                raise TooLarge(f"the request body ({declared} bytes) is larger than {limit} bytes")
        except DicomflowError as exc:
            await _refuse(exc, scope, receive, send)
            return
        if declared is not None:  # the server delivers no more than declared
            await self.app(scope, receive, send)
            return
        await _Counted(self.app, limit)(scope, receive, send)

    def _protected(self, path: str, method: str) -> bool:
        if path.startswith("/authentication-service/"):
            return not (method == "POST" and path in _LOGIN)
        if any(path == prefix or path.startswith(prefix + "/") for prefix in _PROTECTED):
            return True
        if path == "/metrics":
            return bool(self.state.settings.http.metrics_need_token)
        return not self.state.settings.http.public_docs and path.startswith(_DOCS)

    def _user(self, scope: Scope, headers: Headers) -> UserInfo:
        path: str = scope["path"]
        scheme, token = get_authorization_scheme_param(headers.get("authorization"))
        if token and scheme.lower() == "bearer":
            user = bearer_user(self.state.identities, token)
            scope.setdefault("state", {})[BEARER_USER] = user  # current_user takes it from here
            return user
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        if not cookie and path.startswith(_ICOMETRIX):  # that API logs in to a cookie session
            raise AuthenticationRequired("log in first: POST /authentication-service/api/v1/token-sessions")
        if not cookie:
            return bearer_user(self.state.identities, None)  # raises, naming the header needed
        checked = self.state.identities.check(cookie)
        if not isinstance(checked, UserInfo):  # expired, ended or a disabled user's: say which
            unknown = checked is Refusal.UNKNOWN
            raise checked.error("the session is not valid; log in again" if unknown else None)
        return checked

    def _limit(self, path: str, method: str) -> int:
        settings = self.state.settings
        match = _UPLOAD.fullmatch(path) if method == "PUT" else None
        if match is None:
            limit: int = settings.http.max_body_bytes
            return limit
        return int(settings.uploads.max_file_bytes) + (0 if match["one"] else MULTIPART_SLACK)


def _declared(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"Content-Length {value!r} is not a number") from None


async def _refuse(exc: DicomflowError, scope: Scope, receive: Receive, send: Send) -> None:
    response = dicomflow_error_response(exc)
    response.headers["Connection"] = "close"  # the rest of the body is never read
    await response(scope, receive, send)


class _Counted:
    """The app, fed a body of unknown length that may not pass ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.received = 0
        self.refused: TooLarge | None = None
        self.answered = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.refused = _BodyTooLarge(f"the request body is larger than {self.limit} bytes")
                    raise self.refused
            return message

        async def sending(message: Message) -> None:
            if self.refused is None:
                self.answered = self.answered or message["type"] == "http.response.start"
                await send(message)
            elif not self.answered:  # whatever the app made of the error, the answer is 413
                self.answered = True
                await _refuse(self.refused, scope, receive, send)

        try:
            await self.app(scope, counting, sending)
        except Exception:
            if self.refused is None or self.answered:
                raise
        if self.refused is not None and not self.answered:
            await _refuse(self.refused, scope, receive, send)
