"""Repository of users and their memberships (a role in one project).

Each function runs inside the caller's connection (``reading`` / ``writing``) and returns frozen dataclasses.
Passwords are kept as argon2id hashes (:func:`hash_password`; scrypt hashes of earlier releases still
verify, see :mod:`dicomflow.index._passwords`); the plain password is never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from dicomflow.errors import NotFound
from dicomflow.index._db import as_utc
from dicomflow.index._models import Membership, Project, User, utcnow
from dicomflow.index._passwords import check_password, dummy_hash, hash_password, needs_rehash

__all__ = [
    "Credentials",
    "Role",
    "UserInfo",
    "check_password",
    "dummy_hash",
    "email_taken",
    "hash_password",
    "insert_user",
    "needs_rehash",
    "normalized_email",
    "project_roles",
    "replace_password_hash",
    "set_disabled",
    "set_role",
    "user_credentials",
    "user_id_of",
    "user_of_row",
]

_MAX_EMAIL = 255

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


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user, without the password hash."""

    id: int
    email: str
    role: Role
    created_at: datetime
    is_disabled: bool = False


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user and its password hash, to verify a login against (never leaves the use case)."""

    user: UserInfo
    password_hash: str


def normalized_email(email: str) -> str:
    """The email stripped and lower-cased.

    Raises
    ------
    ValueError
        It is not an address like ``name@example.org`` (or longer than 255 characters).
    """
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and domain) or len(email) > _MAX_EMAIL or any(c.isspace() for c in email):
        raise ValueError(f"email {email!r} is not an address like name@example.org")
    return email


def email_taken(conn: Connection, email: str) -> bool:
    """Whether a user has this (normalised) email."""
    return conn.execute(select(User.id).where(User.email == email)).first() is not None


def insert_user(
    conn: Connection, email: str, password_hash: str, role: Role, created_at: datetime
) -> UserInfo:
    """Insert a user (email normalised by the caller); a clash raises SQLAlchemy's ``IntegrityError``."""
    values = {"email": email, "password_hash": password_hash, "role": role.value, "created_at": created_at}
    user_id = conn.execute(insert(User).values(values).returning(User.id)).scalar_one()
    return UserInfo(id=user_id, email=email, role=role, created_at=created_at)


def user_id_of(conn: Connection, email: str) -> int:
    """The id of the user of ``email`` (stripped and lower-cased here).

    Raises
    ------
    NotFound
        No user has this email.
    """
    email = email.strip().lower()
    user_id = conn.execute(select(User.id).where(User.email == email)).scalars().first()
    if user_id is None:
        raise NotFound(f"no user has email {email!r}", {"email": email})
    return int(user_id)


def user_credentials(conn: Connection, email: str) -> Credentials | None:
    """The user of ``email`` (stripped and lower-cased here) with its password hash, if there is one."""
    row = conn.execute(_USER_BY_EMAIL, {"email": email.strip().lower()}).first()
    return None if row is None else Credentials(_user(row), row.password_hash)


def replace_password_hash(conn: Connection, user_id: int, old_hash: str, new_hash: str) -> None:
    """Store ``new_hash`` for the user if its hash is still ``old_hash`` (nobody changed it meanwhile)."""
    conn.execute(
        update(User).where(User.id == user_id, User.password_hash == old_hash).values(password_hash=new_hash)
    )


def set_disabled(conn: Connection, email: str, disabled: bool) -> UserInfo:
    """Disable a user (no login, token or session works) or enable it again; returns the user.

    Raises
    ------
    NotFound
        No user has this email.
    """
    email = email.strip().lower()
    conn.execute(update(User).where(User.email == email).values(disabled_at=utcnow() if disabled else None))
    found = user_credentials(conn, email)
    if found is None:
        raise NotFound(f"no user has email {email!r}", {"email": email})
    return found.user


def set_role(conn: Connection, user_id: int, project_id: int, role: Role) -> None:
    """Give a user ``role`` in one project (replacing the role held there before)."""
    conn.execute(delete(Membership).where(Membership.user_id == user_id, Membership.project_id == project_id))
    conn.execute(
        insert(Membership).values(
            user_id=user_id, project_id=project_id, role=role.value, created_at=utcnow()
        )
    )


def project_roles(conn: Connection, user_id: int) -> dict[tuple[str, str], Role]:
    """(group, project label) → the user's role there, for every project the user belongs to."""
    rows = conn.execute(_ROLES_OF_USER, {"user_id": user_id})
    return {(row.group_id, row.label): Role(row.role) for row in rows}


def user_of_row(row: Any) -> UserInfo:
    """The user of a row with ``id``, ``email``, ``role``, ``created_at`` and ``disabled_at`` columns."""
    return _user(row)


def _user(row: Any) -> UserInfo:
    return UserInfo(row.id, row.email, Role(row.role), as_utc(row.created_at), row.disabled_at is not None)
