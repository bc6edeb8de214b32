"""Local files: what a directory upload sends, and safe names for what a download writes."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 200


def files_to_upload(root: Path) -> list[Path]:
    """Regular files under ``root`` (or ``root`` itself), sorted; hidden files and folders are skipped.

    Symbolic links are not followed, so an upload never leaves the tree it names.

    Raises
    ------
    ValueError
        If ``root`` is neither a file nor a folder.
    """
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is neither a file nor a folder")
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not path.is_symlink():
            found.append(path)
    return sorted(found)


def label(path: Path, root: Path) -> str:
    """The name a file is sent under: its path below ``root`` with ``/`` (the server keeps it as a label)."""
    try:
        return path.relative_to(root).as_posix() if path != root else path.name
    except ValueError:
        return path.name


def safe_name(name: str, fallback: str = "file") -> str:
    """A file name that is only a name: last path part, letters, digits, ``.``, ``_``, ``-``, no leading dot.

    ``"../../etc/passwd"`` becomes ``"passwd"``, ``"..\\x y.pdf"`` becomes ``"x_y.pdf"``, ``".."`` becomes
    ``fallback``.
    """
    last = PurePosixPath(name.replace("\\", "/")).name
    cleaned = _UNSAFE.sub("_", last).lstrip(".")[-_MAX_NAME:]
    return cleaned if cleaned.strip("_") else fallback
