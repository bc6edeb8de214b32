"""Users, password hashes and bearer tokens in the index."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select, update

from apihelpers import TestClient, api_settings
from dicomflow.api import create_app
from dicomflow.api._deps import Identities, bearer_user
from dicomflow.client import Client
from dicomflow.errors import (
    AccountDisabled,
    AlreadyExists,
    AuthenticationRequired,
    NotFound,
    TokenExpired,
    TokenRevoked,
    TooManyAttempts,
)
from dicomflow.index import LoginFailure, Token, User
from dicomflow.index import accounts as account_repository
from dicomflow.index.accounts import check_password, hash_password, needs_rehash
from dicomflow.runtime import Application, open_application
from dicomflow.usecases.accounts import (
    LoginPolicy,
    Refusal,
    Role,
    TokenKind,
    UserInfo,
    authenticate,
    check_token,
    create_token,
    create_user,
    list_tokens,
    login,
    prune_sessions,
    revoke_token,
    revoke_token_ref,
    set_user_disabled,
    user_for_token,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    application = open_application(api_settings(tmp_path))
    yield application
    application.close()


def test_password_hash_round_trip() -> None:
    encoded = hash_password("s3cret")
    assert encoded.startswith("$argon2id$") and "s3cret" not in encoded
    assert check_password(encoded, "s3cret")
    assert not check_password(encoded, "s3cret ")
    assert hash_password("s3cret") != encoded  # a fresh salt every time


@pytest.mark.parametrize(
    "encoded",
    ["", "scrypt$1$2", "bcrypt$16384$8$1$c2FsdA$aGFzaA", "scrypt$x$8$1$$", "plain", "$argon2id$v=19$junk"],
)
def test_malformed_hashes_never_match(encoded: str) -> None:
    assert not check_password(encoded, "anything")


def test_create_user_stores_only_a_hash(app: Application) -> None:
    user = create_user(app, " Alice@Example.org ", "pw-1", "reviewer")
    assert (user.email, user.role) == ("alice@example.org", Role.REVIEWER)
    with app.engine.connect() as conn:
        stored = conn.execute(select(User.password_hash, User.role)).one()
    assert "pw-1" not in stored.password_hash and stored.role == "reviewer"
    assert authenticate(app, "ALICE@example.org", "pw-1") == user
    assert authenticate(app, "alice@example.org", "wrong") is None
    assert authenticate(app, "bob@example.org", "pw-1") is None


def test_emails_are_unique_ignoring_case(app: Application) -> None:
    create_user(app, "alice@example.org", "pw", Role.ADMIN)
    with pytest.raises(AlreadyExists, match="alice@example.org"):
        create_user(app, "ALICE@example.org", "other", Role.VIEWER)


BAD_USERS = [
    ("no-at-sign", "pw", "viewer"),
    ("a b@example.org", "pw", "viewer"),
    ("a@x.org", "", "viewer"),
    ("a@x.org", "pw", "root"),
]


@pytest.mark.parametrize(("email", "password", "role"), BAD_USERS)
def test_create_user_rejects_bad_input(app: Application, email: str, password: str, role: str) -> None:
    with pytest.raises(ValueError):
        create_user(app, email, password, role)


def test_token_finds_its_user_and_only_its_hash_is_stored(app: Application) -> None:
    user = create_user(app, "carol@example.org", "pw", Role.UPLOADER)
    token = create_token(app, "Carol@example.org")
    assert len(token) >= 43
    assert user_for_token(app, token) == user
    assert user_for_token(app, token + "x") is None
    with app.engine.connect() as conn:
        digests = conn.execute(select(Token.token_sha256)).scalars().all()
    assert digests == [hashlib.sha256(token.encode()).hexdigest()]


def test_tokens_are_random_and_all_valid(app: Application) -> None:
    create_user(app, "dave@example.org", "pw", Role.VIEWER)
    first, second = create_token(app, "dave@example.org"), create_token(app, "dave@example.org")
    assert first != second
    users = {user_for_token(app, first), user_for_token(app, second)}
    assert len(users) == 1 and isinstance(users.pop(), UserInfo)


def test_token_for_an_unknown_user_is_not_found(app: Application) -> None:
    with pytest.raises(NotFound, match="nobody@example.org"):
        create_token(app, "nobody@example.org")


def test_identities_remember_known_tokens_briefly_and_forget_revoked_ones(app: Application) -> None:
    create_user(app, "ann@example.org", "pw", Role.VIEWER)
    token = create_token(app, "ann@example.org")
    identities, uncached = Identities(app), Identities(app, ttl=0.0)
    assert identities.user("not-a-token") is None
    assert identities.user(token) == uncached.user(token) and identities.user(token) is not None

    revoke_token(app, token)

    assert uncached.user(token) is None  # the index says so at once
    assert identities.user(token) is not None  # another process's revocation: known for up to ttl
    identities.forget(token)  # a revocation in this process
    assert identities.user(token) is None


# -- password hashes: argon2id, upgraded at login, the same work for unknown emails ----------------------


def _scrypt_hash(password: str) -> str:
    """A hash as releases before argon2id wrote them: ``scrypt$<n>$<r>$<p>$<salt>$<hash>``."""
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    b64 = [base64.urlsafe_b64encode(x).decode().rstrip("=") for x in (salt, digest)]
    return f"scrypt$16384$8$1${b64[0]}${b64[1]}"


def _stored_hash(engine: Engine, email: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(User.password_hash).where(User.email == email)).scalar_one())


def _set_hash(engine: Engine, email: str, encoded: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(User).where(User.email == email).values(password_hash=encoded))


def test_scrypt_hashes_keep_working_and_become_argon2id_at_the_next_login(app: Application) -> None:
    user = create_user(app, "old@example.org", "pw-old", Role.VIEWER)
    _set_hash(app.engine, "old@example.org", _scrypt_hash("pw-old"))
    assert check_password(_stored_hash(app.engine, "old@example.org"), "pw-old")

    assert authenticate(app, "old@example.org", "wrong") is None
    assert _stored_hash(app.engine, "old@example.org").startswith("scrypt$")  # a failure changes nothing
    assert authenticate(app, "old@example.org", "pw-old") == user

    upgraded = _stored_hash(app.engine, "old@example.org")
    assert upgraded.startswith("$argon2id$") and not needs_rehash(upgraded)
    assert authenticate(app, "old@example.org", "pw-old") == user
    assert _stored_hash(app.engine, "old@example.org") == upgraded  # current hashes are left alone


def test_argon2_hashes_of_older_parameters_are_rehashed_at_login(app: Application) -> None:
    create_user(app, "weak@example.org", "pw", Role.VIEWER)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    _set_hash(app.engine, "weak@example.org", weak)
    assert needs_rehash(weak)
    assert authenticate(app, "weak@example.org", "pw") is not None
    assert not needs_rehash(_stored_hash(app.engine, "weak@example.org"))


def test_unknown_emails_verify_a_dummy_hash_like_known_ones(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_user(app, "known@example.org", "pw", Role.VIEWER)
    verified: list[str] = []
    real_verify = account_repository.check_password

    def spy(encoded: str, password: str) -> bool:
        verified.append(encoded)
        return real_verify(encoded, password)

    monkeypatch.setattr(account_repository, "check_password", spy)
    assert authenticate(app, "nobody@example.org", "pw") is None
    assert authenticate(app, "known@example.org", "wrong") is None
    dummy, known = verified
    assert dummy.startswith("$argon2id$") and known == _stored_hash(app.engine, "known@example.org")
    assert dummy != known and not needs_rehash(dummy)  # the same hasher, at the same cost


# -- tokens: expiry, revocation, disabled users, last use ------------------------------------------------

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_token_with_an_expiry_is_refused_after_it(app: Application) -> None:
    user = create_user(app, "exp@example.org", "pw", Role.VIEWER)
    token = create_token(app, "exp@example.org", expires_in=timedelta(days=30), now=T0)
    assert check_token(app, token, now=T0 + timedelta(days=29)) == user
    assert check_token(app, token, now=T0 + timedelta(days=30, seconds=1)) is Refusal.EXPIRED
    assert user_for_token(app, token, now=T0 + timedelta(days=31)) is None
    [info] = list_tokens(app)
    assert info.expires_at == T0 + timedelta(days=30)


def test_a_revoked_token_is_refused_as_revoked(app: Application) -> None:
    create_user(app, "rev@example.org", "pw", Role.VIEWER)
    token, other = create_token(app, "rev@example.org"), create_token(app, "rev@example.org")
    revoke_token(app, token)
    assert check_token(app, token) is Refusal.REVOKED
    assert check_token(app, "never-issued") is Refusal.UNKNOWN
    assert isinstance(check_token(app, other), UserInfo)
    assert Refusal.REVOKED.error().code == "token-revoked"
    assert isinstance(Refusal.EXPIRED.error(), AuthenticationRequired)


def test_tokens_of_a_disabled_user_are_refused_until_the_user_is_enabled(app: Application) -> None:
    create_user(app, "dis@example.org", "pw", Role.VIEWER)
    token = create_token(app, "dis@example.org")
    assert set_user_disabled(app, "dis@example.org", True).is_disabled
    assert check_token(app, token) is Refusal.DISABLED
    set_user_disabled(app, "DIS@example.org", False)
    assert isinstance(check_token(app, token), UserInfo)
    with pytest.raises(NotFound, match="ghost@example.org"):
        set_user_disabled(app, "ghost@example.org", True)


def test_tokens_are_listed_without_their_secret_and_revoked_by_id_or_by_themselves(app: Application) -> None:
    create_user(app, "lst@example.org", "pw", Role.VIEWER)
    first, second = create_token(app, "lst@example.org"), create_token(app, "lst@example.org")
    listed = list_tokens(app, now=T0)
    assert [(t.email, t.prefix, t.state) for t in listed] == [
        ("lst@example.org", first[:6], "active"),
        ("lst@example.org", second[:6], "active"),
    ]
    assert first not in repr(listed) and second not in repr(listed)
    assert revoke_token_ref(app, str(listed[0].id)).id == listed[0].id
    assert revoke_token_ref(app, second).id == listed[1].id
    assert [t.state for t in list_tokens(app)] == ["revoked", "revoked"]
    with pytest.raises(NotFound):
        revoke_token_ref(app, "999")


def test_a_token_records_when_it_was_last_used(app: Application) -> None:
    create_user(app, "use@example.org", "pw", Role.VIEWER)
    token = create_token(app, "use@example.org", now=T0)
    assert list_tokens(app)[0].last_used_at is None
    check_token(app, token, now=T0 + timedelta(hours=1))
    assert list_tokens(app)[0].last_used_at == T0 + timedelta(hours=1)
    check_token(app, token, now=T0 + timedelta(hours=1, seconds=5))  # not written again this minute
    assert list_tokens(app)[0].last_used_at == T0 + timedelta(hours=1)


def test_a_session_expires_after_its_idle_time_but_not_while_used(app: Application) -> None:
    user = create_user(app, "idle@example.org", "pw", Role.VIEWER)
    session = create_token(app, "idle@example.org", kind=TokenKind.SESSION, now=T0)
    api = create_token(app, "idle@example.org", now=T0)
    idle = 1800.0
    used = T0 + timedelta(minutes=29)
    assert check_token(app, session, session_idle_timeout=idle, now=used) == user
    later = used + timedelta(minutes=29)
    assert check_token(app, session, session_idle_timeout=idle, now=later) == user
    too_late = later + timedelta(minutes=31)
    assert check_token(app, session, session_idle_timeout=idle, now=too_late) is Refusal.SESSION_EXPIRED
    assert check_token(app, api, session_idle_timeout=idle, now=too_late) == user  # API tokens: no idle
    assert [t.state for t in list_tokens(app, session_idle_timeout=idle, now=too_late)] == [
        "idle",
        "active",
    ]


def test_identities_see_a_revocation_or_a_disable_elsewhere_within_their_ttl(app: Application) -> None:
    create_user(app, "ttl@example.org", "pw", Role.VIEWER)
    revoked, disabled = create_token(app, "ttl@example.org"), create_token(app, "ttl@example.org")
    identities = Identities(app, ttl=0.3)
    assert identities.user(revoked) is not None and identities.user(disabled) is not None
    revoke_token(app, revoked)  # another process: this one is not told
    time.sleep(0.35)
    assert identities.check(revoked) is Refusal.REVOKED and identities.user(revoked) is None
    set_user_disabled(app, "ttl@example.org", True)
    time.sleep(0.35)
    with pytest.raises(AuthenticationRequired) as refused:
        bearer_user(identities, disabled)
    assert refused.value.code == "account-disabled"


# -- logins: throttled per account and per address, in the index ----------------------------------------

POLICY = LoginPolicy(
    max_failures=3, max_failures_per_address=6, lockout=10.0, lockout_max=60.0, failure_window=3600.0
)


def _fail(app: Application, email: str, address: str, at: datetime) -> None:
    with pytest.raises(AuthenticationRequired, match="email or password is wrong"):
        login(app, email, "wrong", address=address, policy=POLICY, now=at)


def test_an_account_is_locked_after_its_failures_with_a_doubling_delay(app: Application) -> None:
    user = create_user(app, "bf@example.org", "pw", Role.VIEWER)
    for _ in range(3):
        _fail(app, "bf@example.org", "10.0.0.1", T0)
    with pytest.raises(TooManyAttempts) as locked:
        login(app, "bf@example.org", "pw", address="10.0.0.2", policy=POLICY, now=T0 + timedelta(seconds=4))
    assert locked.value.details["retry_after"] == 6
    _fail(app, "bf@example.org", "10.0.0.2", T0 + timedelta(seconds=10))  # lock over: one more try
    with pytest.raises(TooManyAttempts) as longer:
        login(app, "bf@example.org", "pw", address="10.0.0.2", policy=POLICY, now=T0 + timedelta(seconds=11))
    assert longer.value.details["retry_after"] == 19  # 20 s after the fourth failure
    at = T0 + timedelta(seconds=30)
    assert login(app, "BF@example.org", "pw", address="10.0.0.3", policy=POLICY, now=at) == user
    for _ in range(2):  # a success forgets the account's failures
        _fail(app, "bf@example.org", "10.0.0.3", at)
    assert login(app, "bf@example.org", "pw", address="10.0.0.3", policy=POLICY, now=at) == user


def test_unknown_emails_are_locked_like_known_ones(app: Application) -> None:
    for _ in range(3):
        _fail(app, "ghost@example.org", "10.0.0.1", T0)
    with pytest.raises(TooManyAttempts):
        login(app, "ghost@example.org", "x", address="10.0.0.9", policy=POLICY, now=T0)


def test_an_address_is_locked_after_failures_over_several_accounts(app: Application) -> None:
    create_user(app, "sp@example.org", "pw", Role.VIEWER)
    for n in range(6):
        _fail(app, f"u{n}@example.org", "10.0.0.7", T0)
    with pytest.raises(TooManyAttempts):
        login(app, "sp@example.org", "pw", address="10.0.0.7", policy=POLICY, now=T0)
    assert login(app, "sp@example.org", "pw", address="10.0.0.8", policy=POLICY, now=T0) is not None
    later = T0 + timedelta(seconds=3601)  # failures are forgotten after the window
    _fail(app, "u9@example.org", "10.0.0.7", later)
    assert login(app, "sp@example.org", "pw", address="10.0.0.7", policy=POLICY, now=later) is not None


def test_a_disabled_user_cannot_log_in(app: Application) -> None:
    create_user(app, "off@example.org", "pw", Role.VIEWER)
    set_user_disabled(app, "off@example.org", True)
    with pytest.raises(AccountDisabled):
        login(app, "off@example.org", "pw", address="10.0.0.1", policy=POLICY, now=T0)
    with pytest.raises(AuthenticationRequired, match="email or password is wrong"):
        login(app, "off@example.org", "wrong", address="10.0.0.1", policy=POLICY, now=T0)


# -- over HTTP: the icometrix-compatible login and sessions, the native API's bearer tokens --------------

LOGIN = "/authentication-service/api/v1/sessions"
STATUS = "/authentication-service/api/v1/loginstatus"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[TestClient, Application]]:
    settings = api_settings(tmp_path).with_overrides(
        **{"http.login_max_failures": 2, "http.login_max_failures_per_address": 4, "http.login_lockout": 30.0}
    )
    with TestClient(create_app(settings)) as client:
        app = client.app.state.application  # type: ignore[attr-defined]  # a FastAPI app
        create_user(app, "web@example.org", "pw", Role.ADMIN)
        yield client, app


def test_password_login_is_answered_429_with_retry_after_once_throttled(
    http: tuple[TestClient, Application],
) -> None:
    client, _ = http
    for _ in range(2):
        wrong = client.post(LOGIN, json={"email": "web@example.org", "password": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    throttled = client.post(LOGIN, json={"email": "web@example.org", "password": "pw"})
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "too-many-attempts"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 30
    assert "dicomflow_session" not in throttled.cookies


def test_password_login_is_throttled_per_client_address(http: tuple[TestClient, Application]) -> None:
    client, _ = http
    for n in range(4):
        client.post(LOGIN, json={"email": f"guess{n}@example.org", "password": "nope"})
    assert client.post(LOGIN, json={"email": "web@example.org", "password": "pw"}).status_code == 429


def test_password_login_succeeds_and_opens_a_session(http: tuple[TestClient, Application]) -> None:
    client, _ = http
    ok = client.post(LOGIN, json={"email": "WEB@example.org", "password": "pw"})
    assert ok.status_code == 200 and "dicomflow_session" in ok.cookies
    assert client.get(STATUS).json()["email"] == "web@example.org"


def _age_sessions(engine: Engine, seconds: float) -> None:
    with engine.begin() as conn:
        when = datetime.now(UTC) - timedelta(seconds=seconds)
        conn.execute(update(Token).where(Token.kind == "session").values(created_at=when, last_used_at=when))


def test_a_cookie_session_expires_after_the_idle_timeout(http: tuple[TestClient, Application]) -> None:
    client, app = http
    client.post(LOGIN, json={"email": "web@example.org", "password": "pw"})
    _age_sessions(app.engine, 1700)  # idle for less than the default 30 minutes
    assert client.get(STATUS).status_code == 200
    client.cookies.clear()
    client.post(LOGIN, json={"email": "web@example.org", "password": "pw"})
    _age_sessions(app.engine, 1801)
    expired = client.get(STATUS)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "session-expired"


def test_sessions_of_a_disabled_user_stop_working(http: tuple[TestClient, Application]) -> None:
    client, app = http
    client.post(LOGIN, json={"email": "web@example.org", "password": "pw"})
    assert client.get(STATUS).status_code == 200
    set_user_disabled(app, "web@example.org", True)
    time.sleep(2.1)  # the API processes remember a token's user for 2 s
    refused = client.get(STATUS)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "account-disabled"
    again = client.post(LOGIN, json={"email": "web@example.org", "password": "pw"})
    assert again.status_code == 401 and again.json()["error"]["code"] == "account-disabled"


def test_bearer_tokens_expired_revoked_or_of_disabled_users_get_their_own_401(
    http: tuple[TestClient, Application],
) -> None:
    client, app = http
    create_user(app, "gone@example.org", "pw", Role.ADMIN)
    expired = create_token(app, "web@example.org", expires_in=timedelta(days=1), now=T0)
    revoked = create_token(app, "web@example.org")
    revoke_token(app, revoked)
    disabled = create_token(app, "gone@example.org")
    set_user_disabled(app, "gone@example.org", True)
    cases = {expired: TokenExpired, revoked: TokenRevoked, disabled: AccountDisabled}
    for token, error in cases.items():
        with Client("http://testserver", token, http=client) as sdk, pytest.raises(error) as refused:
            sdk.list_uploads()
        assert refused.value.message and isinstance(refused.value, AuthenticationRequired)
        exchanged = client.post("/authentication-service/api/v1/token-sessions", json={"key": token})
        assert exchanged.status_code == 401 and exchanged.json()["error"]["code"] == error.code


def test_sessions_long_ended_are_pruned_but_api_tokens_kept(app: Application) -> None:
    create_user(app, "pr@example.org", "pw", Role.VIEWER)
    create_token(app, "pr@example.org", kind=TokenKind.SESSION, now=T0)
    kept = create_token(app, "pr@example.org", kind=TokenKind.SESSION, now=T0 + timedelta(hours=2))
    create_token(app, "pr@example.org", now=T0)
    assert prune_sessions(app, older_than=timedelta(hours=1), now=T0 + timedelta(hours=2)) == 1
    assert [t.kind for t in list_tokens(app)] == [TokenKind.SESSION, TokenKind.API]
    assert check_token(app, kept, now=T0 + timedelta(hours=2)) is not None


def test_login_failures_past_their_window_are_deleted(app: Application) -> None:
    for n in range(3):
        _fail(app, f"old{n}@example.org", "10.0.0.1", T0)
    _fail(app, "new@example.org", "10.0.0.2", T0 + timedelta(seconds=3601))
    with app.engine.connect() as conn:
        keys = set(conn.execute(select(LoginFailure.key)).scalars())
    assert keys == {"email:new@example.org", "address:10.0.0.2"}
