"""Accounts: users, their roles, password logins (throttled), API tokens and cookie sessions.

The use cases of ``dicomflow users`` / ``dicomflow tokens``, of the API's bearer check (``api/_deps.py``,
``api/_guard.py``) and of the icometrix-compatible API's logins. Each opens its own short transaction(s);
a password is verified outside any transaction (argon2id costs ~50 ms), and an unknown email is verified
against a dummy hash, so that it costs as much time as a wrong password.

Failed logins are throttled per account and per client address (:mod:`dicomflow.index.logins`): a locked
login is refused at once with :class:`~dicomflow.errors.TooManyAttempts` (HTTP 429 with ``Retry-After``),
without checking the password. A successful login forgets its account's failures (not its address's: an
attacker's own account must not reset the count of the guesses sprayed over other accounts). Unknown emails
are counted like known ones.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from dicomflow.errors import AccountDisabled, AlreadyExists, AuthenticationRequired, TooManyAttempts
from dicomflow.index import accounts as users
from dicomflow.index import logins, reading, tokens, utcnow, writing
from dicomflow.index.accounts import Role, UserInfo
from dicomflow.index.logins import LoginPolicy
from dicomflow.index.studies import project_id_by_label
from dicomflow.index.tokens import Refusal, TokenCheck, TokenInfo, TokenKind

if TYPE_CHECKING:
    from dicomflow.runtime import Application

__all__ = [
    "LoginPolicy",
    "Refusal",
    "Role",
    "TokenCheck",
    "TokenInfo",
    "TokenKind",
    "UserInfo",
    "authenticate",
    "check_token",
    "create_token",
    "create_user",
    "end_session",
    "grant",
    "list_tokens",
    "login",
    "login_policy",
    "look_up_token",
    "project_roles",
    "prune_sessions",
    "revoke_token",
    "revoke_token_ref",
    "session_for_password",
    "session_for_token",
    "set_user_disabled",
    "touch_token",
    "user_for_token",
]

KEEP_ENDED_SESSIONS = timedelta(days=1)  # ended sessions stay listed (tokens list --all) for a day


# -- users ---------------------------------------------------------------------------------------------------
def create_user(app: Application, email: str, password: str, role: str | Role) -> UserInfo:
    """Create a user.

    Parameters
    ----------
    app
        The application.
    email
        Login name; stored stripped and lower-cased.
    password
        Plain password (not empty); only its argon2id hash is kept.
    role
        ``admin``, ``uploader``, ``reviewer`` or ``viewer``.

    Raises
    ------
    AlreadyExists
        A user with this email exists.
    ValueError
        The email, password or role is not acceptable.
    """
    role, email = Role(role), users.normalized_email(email)
    if not password:
        raise ValueError("password must not be empty")
    clash = AlreadyExists(f"user {email!r} exists already", {"email": email})
    password_hash = users.hash_password(password)
    try:
        with writing(app.engine) as conn:
            if users.email_taken(conn, email):
                raise clash
            return users.insert_user(conn, email, password_hash, role, utcnow())
    except IntegrityError as exc:
        raise clash from exc


def set_user_disabled(app: Application, email: str, disabled: bool) -> UserInfo:
    """Disable a user (no login, token or session works) or enable it again; returns the user.

    Raises
    ------
    NotFound
        No user has this email.
    """
    with writing(app.engine) as conn:
        return users.set_disabled(conn, email, disabled)


def grant(app: Application, email: str, project: int | str, role: str | Role) -> None:
    """Give a user ``role`` in one project (by id, or by label) replacing the role held there before.

    Raises
    ------
    UnknownProject
        No project (or more than one) has the label.
    NotFound
        No user has this email.
    """
    role = Role(role)
    with writing(app.engine) as conn:
        project_id = project_id_by_label(conn, project) if isinstance(project, str) else project
        users.set_role(conn, users.user_id_of(conn, email), project_id, role)


def project_roles(app: Application, user: UserInfo) -> dict[tuple[str, str], Role] | None:
    """(group, project label) → the user's role there; None for admins, who may do anything anywhere."""
    if user.role is Role.ADMIN:
        return None
    with reading(app.engine) as conn:
        return users.project_roles(conn, user.id)


# -- logins --------------------------------------------------------------------------------------------------
def authenticate(app: Application, email: str, password: str) -> UserInfo | None:
    """The user with this email and password, or ``None`` when either is wrong.

    An unknown email is verified against a dummy hash (the same work as a wrong password); a hash of an
    earlier scheme or of older parameters is replaced after a match. A disabled user is returned (with
    ``is_disabled``): the caller refuses it, once the password was right.
    """
    dummy = users.dummy_hash()  # made by the first login of the process, whichever email it names
    with reading(app.engine) as conn:
        found = users.user_credentials(conn, email)
    if found is None:
        users.check_password(dummy, password)
        return None
    if not users.check_password(found.password_hash, password):
        return None
    if users.needs_rehash(found.password_hash):
        with writing(app.engine) as conn:
            new_hash = users.hash_password(password)
            users.replace_password_hash(conn, found.user.id, found.password_hash, new_hash)
    return found.user


def login_policy(app: Application) -> LoginPolicy:
    """The throttle of password logins set by the ``http.login_*`` settings."""
    http = app.settings.http
    return LoginPolicy(
        max_failures=http.login_max_failures,
        max_failures_per_address=http.login_max_failures_per_address,
        lockout=http.login_lockout,
        lockout_max=http.login_lockout_max,
        failure_window=http.login_failure_window,
    )


def login(
    app: Application,
    email: str,
    password: str,
    *,
    address: str,
    policy: LoginPolicy | None = None,
    now: datetime | None = None,
) -> UserInfo:
    """The user of ``email`` and ``password``, unless the login is throttled or wrong.

    Parameters
    ----------
    app
        The application.
    email, password
        What the client sent.
    address
        The client's address (its failures are counted too).
    policy
        Limits of failures and lockouts (default: :func:`login_policy`).
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
    now, policy = now or utcnow(), policy or login_policy(app)
    account = logins.account_key(email)
    limits = {account: policy.max_failures, logins.address_key(address): policy.max_failures_per_address}
    with reading(app.engine) as conn:
        until = logins.locked_until(conn, list(limits))
    if until is not None and until > now:
        wait = math.ceil((until - now).total_seconds())
        raise TooManyAttempts(f"too many failed logins; try again in {wait} s", {"retry_after": wait})
    user = authenticate(app, email, password)
    if user is None:
        with writing(app.engine) as conn:
            logins.forget_before(conn, now - timedelta(seconds=policy.failure_window))
            for key, limit in limits.items():
                logins.record_failure(conn, key, limit, policy, now)
        raise AuthenticationRequired("email or password is wrong")
    with writing(app.engine) as conn:
        logins.forget(conn, account)
    if user.is_disabled:
        raise AccountDisabled("the user's account is disabled")
    return user


# -- tokens --------------------------------------------------------------------------------------------------
def create_token(
    app: Application,
    email: str,
    *,
    kind: str | TokenKind = TokenKind.API,
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> str:
    """Create a token for a user and return it; only its SHA-256 is stored, so show it once.

    Parameters
    ----------
    app
        The application.
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
    kind, now, token = TokenKind(kind), now or utcnow(), tokens.new_token()
    with writing(app.engine) as conn:
        tokens.insert_token(conn, users.user_id_of(conn, email), token, kind, now, expires_in)
    return token


def look_up_token(
    app: Application, token: str, *, session_idle_timeout: float | None = None, now: datetime | None = None
) -> TokenCheck:
    """The user of a token or why it is refused, without writing; :func:`check_token` also marks its use.

    ``session_idle_timeout`` defaults to the ``http.session_idle_timeout`` setting.
    """
    with reading(app.engine) as conn:
        return tokens.look_up_token(conn, token, _idle(app, session_idle_timeout), now or utcnow())


def touch_token(app: Application, token_id: int, now: datetime | None = None) -> None:
    """Write that a token was used ``now``."""
    with writing(app.engine) as conn:
        tokens.touch_token(conn, token_id, now or utcnow())


def check_token(
    app: Application, token: str, *, session_idle_timeout: float | None = None, now: datetime | None = None
) -> UserInfo | Refusal:
    """The user of a token, or why it is refused (unknown, revoked, user disabled, expired, session idle).

    Parameters
    ----------
    app
        The application.
    token
        The token as the client sent it.
    session_idle_timeout
        Seconds a session (``kind`` session) may go unused (default: the setting); API tokens have no
        idle limit.
    now
        The current time (tests).

    Returns
    -------
    UserInfo | Refusal
        ``Refusal.error()`` is the :class:`~dicomflow.errors.AuthenticationRequired` to raise.
    """
    now = now or utcnow()
    checked = look_up_token(app, token, session_idle_timeout=session_idle_timeout, now=now)
    if checked.touch_id is not None:
        touch_token(app, checked.touch_id, now)
    return checked.result


def user_for_token(
    app: Application, token: str, *, session_idle_timeout: float | None = None, now: datetime | None = None
) -> UserInfo | None:
    """The user of a good token, or ``None`` for any refusal (:func:`check_token` says which)."""
    result = check_token(app, token, session_idle_timeout=session_idle_timeout, now=now)
    return result if isinstance(result, UserInfo) else None


def list_tokens(
    app: Application,
    *,
    email: str | None = None,
    session_idle_timeout: float | None = None,
    now: datetime | None = None,
) -> list[TokenInfo]:
    """Every token (of one user, if ``email``), oldest first, each with its state ``now``."""
    with reading(app.engine) as conn:
        return tokens.list_tokens(conn, email, _idle(app, session_idle_timeout), now or utcnow())


def revoke_token(app: Application, token: str, now: datetime | None = None) -> None:
    """Revoke a token (a logout); unknown and revoked tokens are left as they are."""
    with writing(app.engine) as conn:
        tokens.revoke(conn, token, now or utcnow())


def revoke_token_ref(app: Application, ref: str, now: datetime | None = None) -> TokenInfo:
    """Revoke the token of an id shown by :func:`list_tokens`, or the token itself; returns it revoked.

    Raises
    ------
    NotFound
        No token has this id, or no token is the one given.
    """
    with writing(app.engine) as conn:
        token_id = tokens.revoke_ref(conn, ref, now or utcnow())
    return next(info for info in list_tokens(app) if info.id == token_id)


def prune_sessions(app: Application, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete the sessions last used (or made) more than ``older_than`` ago; returns how many.

    API tokens are kept, revoked or not, so that ``tokens list --all`` still shows them.
    """
    with writing(app.engine) as conn:
        return tokens.delete_idle_sessions(conn, (now or utcnow()) - older_than)


# -- cookie sessions (the icometrix-compatible API) ----------------------------------------------------------


def session_for_token(app: Application, key: str) -> tuple[UserInfo, str]:
    """Exchange an API token for a cookie session: its user and the session's token.

    Raises
    ------
    AuthenticationRequired
        The token is refused; its subclasses say why.
    """
    user = check_token(app, key)
    if isinstance(user, Refusal):
        raise user.error()
    return user, _open_session(app, user.email)


def session_for_password(app: Application, email: str, password: str, address: str) -> tuple[UserInfo, str]:
    """Log in with email and password (throttled, see :func:`login`): the user and a session's token."""
    user = login(app, email, password, address=address)
    return user, _open_session(app, user.email)


def end_session(app: Application, token: str) -> None:
    """End a cookie session (a logout): its token is revoked."""
    revoke_token(app, token)


def _open_session(app: Application, email: str) -> str:
    idle = timedelta(seconds=app.settings.http.session_idle_timeout)
    prune_sessions(app, older_than=idle + KEEP_ENDED_SESSIONS)
    return create_token(app, email, kind=TokenKind.SESSION)  # ends when idle, revoked at logout


def _idle(app: Application, session_idle_timeout: float | None) -> float:
    return app.settings.http.session_idle_timeout if session_idle_timeout is None else session_idle_timeout
