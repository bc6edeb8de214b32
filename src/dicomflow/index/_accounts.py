"""Users, roles, passwords and bearer tokens.

Passwords are hashed with scrypt and a random salt into one string, ``scrypt$<n>$<r>$<p>$<salt>$<hash>``
(URL-safe base64), so that the cost can rise later without breaking older hashes. Tokens are random and
only their SHA-256 is stored: a copy of the index gives no usable token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Engine, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from dicomflow.errors import AlreadyExists, NotFound
from dicomflow.index._models import Membership, Project, Token, User, utcnow
from dicomflow.index._queries import as_utc, reading, writing

_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAX_EMAIL = 255

# Looked up on every request: built once (building a select costs more than running it).
_USER_OF_TOKEN = (
    select(User.id, User.email, User.role, User.created_at)
    .join(Token, Token.user_id == User.id)
    .where(Token.token_sha256 == bindparam("digest"))
)
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


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user, without the password hash."""

    id: int
    email: str
    role: Role
    created_at: datetime


def hash_password(password: str) -> str:
    """Hash a password with scrypt and a fresh random salt into one string."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _N, _R, _P)
    return "$".join((_SCHEME, str(_N), str(_R), str(_P), _b64(salt), _b64(digest)))


def check_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (made by :func:`hash_password`); malformed is False."""
    try:
        scheme, n, r, p, salt, expected = password_hash.split("$")
        if scheme != _SCHEME:
            return False
        digest = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
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
        Plain password (not empty); only its scrypt hash is kept.
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
    """The user with this email and password, or ``None`` when either is wrong."""
    query = select(User.id, User.email, User.role, User.created_at, User.password_hash)
    with reading(engine) as conn:
        row = conn.execute(query.where(User.email == email.strip().lower())).first()
    if row is None or not check_password(row.password_hash, password):
        return None
    return UserInfo(row.id, row.email, Role(row.role), as_utc(row.created_at))


def create_token(engine: Engine, email: str) -> str:
    """Create a bearer token for a user and return it; only its SHA-256 is stored, so show it once.

    Raises
    ------
    NotFound
        No user has this email.
    """
    email = email.strip().lower()
    token = secrets.token_urlsafe(32)
    with writing(engine) as conn:
        user_id = conn.execute(select(User.id).where(User.email == email)).scalars().first()
        if user_id is None:
            raise NotFound(f"no user has email {email!r}", {"email": email})
        conn.execute(
            insert(Token).values(user_id=user_id, token_sha256=_token_digest(token), created_at=utcnow())
        )
    return token


def user_for_token(engine: Engine, token: str) -> UserInfo | None:
    """The user a bearer token belongs to, or ``None`` for an unknown token."""
    with reading(engine) as conn:
        row = conn.execute(_USER_OF_TOKEN, {"digest": _token_digest(token)}).first()
    return None if row is None else UserInfo(row.id, row.email, Role(row.role), as_utc(row.created_at))


def _normalized_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and domain) or len(email) > _MAX_EMAIL or any(c.isspace() for c in email):
        raise ValueError(f"email {email!r} is not an address like name@example.org")
    return email


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


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


def revoke_token(engine: Engine, token: str) -> None:
    """Forget a token (a logout); unknown tokens are ignored."""
    with writing(engine) as conn:
        conn.execute(delete(Token).where(Token.token_sha256 == _token_digest(token)))
