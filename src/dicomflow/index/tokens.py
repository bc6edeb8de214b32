"""Repository of tokens: API tokens and the cookie sessions of the icometrix-compatible API.

Tokens are random and only their SHA-256 is stored: a copy of the index gives no usable token. A token is an
API token (``dicomflow tokens create``, with an optional expiry) or a cookie session (``kind`` session), which
also ends when unused for ``http.session_idle_timeout``. Revoked tokens are kept (``revoked_at``), so that
they are refused as revoked; tokens of a disabled user are refused. :func:`look_up_token` is the one place
that decides whether a token is good. Each function runs inside the caller's connection.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from dicomflow.errors import (
    AccountDisabled,
    AuthenticationRequired,
    NotFound,
    SessionExpired,
    TokenExpired,
    TokenRevoked,
)
from dicomflow.index._db import as_utc
from dicomflow.index._models import Token, User
from dicomflow.index.accounts import UserInfo, user_of_row

__all__ = [
    "DEFAULT_SESSION_IDLE_TIMEOUT",
    "Refusal",
    "TokenCheck",
    "TokenInfo",
    "TokenKind",
    "delete_idle_sessions",
    "insert_token",
    "list_tokens",
    "look_up_token",
    "new_token",
    "revoke",
    "revoke_ref",
    "touch_token",
]

_PREFIX_CHARS = 6
_TOUCH_EVERY = 60.0  # seconds: a token's last use is written at most once a minute
DEFAULT_SESSION_IDLE_TIMEOUT = 1800.0

# Looked up on every request (once per token and process every 2 s): built once.
_TOKEN_CHECK = (
    select(
        User.id,
        User.email,
        User.role,
        User.created_at,
        User.disabled_at,
        Token.id.label("token_id"),
        Token.kind,
        Token.created_at.label("token_created_at"),
        Token.expires_at,
        Token.revoked_at,
        Token.last_used_at,
    )
    .join(Token, Token.user_id == User.id)
    .where(Token.token_sha256 == bindparam("digest"))
)


class TokenKind(StrEnum):
    """An API token (``dicomflow tokens create``) or a cookie session (a login of the icometrix API)."""

    API = "api"
    SESSION = "session"


class Refusal(StrEnum):
    """Why a token is refused; the value is the error code of the 401 answer."""

    UNKNOWN = "unauthorized"
    REVOKED = "token-revoked"
    DISABLED = "account-disabled"
    EXPIRED = "token-expired"
    SESSION_EXPIRED = "session-expired"

    def error(self, message: str | None = None) -> AuthenticationRequired:
        """The error to raise for this refusal (``message`` replaces the default one)."""
        cls, default = _REFUSALS[self]
        return cls(message or default)


_REFUSALS: dict[Refusal, tuple[type[AuthenticationRequired], str]] = {
    Refusal.UNKNOWN: (AuthenticationRequired, "the token is not valid"),
    Refusal.REVOKED: (TokenRevoked, "the token was revoked"),
    Refusal.DISABLED: (AccountDisabled, "the user's account is disabled"),
    Refusal.EXPIRED: (TokenExpired, "the token has expired"),
    Refusal.SESSION_EXPIRED: (SessionExpired, "the session was idle for too long; log in again"),
}


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as ``dicomflow tokens list`` shows it: never its secret, only its first characters."""

    id: int
    prefix: str | None
    """The token's first characters (None for tokens made before they were kept)."""
    email: str
    kind: TokenKind
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    """Written at most once a minute."""
    revoked_at: datetime | None
    state: str
    """``active``, ``revoked``, ``disabled`` (its user is), ``expired`` or ``idle`` (a session)."""


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """What :func:`look_up_token` found: the user or a refusal, and the token to mark as used, if due."""

    result: UserInfo | Refusal
    touch_id: int | None = None


def new_token() -> str:
    """A fresh random token (43 URL-safe characters), never starting with ``-``.

    One in 64 would, and a command line reads such a token as an option (``dicomflow tokens revoke -x…``).
    """
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def insert_token(
    conn: Connection, user_id: int, token: str, kind: TokenKind, now: datetime, expires_in: timedelta | None
) -> None:
    """Store ``token`` (only its SHA-256 and first characters) for a user."""
    values = {
        "user_id": user_id,
        "token_sha256": _token_digest(token),
        "created_at": now,
        "kind": kind.value,
        "prefix": token[:_PREFIX_CHARS],
        "expires_at": None if expires_in is None else now + expires_in,
    }
    conn.execute(insert(Token).values(values))


def look_up_token(conn: Connection, token: str, session_idle_timeout: float, now: datetime) -> TokenCheck:
    """The user of a token or why it is refused (unknown, revoked, user disabled, expired, session idle).

    ``touch_id`` is the token's id when its last use should be written (:func:`touch_token`): at most once a
    minute, so that a session stays alive and ``tokens list`` shows when a token was last used.
    """
    row = conn.execute(_TOKEN_CHECK, {"digest": _token_digest(token)}).first()
    if row is None:
        return TokenCheck(Refusal.UNKNOWN)
    state = _state(row, session_idle_timeout, now)
    if state != "active":
        return TokenCheck(_REFUSAL_OF_STATE[state])
    last_used = row.last_used_at and as_utc(row.last_used_at)
    due = min(_TOUCH_EVERY, session_idle_timeout / 2)
    touch = last_used is None or (now - last_used).total_seconds() >= due
    return TokenCheck(user_of_row(row), row.token_id if touch else None)


def touch_token(conn: Connection, token_id: int, now: datetime) -> None:
    """Write that a token was used ``now``."""
    conn.execute(update(Token).where(Token.id == token_id).values(last_used_at=now))


def list_tokens(
    conn: Connection, email: str | None, session_idle_timeout: float, now: datetime
) -> list[TokenInfo]:
    """Every token (of one user, if ``email``), oldest first, each with its state ``now``."""
    query = (
        select(*_TOKEN_CHECK.selected_columns, Token.prefix)
        .join(Token, Token.user_id == User.id)
        .order_by(Token.id)
    )
    if email is not None:
        query = query.where(User.email == email.strip().lower())
    return [_token_info(row, session_idle_timeout, now) for row in conn.execute(query).all()]


def revoke(conn: Connection, token: str, now: datetime) -> None:
    """Revoke a token (a logout); unknown and revoked tokens are left as they are."""
    conn.execute(
        update(Token)
        .where(Token.token_sha256 == _token_digest(token), Token.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def revoke_ref(conn: Connection, ref: str, now: datetime) -> int:
    """Revoke the token of an id shown by :func:`list_tokens`, or the token itself; returns its id.

    Raises
    ------
    NotFound
        No token has this id, or no token is the one given.
    """
    ref = ref.strip()
    where = Token.id == int(ref) if ref.isdigit() else Token.token_sha256 == _token_digest(ref)
    token_id = conn.execute(select(Token.id).where(where)).scalars().first()
    if token_id is None:
        named = f"has id {ref}" if ref.isdigit() else "is the one given"
        raise NotFound(f"no token {named}")
    conn.execute(update(Token).where(Token.id == token_id, Token.revoked_at.is_(None)).values(revoked_at=now))
    return int(token_id)


def delete_idle_sessions(conn: Connection, cutoff: datetime) -> int:
    """Delete the sessions last used (or made) before ``cutoff``; returns how many. API tokens stay."""
    last_activity = func.coalesce(Token.last_used_at, Token.created_at)
    result = conn.execute(delete(Token).where(Token.kind == TokenKind.SESSION.value, last_activity < cutoff))
    return int(result.rowcount)


_REFUSAL_OF_STATE = {
    "revoked": Refusal.REVOKED,
    "disabled": Refusal.DISABLED,
    "expired": Refusal.EXPIRED,
    "idle": Refusal.SESSION_EXPIRED,
}


def _state(row: Any, session_idle_timeout: float, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.disabled_at is not None:
        return "disabled"
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        return "expired"
    if row.kind == TokenKind.SESSION:
        last_used = as_utc(row.last_used_at or row.token_created_at)
        if (now - last_used).total_seconds() > session_idle_timeout:
            return "idle"
    return "active"


def _token_info(row: Any, session_idle_timeout: float, now: datetime) -> TokenInfo:
    return TokenInfo(
        id=row.token_id,
        prefix=row.prefix,
        email=row.email,
        kind=TokenKind(row.kind),
        created_at=as_utc(row.token_created_at),
        expires_at=row.expires_at and as_utc(row.expires_at),
        last_used_at=row.last_used_at and as_utc(row.last_used_at),
        revoked_at=row.revoked_at and as_utc(row.revoked_at),
        state=_state(row, session_idle_timeout, now),
    )


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
