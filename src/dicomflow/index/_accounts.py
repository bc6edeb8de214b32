"""Users, roles, passwords and tokens.

Passwords are hashed with argon2id (argon2-cffi's default parameters, RFC 9106's second recommended option).
Hashes of earlier releases, ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (URL-safe base64), still verify; they and
argon2id hashes of older parameters are replaced at the user's next successful login. An unknown email is
verified against a dummy hash, so that it costs as much time as a wrong password.

Tokens are random and only their SHA-256 is stored: a copy of the index gives no usable token. A token is an
API token (``dicomflow tokens create``, with an optional expiry) or a cookie session of the
icometrix-compatible API (``kind`` session), which also ends when unused for ``http.session_idle_timeout``.
Revoked tokens are kept (``revoked_at``), so that they are refused as revoked; tokens of a disabled user are
refused. :func:`check_token` is the one place that decides whether a token is good.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from dicomflow.errors import (
    AccountDisabled,
    AlreadyExists,
    AuthenticationRequired,
    NotFound,
    SessionExpired,
    TokenExpired,
    TokenRevoked,
)
from dicomflow.index._models import Membership, Project, Token, User, utcnow
from dicomflow.index._queries import as_utc, reading, writing

_SCRYPT = "scrypt"
_MAX_EMAIL = 255
_PREFIX_CHARS = 6
_TOUCH_EVERY = 60.0  # seconds: a token's last use is written at most once a minute
DEFAULT_SESSION_IDLE_TIMEOUT = 1800.0

# argon2id at OWASP's recommended cost (Password Storage Cheat Sheet: 19 MiB, 2 iterations, 1 lane), about
# 50 ms a hash here; RFC 9106's 64 MiB x 4 lanes costs 4x that per login for every HTTP process.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

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
_USER_BY_EMAIL = select(
    User.id, User.email, User.role, User.created_at, User.disabled_at, User.password_hash
).where(User.email == bindparam("email"))
_ROLES_OF_USER = (
    select(Project.group_id, Project.label, Membership.role)
    .join(Membership, Membership.project_id == Project.id)
    .where(Membership.user_id == bindparam("user_id"))
)


class Role(StrEnum):
    """What a user may do: admins manage projects and users; the others read (uploaders also send)."""

    ADMIN = "admin"
    UPLOADER = "uploader"
    REVIEWER = "reviewer"
    VIEWER = "viewer"


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
class UserInfo:
    """A user, without the password hash."""

    id: int
    email: str
    role: Role
    created_at: datetime
    is_disabled: bool = False


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


def hash_password(password: str) -> str:
    """Hash a password with argon2id and a fresh random salt into one string (``$argon2id$v=19$…``)."""
    return _hasher.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (argon2id, or scrypt of earlier releases).

    Malformed hashes never match.
    """
    return _verify(password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash should be replaced: not argon2id, or made with other parameters than today's."""
    if not password_hash.startswith("$argon2id$"):
        return True
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def _verify(password_hash: str, password: str) -> bool:
    if password_hash.startswith(_SCRYPT + "$"):
        return _verify_scrypt(password_hash, password)
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, made once per process, to verify unknown emails against."""
    return hash_password(secrets.token_urlsafe(16))


def _verify_scrypt(password_hash: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = password_hash.split("$")
        if scheme != _SCRYPT:
            return False
        digest = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(_unb64(expected))
        )
        return hmac.compare_digest(digest, _unb64(expected))
    except ValueError:
        return False


def create_user(engine: Engine, email: str, password: str, role: str | Role) -> UserInfo:
    """Create a user.

    Parameters
    ----------
    engine
        Engine of the index.
    email
        Login name; stored stripped and lower-cased.
    password
        Plain password (not empty); only its argon2id hash is kept.
    role
        ``admin``, ``uploader``, ``reviewer`` or ``viewer``.

    Returns
    -------
    UserInfo

    Raises
    ------
    AlreadyExists
        A user with this email exists.
    ValueError
        The email, password or role is not acceptable.
    """
    role, email = Role(role), _normalized_email(email)
    if not password:
        raise ValueError("password must not be empty")
    created_at = utcnow()
    values = {
        "email": email,
        "password_hash": hash_password(password),
        "role": role.value,
        "created_at": created_at,
    }
    clash = AlreadyExists(f"user {email!r} exists already", {"email": email})
    try:
        with writing(engine) as conn:
            if conn.execute(select(User.id).where(User.email == email)).first() is not None:
                raise clash
            user_id = conn.execute(insert(User).values(values).returning(User.id)).scalar_one()
    except IntegrityError as exc:
        raise clash from exc
    return UserInfo(id=user_id, email=email, role=role, created_at=created_at)


def authenticate(engine: Engine, email: str, password: str) -> UserInfo | None:
    """The user with this email and password, or ``None`` when either is wrong.

    An unknown email is verified against a dummy hash (the same work as a wrong password); a hash of an
    earlier scheme or of older parameters is replaced after a match. A disabled user is returned (with
    ``is_disabled``): the caller refuses it, once the password was right.
    """
    dummy = _dummy_hash()  # made by the first login of the process, whichever email it names
    with reading(engine) as conn:
        row = conn.execute(_USER_BY_EMAIL, {"email": email.strip().lower()}).first()
    if row is None:
        _verify(dummy, password)
        return None
    if not _verify(row.password_hash, password):
        return None
    if needs_rehash(row.password_hash):
        with writing(engine) as conn:  # only if nobody changed it meanwhile
            conn.execute(
                update(User)
                .where(User.id == row.id, User.password_hash == row.password_hash)
                .values(password_hash=hash_password(password))
            )
    return _user(row)


def create_token(
    engine: Engine,
    email: str,
    *,
    kind: str | TokenKind = TokenKind.API,
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> str:
    """Create a token for a user and return it; only its SHA-256 is stored, so show it once.

    Parameters
    ----------
    engine
        Engine of the index.
    email
        The user's email.
    kind
        ``api`` (a bearer token) or ``session`` (a cookie session, which also ends when idle).
    expires_in
        The token is refused this long after ``now``; ``None``: never.
    now
        The current time (tests).

    Raises
    ------
    NotFound
        No user has this email.
    """
    kind, email, now = TokenKind(kind), email.strip().lower(), now or utcnow()
    token = secrets.token_urlsafe(32)
    values = {
        "token_sha256": _token_digest(token),
        "created_at": now,
        "kind": kind.value,
        "prefix": token[:_PREFIX_CHARS],
        "expires_at": None if expires_in is None else now + expires_in,
    }
    with writing(engine) as conn:
        user_id = conn.execute(select(User.id).where(User.email == email)).scalars().first()
        if user_id is None:
            raise NotFound(f"no user has email {email!r}", {"email": email})
        conn.execute(insert(Token).values(user_id=user_id, **values))
    return token


def look_up_token(
    engine: Engine,
    token: str,
    *,
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
    now: datetime | None = None,
) -> TokenCheck:
    """The user of a token or why it is refused, without writing; :func:`check_token` also marks its use.

    ``touch_id`` is the token's id when its last use should be written (:func:`touch_token`): at most once a
    minute, so that a session stays alive and ``tokens list`` shows when a token was last used.
    """
    now = now or utcnow()
    with reading(engine) as conn:
        row = conn.execute(_TOKEN_CHECK, {"digest": _token_digest(token)}).first()
    if row is None:
        return TokenCheck(Refusal.UNKNOWN)
    state = _state(row, session_idle_timeout, now)
    if state != "active":
        return TokenCheck(Refusal(_REFUSAL_OF_STATE[state]))
    last_used = row.last_used_at and as_utc(row.last_used_at)
    due = min(_TOUCH_EVERY, session_idle_timeout / 2)
    touch = last_used is None or (now - last_used).total_seconds() >= due
    return TokenCheck(_user(row), row.token_id if touch else None)


def touch_token(engine: Engine, token_id: int, now: datetime | None = None) -> None:
    """Write that a token was used ``now``."""
    with writing(engine) as conn:
        conn.execute(update(Token).where(Token.id == token_id).values(last_used_at=now or utcnow()))


def check_token(
    engine: Engine,
    token: str,
    *,
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
    now: datetime | None = None,
) -> UserInfo | Refusal:
    """The user of a token, or why it is refused (unknown, revoked, user disabled, expired, session idle).

    Parameters
    ----------
    engine
        Engine of the index.
    token
        The token as the client sent it.
    session_idle_timeout
        Seconds a session (``kind`` session) may go unused; API tokens have no idle limit.
    now
        The current time (tests).

    Returns
    -------
    UserInfo | Refusal
        ``Refusal.error()`` is the :class:`~dicomflow.errors.AuthenticationRequired` to raise.
    """
    now = now or utcnow()
    checked = look_up_token(engine, token, session_idle_timeout=session_idle_timeout, now=now)
    if checked.touch_id is not None:
        touch_token(engine, checked.touch_id, now)
    return checked.result


def user_for_token(
    engine: Engine,
    token: str,
    *,
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
    now: datetime | None = None,
) -> UserInfo | None:
    """The user of a good token, or ``None`` for any refusal (:func:`check_token` says which)."""
    result = check_token(engine, token, session_idle_timeout=session_idle_timeout, now=now)
    return result if isinstance(result, UserInfo) else None


def list_tokens(
    engine: Engine,
    *,
    email: str | None = None,
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
    now: datetime | None = None,
) -> list[TokenInfo]:
    """Every token (of one user, if ``email``), oldest first, each with its state ``now``."""
    now = now or utcnow()
    query = (
        select(*_TOKEN_CHECK.selected_columns, Token.prefix)
        .join(Token, Token.user_id == User.id)
        .order_by(Token.id)
    )
    if email is not None:
        query = query.where(User.email == email.strip().lower())
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    return [_token_info(row, session_idle_timeout, now) for row in rows]


def revoke_token(engine: Engine, token: str, now: datetime | None = None) -> None:
    """Revoke a token (a logout); unknown and revoked tokens are left as they are."""
    with writing(engine) as conn:
        conn.execute(
            update(Token)
            .where(Token.token_sha256 == _token_digest(token), Token.revoked_at.is_(None))
            .values(revoked_at=now or utcnow())
        )


def revoke_token_ref(engine: Engine, ref: str, now: datetime | None = None) -> TokenInfo:
    """Revoke the token of an id shown by :func:`list_tokens`, or the token itself; returns it revoked.

    Raises
    ------
    NotFound
        No token has this id, or no token is the one given.
    """
    ref = ref.strip()
    where = Token.id == int(ref) if ref.isdigit() else Token.token_sha256 == _token_digest(ref)
    with writing(engine) as conn:
        token_id = conn.execute(select(Token.id).where(where)).scalars().first()
        if token_id is None:
            named = f"has id {ref}" if ref.isdigit() else "is the one given"
            raise NotFound(f"no token {named}")
        conn.execute(
            update(Token)
            .where(Token.id == token_id, Token.revoked_at.is_(None))
            .values(revoked_at=now or utcnow())
        )
    return next(info for info in list_tokens(engine) if info.id == token_id)


def prune_sessions(engine: Engine, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete the sessions last used (or made) more than ``older_than`` ago; returns how many.

    API tokens are kept, revoked or not, so that ``tokens list --all`` still shows them.
    """
    cutoff = (now or utcnow()) - older_than
    last_activity = func.coalesce(Token.last_used_at, Token.created_at)
    with writing(engine) as conn:
        result = conn.execute(
            delete(Token).where(Token.kind == TokenKind.SESSION.value, last_activity < cutoff)
        )
    return int(result.rowcount)


def set_user_disabled(engine: Engine, email: str, disabled: bool) -> UserInfo:
    """Disable a user (no login, token or session works) or enable it again; returns the user.

    Raises
    ------
    NotFound
        No user has this email.
    """
    email = email.strip().lower()
    with writing(engine) as conn:
        conn.execute(
            update(User).where(User.email == email).values(disabled_at=utcnow() if disabled else None)
        )
        row = conn.execute(_USER_BY_EMAIL, {"email": email}).first()
    if row is None:
        raise NotFound(f"no user has email {email!r}", {"email": email})
    return _user(row)


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


def _user(row: Any) -> UserInfo:
    return UserInfo(row.id, row.email, Role(row.role), as_utc(row.created_at), row.disabled_at is not None)


def _normalized_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and domain) or len(email) > _MAX_EMAIL or any(c.isspace() for c in email):
        raise ValueError(f"email {email!r} is not an address like name@example.org")
    return email


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def grant(engine: Engine, email: str, project_id: int, role: str | Role) -> None:
    """Give a user ``role`` in one project (replacing the role held there before).

    Raises
    ------
    NotFound
        No user has this email.
    """
    role, email = Role(role), email.strip().lower()
    with writing(engine) as conn:
        user_id = conn.execute(select(User.id).where(User.email == email)).scalars().first()
        if user_id is None:
            raise NotFound(f"no user has email {email!r}", {"email": email})
        conn.execute(
            delete(Membership).where(Membership.user_id == user_id, Membership.project_id == project_id)
        )
        conn.execute(
            insert(Membership).values(
                user_id=user_id, project_id=project_id, role=role.value, created_at=utcnow()
            )
        )


def project_roles(engine: Engine, user: UserInfo) -> dict[tuple[str, str], Role] | None:
    """(group, project label) → the user's role there; None for admins, who may do anything anywhere."""
    if user.role is Role.ADMIN:
        return None
    with reading(engine) as conn:
        rows = conn.execute(_ROLES_OF_USER, {"user_id": user.id})
        return {(row.group_id, row.label): Role(row.role) for row in rows}
