"""UID syntax (PS3.5 section 9.1): checked before a UID names anything on disk or in the index."""

from __future__ import annotations

import re

from dicomflow.errors import InvalidInstance

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` is a syntactically valid DICOM UID (digits and dots, no leading zeros, <= 64)."""
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


def check_uid(value: str, what: str) -> str:
    """Return ``value`` if it is a valid UID, else raise :class:`InvalidInstance` naming ``what``."""
    if not value:
        raise InvalidInstance(f"{what} is missing")
    if not is_valid_uid(value):
        raise InvalidInstance(f"{what} {value!r} is not a valid UID")
    return value
