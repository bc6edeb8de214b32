"""Error bodies of the API back into ``dicomflow.errors`` classes, and transport failures wrapped."""

from __future__ import annotations

from typing import Any

import httpx

from dicomflow.errors import (
    ERRORS_BY_CODE,
    AuthenticationRequired,
    DicomflowError,
    NotFound,
    PermissionDenied,
)

# Codes the API sends without a class of their own (Starlette's errors): the class by HTTP status.
_CLASSES_BY_STATUS: dict[int, type[DicomflowError]] = {
    401: AuthenticationRequired,
    403: PermissionDenied,
    404: NotFound,
}


def error_from_response(response: httpx.Response) -> DicomflowError:
    """The :class:`DicomflowError` an error response stands for.

    The class comes from the body's ``error.code`` (``ERRORS_BY_CODE``); a code without a class falls back on
    the HTTP status, else :class:`DicomflowError` with ``code`` and ``http_status`` added to the details. A
    body that is not the API's error shape (a proxy's page) becomes :class:`DicomflowError` too.
    """
    code, message, details = _error_body(response)
    if code in ERRORS_BY_CODE:
        return ERRORS_BY_CODE[code](message, details)
    extra: dict[str, Any] = {"code": code} if code else {}
    cls = _CLASSES_BY_STATUS.get(response.status_code, DicomflowError)
    return cls(message, {**details, **extra, "http_status": response.status_code})


def _error_body(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    where = f"{response.request.method} {response.request.url.path}"
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details") or {}
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200]
        return "", f"{where}: HTTP {response.status_code} {text}".rstrip(), {}
    if not isinstance(details, dict):
        details = {"details": details}
    return str(code), str(message), details
