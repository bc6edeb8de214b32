"""The one place where failures become HTTP responses.

Every 4xx and 5xx body has the same shape, whatever raised it::

    {"error": {"code": "not-found", "message": "SOP Instance UID '1.2' is not in the index", "details": {}}}

* a :class:`~dicomflow.errors.DicomflowError` keeps its ``code``, ``http_status``, message and details;
* a request that fails validation is ``422 validation-error`` with pydantic's errors in ``details.errors``;
* Starlette's own errors (unknown route, wrong method) get a code from their status;
* anything else is ``500 internal-error`` with a generic message (the exception is logged, not shown).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dicomflow.errors import AuthenticationRequired, DicomflowError, TooManyAttempts

_log = logging.getLogger(__name__)

_CODES_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "already-exists",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-attempts",
    503: "index-error",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None, **kwargs: Any
) -> JSONResponse:
    """A JSON response in the error shape ``{"error": {"code", "message", "details"}}``."""
    body = {"error": {"code": code, "message": message, "details": jsonable_encoder(details or {})}}
    return JSONResponse(body, status_code=status, **kwargs)


def code_for_status(status: int) -> str:
    """The error code of an HTTP status that no :class:`DicomflowError` stands behind."""
    return _CODES_BY_STATUS.get(status, "internal-error" if status >= 500 else f"http-{status}")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error response the same shape."""
    app.add_exception_handler(DicomflowError, _dicomflow_error)  # type: ignore[arg-type]  # narrower than Exception
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]  # idem
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]  # idem
    app.add_exception_handler(Exception, _unhandled_error)


async def _dicomflow_error(_request: Request, exc: DicomflowError) -> JSONResponse:
    return dicomflow_error_response(exc)


def dicomflow_error_response(exc: DicomflowError) -> JSONResponse:
    """The response of a :class:`DicomflowError` (its status, code, message and details)."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationRequired) else None
    if isinstance(exc, TooManyAttempts) and "retry_after" in exc.details:
        headers = {"Retry-After": str(max(1, math.ceil(exc.details["retry_after"])))}
    if exc.http_status >= 500:
        _log.error("%s: %s", exc.code, exc.message, exc_info=exc)
    return error_response(exc.http_status, exc.code, exc.message, exc.details, headers=headers)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    where = ", ".join(".".join(str(part) for part in error.get("loc", ())) for error in errors)
    message = f"the request is not valid: {where}" if where else "the request is not valid"
    return error_response(422, "validation-error", message, {"errors": errors})


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = code_for_status(exc.status_code)
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unhandled_error(_request: Request, exc: Exception) -> JSONResponse:
    _log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal-error", "internal server error")
