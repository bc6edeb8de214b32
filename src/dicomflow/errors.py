"""Every error dicomflow raises on purpose.

::

    DicomflowError                 internal-error        500
     +-- ConfigError               config-error          500
     +-- InvalidInstance           invalid-instance      422  not DICOM, truncated, missing/bad UIDs
     +-- DuplicateConflict         duplicate-conflict    409  another object holds the SOP Instance UID
     +-- UnknownProject            unknown-project       404  an AE title or request names no existing project
     +-- StudyInAnotherProject     cross-project-study   409  the study has a session in another project
     +-- UnknownReportType         unknown-report-type   422  a request or rule names no installed report type
     +-- InvalidState              invalid-state         409  e.g. approving a study that is not in review
     +-- NotFound                  not-found             404
     +-- AlreadyExists             already-exists        409
     +-- AuthenticationRequired    unauthorized          401
     |    +-- TokenExpired         token-expired         401  the token's expiry has passed
     |    +-- TokenRevoked         token-revoked         401  ``dicomflow tokens revoke`` or a logout
     |    +-- SessionExpired       session-expired       401  a cookie session idle for too long
     |    +-- AccountDisabled      account-disabled      401  ``dicomflow users disable``
     +-- PermissionDenied          forbidden             403
     +-- StorageError              storage-error         507  the blob store could not write or read
     +-- IndexUnavailable          index-error           503  the index could not commit
     +-- InvalidRequest            validation-error      422  the API refused a request's body or parameters
     +-- TooLarge                  too-large             413  a file sent is larger than the settings allow
     +-- ServerUnreachable         server-unreachable    503  the SDK could not reach the server
     +-- ImportFailed              import-failed         422  an upload ended failed or expired
     +-- StudyFailed               study-failed          422  a study ended in stage Failed
     +-- UnprocessableInput        unprocessable-input   422  data a job cannot process; retrying cannot help
     +-- WaitTimeout               wait-timeout          504  an SDK wait ran out of time
     +-- TooManyAttempts           too-many-attempts     429  logins throttled after failures (Retry-After)
     +-- NotReady                  not-ready             503  /ready: index, store or broker unreachable

The API turns each into ``{"error": {"code", "message", "details"}}`` with its HTTP status; the DICOM
receiver maps each to a C-STORE failure status (``dimse/_status.py``). The SDK (``dicomflow.client``) rebuilds
the class from the ``code`` of an error body, so ``except NotFound`` works on both sides; the last four are
raised by the SDK itself (its waits and its transport).
"""

from __future__ import annotations

from typing import Any, ClassVar


class DicomflowError(Exception):
    """Base of every error the platform raises on purpose."""

    code: ClassVar[str] = "internal-error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigError(DicomflowError):
    """A setting is missing or invalid; raised at startup."""

    code, http_status = "config-error", 500


class InvalidInstance(DicomflowError):
    """The object is not DICOM, is truncated, or lacks valid identifying UIDs."""

    code, http_status = "invalid-instance", 422


class DuplicateConflict(DicomflowError):
    """A different object was sent under an existing SOP Instance UID and the policy is ``reject``."""

    code, http_status = "duplicate-conflict", 409


class UnknownProject(DicomflowError):
    """A called AE title or request names a project that does not exist."""

    code, http_status = "unknown-project", 404


class StudyInAnotherProject(DicomflowError):
    """An instance names a project, its study is placed in another one, and ``ingest.cross_project_study``
    is ``reject``."""

    code, http_status = "cross-project-study", 409


class UnknownReportType(DicomflowError):
    """A request or project rule names a report type that is not installed."""

    code, http_status = "unknown-report-type", 422


class InvalidState(DicomflowError):
    """The request does not fit the study's or job's current stage (approving a study not in review)."""

    code, http_status = "invalid-state", 409


class NotFound(DicomflowError):
    """The requested resource does not exist (or is not visible to the caller)."""

    code, http_status = "not-found", 404


class AlreadyExists(DicomflowError):
    """A resource with this name exists already."""

    code, http_status = "already-exists", 409


class AuthenticationRequired(DicomflowError):
    """No valid credentials were given."""

    code, http_status = "unauthorized", 401


class TokenExpired(AuthenticationRequired):
    """The bearer token (or session) is past its expiry."""

    code = "token-expired"


class TokenRevoked(AuthenticationRequired):
    """The bearer token was revoked (``dicomflow tokens revoke``) or its session logged out."""

    code = "token-revoked"


class SessionExpired(AuthenticationRequired):
    """The cookie session was not used for longer than ``http.session_idle_timeout``."""

    code = "session-expired"


class AccountDisabled(AuthenticationRequired):
    """The user was disabled (``dicomflow users disable``): no login, token or session works."""

    code = "account-disabled"


class PermissionDenied(DicomflowError):
    """The caller is authenticated but may not do this."""

    code, http_status = "forbidden", 403


class StorageError(DicomflowError):
    """The blob store could not write or read bytes."""

    code, http_status = "storage-error", 507


class IndexUnavailable(DicomflowError):
    """The index database could not commit or answer."""

    code, http_status = "index-error", 503


class InvalidRequest(DicomflowError):
    """The API refused the request's body or parameters (its validation; the errors are in details)."""

    code, http_status = "validation-error", 422


class TooLarge(DicomflowError):
    """A file (or zip) sent in one request is larger than ``uploads.max_file_bytes``."""

    code, http_status = "too-large", 413


class ServerUnreachable(DicomflowError):
    """The SDK could not connect to the server, or the connection broke before an answer."""

    code, http_status = "server-unreachable", 503


class ImportFailed(DicomflowError):
    """An upload ended in state failed or expired; details hold its ``errors`` and ``summary_errors``."""

    code, http_status = "import-failed", 422

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The per-file errors of the upload (``file``, ``code``, ``message``)."""
        return list(self.details.get("errors", []))

    @property
    def summary_errors(self) -> list[str]:
        """Problems of the whole upload (``No DICOM files found``, …)."""
        return list(self.details.get("summary_errors", []))


class StudyFailed(DicomflowError):
    """A study ended in stage Failed; details hold its ``reason`` and ``findings``."""

    code, http_status = "study-failed", 422

    @property
    def reason(self) -> str:
        """Why the study failed, as its stage history says."""
        return str(self.details.get("reason", self.message))

    @property
    def findings(self) -> list[dict[str, Any]]:
        """The findings of the study's checks (``code``, ``severity``, ``message``, …)."""
        return list(self.details.get("findings", []))


class UnprocessableInput(DicomflowError, ValueError):
    """The data cannot be processed as they are (slices that do not stack into one volume, a report type
    that could produce nothing from them): deterministic, so a job that raises it fails at once, unretried."""

    code, http_status = "unprocessable-input", 422


class WaitTimeout(DicomflowError):
    """An SDK wait ran out of time; details say what it waited for and what it last saw."""

    code, http_status = "wait-timeout", 504


class TooManyAttempts(DicomflowError):
    """Logins are throttled after failed attempts; ``details["retry_after"]`` says in how many seconds."""

    code, http_status = "too-many-attempts", 429


class NotReady(DicomflowError):
    """``GET /ready``: a part the server needs (index, store, broker) cannot be reached; ``details`` has each
    part's answer (``ok`` or what failed)."""

    code, http_status = "not-ready", 503


ERRORS_BY_CODE: dict[str, type[DicomflowError]] = {
    cls.code: cls
    for cls in (
        DicomflowError,
        ConfigError,
        InvalidInstance,
        DuplicateConflict,
        UnknownProject,
        StudyInAnotherProject,
        UnknownReportType,
        InvalidState,
        NotFound,
        AlreadyExists,
        AuthenticationRequired,
        TokenExpired,
        TokenRevoked,
        SessionExpired,
        AccountDisabled,
        PermissionDenied,
        StorageError,
        IndexUnavailable,
        InvalidRequest,
        ServerUnreachable,
        ImportFailed,
        StudyFailed,
        UnprocessableInput,
        WaitTimeout,
        TooManyAttempts,
        NotReady,
    )
}
