"""Password hashes: argon2id at OWASP's cost; scrypt hashes of earlier releases still verify.

Hashes of earlier releases, ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (URL-safe base64), still verify; they and
argon2id hashes of older parameters are replaced at the user's next successful login (:func:`needs_rehash`).
An unknown email is verified against :func:`dummy_hash`, so that it costs as much time as a wrong password.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

_SCRYPT = "scrypt"


@functools.cache
def _hasher() -> PasswordHasher:
    """argon2id at OWASP's recommended cost (Password Storage Cheat Sheet: 19 MiB, 2 iterations, 1 lane),
    about 50 ms a hash here; RFC 9106's 64 MiB x 4 lanes costs 4x that per login for every HTTP process.
    Made on first use: only processes that check passwords import argon2 (about 4 MiB)."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    """Hash a password with argon2id and a fresh random salt into one string (``$argon2id$v=19$…``)."""
    return _hasher().hash(password)


def check_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (argon2id, or scrypt of earlier releases).

    Malformed hashes never match.
    """
    return _verify(password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash should be replaced: not argon2id, or made with other parameters than today's."""
    if not password_hash.startswith("$argon2id$"):
        return True
    from argon2.exceptions import InvalidHashError

    try:
        return _hasher().check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def _verify(password_hash: str, password: str) -> bool:
    if password_hash.startswith(_SCRYPT + "$"):
        return _verify_scrypt(password_hash, password)
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
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


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
