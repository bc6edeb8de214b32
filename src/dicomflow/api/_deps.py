"""Request dependencies: the engine and blob store kept on ``app.state``, and the caller's identity.

They are coroutines on purpose: FastAPI runs a plain function dependency in its thread pool, and that hop
costs more than the work (an attribute read, one indexed lookup in the index); they run on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from dicomflow.errors import AuthenticationRequired, PermissionDenied
from dicomflow.index._accounts import Role, UserInfo, user_for_token
from dicomflow.storage._filesystem import FileSystemBlobStore

_bearer = HTTPBearer(
    auto_error=False, description="A token made with `dicomflow tokens create --user EMAIL`."
)


async def get_engine(request: Request) -> Engine:
    """The index engine created by ``create_app``."""
    engine: Engine = request.app.state.engine
    return engine


async def get_store(request: Request) -> FileSystemBlobStore:
    """The blob store created by ``create_app``."""
    store: FileSystemBlobStore = request.app.state.store
    return store


IndexEngine = Annotated[Engine, Depends(get_engine)]
BlobStore = Annotated[FileSystemBlobStore, Depends(get_store)]


class Identities:
    """The users of tokens, each remembered for ``ttl`` seconds by the process that looked it up.

    A client sending many files asks with the same token many times a second; one lookup in the index
    costs more than the rest of the request's bookkeeping. Unknown tokens are never remembered (a token
    just created works at once); a token revoked here is forgotten here at once, and by the other API
    processes within ``ttl``.
    """

    def __init__(self, engine: Engine, ttl: float = 2.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._known: dict[str, tuple[UserInfo, float]] = {}

    def user(self, token: str) -> UserInfo | None:
        """The user of ``token``, or ``None`` for an unknown token."""
        now = time.monotonic()
        known = self._known.get(token)
        if known is not None and known[1] > now:
            return known[0]
        user = user_for_token(self.engine, token)
        if user is None:
            self._known.pop(token, None)
        else:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[token] = (user, now + self.ttl)
        return user

    def forget(self, token: str) -> None:
        """Stop knowing ``token`` (it was revoked)."""
        self._known.pop(token, None)


async def get_identities(request: Request) -> Identities:
    """The identities kept by ``create_app``."""
    identities: Identities = request.app.state.identities
    return identities


async def current_user(
    identities: Annotated[Identities, Depends(get_identities)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserInfo:
    """The user of the request's bearer token.

    Raises
    ------
    AuthenticationRequired
        No ``Authorization: Bearer`` header, or an unknown token.
    """
    return bearer_user(identities, credentials.credentials if credentials else None)


def bearer_user(identities: Identities, token: str | None) -> UserInfo:
    """The user of a bearer token (``None``: the request had no ``Authorization: Bearer`` header).

    Raises
    ------
    AuthenticationRequired
        No token, or an unknown one.
    """
    if not token:
        raise AuthenticationRequired("this request needs an 'Authorization: Bearer <token>' header")
    user = identities.user(token)
    if user is None:
        raise AuthenticationRequired("the bearer token is not valid")
    return user


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
