"""Names of received files: the client's path is an untrusted label, never a path we write to."""

from __future__ import annotations

import re
import unicodedata
import uuid
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sanitize(name: str) -> str:
    """ASCII letters, digits, ``.``, ``-`` and ``_`` (NFKD first, the rest to ``_``); never empty or dots."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    clean = _UNSAFE.sub("_", ascii_name).strip(".") or "file"
    return clean[:120]


def stored_name(client_name: str) -> str:
    """``<uuid>_<sanitised basename>``: unique even when two folders hold the same file name."""
    basename = PurePosixPath(client_name.replace("\\", "/")).name
    return f"{uuid.uuid4()}_{sanitize(basename)}"
