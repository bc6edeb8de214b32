"""Request dependencies: the application kept on ``app.state`` (and its engine and blob store), and the
caller's identity.

They are coroutines on purpose: FastAPI runs a plain function dependency in its thread pool, and that hop
costs more than the work (an attribute read, one indexed lookup in the index); they run on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dicomflow.errors import AuthenticationRequired, DicomflowError, PermissionDenied
from dicomflow.runtime import Application
from dicomflow.usecases.accounts import Refusal, Role, UserInfo, look_up_token, touch_token

_log = logging.getLogger(__name__)
_bearer = HTTPBearer(
    auto_error=False, description="A token made with `dicomflow tokens create --user EMAIL`."
)


class Identities:
    """The users of tokens, each remembered for ``ttl`` seconds by the process that looked it up.

    A client sending many files asks with the same token many times a second; one lookup in the index
    costs more than the rest of the request's bookkeeping. Refused tokens are never remembered (a token
    just created works at once); a token revoked here is forgotten here at once, and by the other API
    processes within ``ttl``, as are tokens revoked, users disabled and sessions ended elsewhere. A token's
    last use is written (at most once a minute) by a thread of its own, never on the event loop.
    """

    def __init__(
        self, application: Application, ttl: float = 2.0, session_idle_timeout: float | None = None
    ) -> None:
        self.application = application
        self.ttl = ttl
        self.session_idle_timeout = (
            application.settings.http.session_idle_timeout
            if session_idle_timeout is None
            else session_idle_timeout
        )
        self._known: dict[str, tuple[UserInfo, float]] = {}
        self._touches: ThreadPoolExecutor | None = None

    def check(self, token: str) -> UserInfo | Refusal:
        """The user of ``token``, or why it is refused (``Refusal.error()`` is the 401 to raise)."""
        now = time.monotonic()
        known = self._known.get(token)
        if known is not None and known[1] > now:
            return known[0]
        checked = look_up_token(self.application, token, session_idle_timeout=self.session_idle_timeout)
        if not isinstance(checked.result, UserInfo):
            self._known.pop(token, None)
            return checked.result
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[token] = (checked.result, now + self.ttl)
        if checked.touch_id is not None:
            self._touch(checked.touch_id)
        return checked.result

    def user(self, token: str) -> UserInfo | None:
        """The user of ``token``, or ``None`` for a refused one (:meth:`check` says why)."""
        result = self.check(token)
        return result if isinstance(result, UserInfo) else None

    def forget(self, token: str) -> None:
        """Stop knowing ``token`` (it was revoked)."""
        self._known.pop(token, None)

    def close(self) -> None:
        """Wait for the last uses being written."""
        if self._touches is not None:
            self._touches.shutdown(wait=True)

    def _touch(self, token_id: int) -> None:
        if self._touches is None:
            self._touches = ThreadPoolExecutor(1, thread_name_prefix="token-use")
        self._touches.submit(self._write_use, token_id)

    def _write_use(self, token_id: int) -> None:
        try:
            touch_token(self.application, token_id)
        except DicomflowError as exc:  # the index is busy: the next lookup tries again
            _log.warning("could not record the use of token %d: %s", token_id, exc.message)


async def get_identities(request: Request) -> Identities:
    """The identities kept by ``create_app``."""
    identities: Identities = request.app.state.identities
    return identities


BEARER_USER = "dicomflow.bearer_user"
"""Key of the request state under which the guard (``api/_guard.py``) leaves the bearer token's user."""


async def current_user(
    request: Request,
    identities: Annotated[Identities, Depends(get_identities)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserInfo:
    """The user of the request's bearer token, as the guard already checked it (else checked here).

    Raises
    ------
    AuthenticationRequired
        No ``Authorization: Bearer`` header, or a refused token (see :func:`bearer_user`).
    """
    checked = request.scope.get("state", {}).get(BEARER_USER)
    if isinstance(checked, UserInfo):
        return checked
    return bearer_user(identities, credentials.credentials if credentials else None)


def bearer_user(identities: Identities, token: str | None) -> UserInfo:
    """The user of a bearer token (``None``: the request had no ``Authorization: Bearer`` header).

    This is the one check of a bearer token; every way in (routes, middlewares) calls it.

    Raises
    ------
    AuthenticationRequired
        No token, or an unknown one; its subclasses ``TokenExpired``, ``TokenRevoked``,
        ``AccountDisabled`` and ``SessionExpired`` say why a known token is refused.
    """
    if not token:
        raise AuthenticationRequired("this request needs an 'Authorization: Bearer <token>' header")
    result = identities.check(token)
    if isinstance(result, Refusal):
        raise result.error("the bearer token is not valid" if result is Refusal.UNKNOWN else None)
    return result


CurrentUser = Annotated[UserInfo, Depends(current_user)]


def require_role(*roles: Role) -> Callable[[UserInfo], Awaitable[UserInfo]]:
    """A dependency that lets only users of one of ``roles`` through (403 for the others)."""

    async def check(user: CurrentUser) -> UserInfo:
        if user.role not in roles:
            allowed = ", ".join(role.value for role in roles)
            raise PermissionDenied(
                f"user {user.email!r} has role {user.role.value!r}; this needs {allowed}",
                {"role": user.role.value, "allowed": [role.value for role in roles]},
            )
        return user

    return check


AdminUser = Annotated[UserInfo, Depends(require_role(Role.ADMIN))]
