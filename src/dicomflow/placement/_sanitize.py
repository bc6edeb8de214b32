"""Flywheel label sanitising (fw-meta): the one place that decides what a container label may hold."""

from __future__ import annotations

import re

# ``*`` is replaced by ``star`` before this runs; TAB, CR, LF, VT and FF are inside \x00-\x1f.
_UNSAFE_RUN = re.compile(r"[/:<>?\\|\x00-\x1f\x7f]+")
_MAX_SANITISED = 255


def sanitize_label(value: str, max_len: int = 64) -> str:
    """Make a value safe as a Flywheel container label, as fw-meta does.

    ``*`` becomes ``star``; every run of ``/ : < > ? \\ |``, TAB, CR, LF, VT, FF or other non-printable
    ASCII becomes one ``_``; the result is cut to 255 characters, trailing dots are removed, and it is
    truncated to ``max_len``. Spaces and non-ASCII letters are kept.

    Parameters
    ----------
    value
        The raw label.
    max_len
        Maximum length: 64 for group, project, subject and session labels, 128 for acquisition labels.

    Returns
    -------
    str
        The sanitised label; ``""`` when nothing is left (for example ``"..."``).
    """
    text = _UNSAFE_RUN.sub("_", value.replace("*", "star"))
    return text[:_MAX_SANITISED].rstrip(".")[:max_len]


def first_label(*candidates: str | None, max_len: int = 64) -> str | None:
    """Return the first candidate that is non-empty once sanitised (fw-meta's fallback chain).

    Parameters
    ----------
    *candidates
        Raw values in order of preference; ``None`` and ``""`` are skipped.
    max_len
        Passed to :func:`sanitize_label`.

    Returns
    -------
    str or None
        The sanitised winner, or ``None`` when every candidate is empty.
    """
    for candidate in candidates:
        label = sanitize_label(candidate, max_len) if candidate else ""
        if label:
            return label
    return None
