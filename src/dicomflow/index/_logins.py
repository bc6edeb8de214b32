"""Password logins, throttled per account and per client address.

Failed logins are counted in the index (table ``login_failures``, one row per ``email:<email>`` and per
``address:<client address>``), so that every HTTP process of ``dicomflow serve`` sees the same counts. Once a
key has ``max_failures`` failures within ``failure_window`` seconds it is locked for ``lockout`` seconds,
doubling with each further failure up to ``lockout_max``; a locked login is refused at once with
:class:`~dicomflow.errors.TooManyAttempts` (HTTP 429 with ``Retry-After``), without checking the password.
A successful login forgets its account's failures (not its address's: an attacker's own account must not
reset the count of the guesses sprayed over other accounts). Unknown emails are counted like known ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update

from dicomflow.errors import AccountDisabled, AuthenticationRequired, TooManyAttempts
from dicomflow.index._accounts import UserInfo, authenticate
from dicomflow.index._models import LoginFailure, utcnow
from dicomflow.index._queries import as_utc, reading, writing

_MAX_KEY = 320


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """When failed logins lock an account or a client address (see the ``http.login_*`` settings)."""

    max_failures: int = 5
    max_failures_per_address: int = 20
    lockout: float = 1.0
    lockout_max: float = 900.0
    failure_window: float = 86400.0


def login(
    engine: Engine,
    email: str,
    password: str,
    *,
    address: str,
    policy: LoginPolicy,
    now: datetime | None = None,
) -> UserInfo:
    """The user of ``email`` and ``password``, unless the login is throttled or wrong.

    Parameters
    ----------
    engine
        Engine of the index.
    email, password
        What the client sent.
    address
        The client's address (its failures are counted too).
    policy
        Limits of failures and lockouts.
    now
        The current time (tests).

    Raises
    ------
    TooManyAttempts
        The account or the address is locked; ``details["retry_after"]`` is in seconds.
    AuthenticationRequired
        The email or the password is wrong (counted as a failure).
    AccountDisabled
        The password is right but the user is disabled.
    """
    now = now or utcnow()
    account = f"email:{email.strip().lower()}"[:_MAX_KEY]
    limits = {account: policy.max_failures, f"address:{address}"[:_MAX_KEY]: policy.max_failures_per_address}
    _refuse_if_locked(engine, list(limits), now)
    user = authenticate(engine, email, password)
    if user is None:
        with writing(engine) as conn:
            forgotten = now - timedelta(seconds=policy.failure_window)
            conn.execute(delete(LoginFailure).where(LoginFailure.last_failure_at < forgotten))
            for key, limit in limits.items():
                _count_failure(conn, key, limit, policy, now)
        raise AuthenticationRequired("email or password is wrong")
    with writing(engine) as conn:
        conn.execute(delete(LoginFailure).where(LoginFailure.key == account))
    if user.is_disabled:
        raise AccountDisabled("the user's account is disabled")
    return user


def _refuse_if_locked(engine: Engine, keys: list[str], now: datetime) -> None:
    query = select(LoginFailure.locked_until).where(
        LoginFailure.key.in_(keys), LoginFailure.locked_until.is_not(None)
    )
    with reading(engine) as conn:
        until = [as_utc(value) for value in conn.execute(query).scalars() if value is not None]
    latest = max(until, default=now)
    if latest > now:
        wait = math.ceil((latest - now).total_seconds())
        raise TooManyAttempts(f"too many failed logins; try again in {wait} s", {"retry_after": wait})


def _count_failure(conn: Connection, key: str, limit: int, policy: LoginPolicy, now: datetime) -> None:
    row = conn.execute(
        select(LoginFailure.failures, LoginFailure.last_failure_at).where(LoginFailure.key == key)
    ).first()
    fresh = row is None or (now - as_utc(row.last_failure_at)).total_seconds() > policy.failure_window
    failures = 1 if row is None or fresh else row.failures + 1
    locked_until = None
    if failures >= limit:
        delay = min(policy.lockout_max, policy.lockout * 2 ** min(failures - limit, 40))
        locked_until = now + timedelta(seconds=delay)
    values = {"failures": failures, "last_failure_at": now, "locked_until": locked_until}
    if row is None:
        conn.execute(insert(LoginFailure).values(key=key, **values))
    else:
        conn.execute(update(LoginFailure).where(LoginFailure.key == key).values(**values))
