"""Users, password hashes and bearer tokens in the index."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_api import api_settings
from sqlalchemy import Engine, select

from dicomflow.api._deps import Identities
from dicomflow.errors import AlreadyExists, NotFound
from dicomflow.index import Token, User, create_index_engine, migrate
from dicomflow.index._accounts import (
    Role,
    UserInfo,
    authenticate,
    check_password,
    create_token,
    create_user,
    hash_password,
    revoke_token,
    user_for_token,
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_index_engine(api_settings(tmp_path).index_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_password_hash_round_trip() -> None:
    encoded = hash_password("s3cret")
    assert encoded.startswith("scrypt$") and "s3cret" not in encoded
    assert check_password(encoded, "s3cret")
    assert not check_password(encoded, "s3cret ")
    assert hash_password("s3cret") != encoded  # a fresh salt every time


@pytest.mark.parametrize(
    "encoded", ["", "scrypt$1$2", "bcrypt$16384$8$1$c2FsdA$aGFzaA", "scrypt$x$8$1$$", "plain"]
)
def test_malformed_hashes_never_match(encoded: str) -> None:
    assert not check_password(encoded, "anything")


def test_create_user_stores_only_a_hash(engine: Engine) -> None:
    user = create_user(engine, " Alice@Example.org ", "pw-1", "reviewer")
    assert (user.email, user.role) == ("alice@example.org", Role.REVIEWER)
    with engine.connect() as conn:
        stored = conn.execute(select(User.password_hash, User.role)).one()
    assert "pw-1" not in stored.password_hash and stored.role == "reviewer"
    assert authenticate(engine, "ALICE@example.org", "pw-1") == user
    assert authenticate(engine, "alice@example.org", "wrong") is None
    assert authenticate(engine, "bob@example.org", "pw-1") is None


def test_emails_are_unique_ignoring_case(engine: Engine) -> None:
    create_user(engine, "alice@example.org", "pw", Role.ADMIN)
    with pytest.raises(AlreadyExists, match="alice@example.org"):
        create_user(engine, "ALICE@example.org", "other", Role.VIEWER)


BAD_USERS = [
    ("no-at-sign", "pw", "viewer"),
    ("a b@example.org", "pw", "viewer"),
    ("a@x.org", "", "viewer"),
    ("a@x.org", "pw", "root"),
]


@pytest.mark.parametrize(("email", "password", "role"), BAD_USERS)
def test_create_user_rejects_bad_input(engine: Engine, email: str, password: str, role: str) -> None:
    with pytest.raises(ValueError):
        create_user(engine, email, password, role)


def test_token_finds_its_user_and_only_its_hash_is_stored(engine: Engine) -> None:
    user = create_user(engine, "carol@example.org", "pw", Role.UPLOADER)
    token = create_token(engine, "Carol@example.org")
    assert len(token) >= 43
    assert user_for_token(engine, token) == user
    assert user_for_token(engine, token + "x") is None
    with engine.connect() as conn:
        digests = conn.execute(select(Token.token_sha256)).scalars().all()
    assert digests == [hashlib.sha256(token.encode()).hexdigest()]


def test_tokens_are_random_and_all_valid(engine: Engine) -> None:
    create_user(engine, "dave@example.org", "pw", Role.VIEWER)
    first, second = create_token(engine, "dave@example.org"), create_token(engine, "dave@example.org")
    assert first != second
    users = {user_for_token(engine, first), user_for_token(engine, second)}
    assert len(users) == 1 and isinstance(users.pop(), UserInfo)


def test_token_for_an_unknown_user_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound, match="nobody@example.org"):
        create_token(engine, "nobody@example.org")


def test_identities_remember_known_tokens_briefly_and_forget_revoked_ones(engine: Engine) -> None:
    create_user(engine, "ann@example.org", "pw", Role.VIEWER)
    token = create_token(engine, "ann@example.org")
    identities, uncached = Identities(engine), Identities(engine, ttl=0.0)
    assert identities.user("not-a-token") is None
    assert identities.user(token) == uncached.user(token) and identities.user(token) is not None

    revoke_token(engine, token)

    assert uncached.user(token) is None  # the index says so at once
    assert identities.user(token) is not None  # another process's revocation: known for up to ttl
    identities.forget(token)  # a revocation in this process
    assert identities.user(token) is None
