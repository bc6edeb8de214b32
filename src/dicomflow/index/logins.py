"""Repository of failed logins, the counts that throttle password logins per account and per address.

Failed logins are counted in the index (table ``login_failures``, one row per ``email:<email>`` and per
``address:<client address>``), so that every HTTP process of ``dicomflow serve`` sees the same counts. Once a
key has ``max_failures`` failures within ``failure_window`` seconds it is locked for ``lockout`` seconds,
doubling with each further failure up to ``lockout_max``. Each function runs inside the caller's connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update

from dicomflow.index._db import as_utc
from dicomflow.index._models import LoginFailure

__all__ = [
    "LoginPolicy",
    "account_key",
    "address_key",
    "forget",
    "forget_before",
    "locked_until",
    "record_failure",
]

_MAX_KEY = 320


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """When failed logins lock an account or a client address (see the ``http.login_*`` settings)."""

    max_failures: int = 5
    max_failures_per_address: int = 20
    lockout: float = 1.0
    lockout_max: float = 900.0
    failure_window: float = 86400.0


def account_key(email: str) -> str:
    """The key an email's failures are counted under."""
    return f"email:{email.strip().lower()}"[:_MAX_KEY]


def address_key(address: str) -> str:
    """The key a client address's failures are counted under."""
    return f"address:{address}"[:_MAX_KEY]


def locked_until(conn: Connection, keys: list[str]) -> datetime | None:
    """The latest end of a lock of any of ``keys`` (``None``: none was ever locked)."""
    query = select(LoginFailure.locked_until).where(
        LoginFailure.key.in_(keys), LoginFailure.locked_until.is_not(None)
    )
    until = [as_utc(value) for value in conn.execute(query).scalars() if value is not None]
    return max(until, default=None)


def record_failure(conn: Connection, key: str, limit: int, policy: LoginPolicy, now: datetime) -> None:
    """Count one failure of ``key``, and lock it once it has ``limit`` failures within the window."""
    row = conn.execute(
        select(LoginFailure.failures, LoginFailure.last_failure_at).where(LoginFailure.key == key)
    ).first()
    fresh = row is None or (now - as_utc(row.last_failure_at)).total_seconds() > policy.failure_window
    failures = 1 if row is None or fresh else row.failures + 1
    until = None
    if failures >= limit:
        delay = min(policy.lockout_max, policy.lockout * 2 ** min(failures - limit, 40))
        until = now + timedelta(seconds=delay)
    values = {"failures": failures, "last_failure_at": now, "locked_until": until}
    if row is None:
        conn.execute(insert(LoginFailure).values(key=key, **values))
    else:
        conn.execute(update(LoginFailure).where(LoginFailure.key == key).values(**values))


def forget(conn: Connection, key: str) -> None:
    """Forget the failures of ``key`` (a successful login of its account)."""
    conn.execute(delete(LoginFailure).where(LoginFailure.key == key))


def forget_before(conn: Connection, moment: datetime) -> None:
    """Forget every key whose last failure is older than ``moment`` (past the window)."""
    conn.execute(delete(LoginFailure).where(LoginFailure.last_failure_at < moment))
