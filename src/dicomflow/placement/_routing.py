"""Routing strings: fw-meta's ``[fw://]group[/project[/subject[/session[/acquisition]]]]`` and the 2017
reaper's ``subject@group/project``."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache

from dicomflow.placement._sanitize import sanitize_label

DEFAULT_ROUTING_PATTERN = "[fw://]{group}[/{project}[/{subject}[/{session}[/{acquisition}]]]]"
"""fw-meta's recommended routing pattern; the ``fw://`` prefix is optional and case-sensitive."""

_FIELD_ALIASES = {
    **dict.fromkeys(("group", "group._id", "group.id", "grp"), "group"),
    **dict.fromkeys(("project", "project.label", "proj"), "project"),
    **dict.fromkeys(("subject", "subject.label", "sub", "subj"), "subject"),
    **dict.fromkeys(("session", "session.label", "ses", "sess"), "session"),
    **dict.fromkeys(("acquisition", "acquisition.label", "acq"), "acquisition"),
}
_BRACKETS = {"[": "(?:", "]": ")?"}  # fw-meta optional parts
_DEFAULT_CAPTURE = "[^/]+"  # a capture never spans a "/": "a/b/c/d/e/f" matches nothing
_GROUP_ID = re.compile(r"[0-9a-z][0-9a-z.@_-]{0,62}[0-9a-z]")
_LABEL_MAX = {"project": 64, "subject": 64, "session": 64, "acquisition": 128}
_REAPER_STRIP = string.punctuation + string.whitespace


@dataclass(frozen=True)
class Routing:
    """What a routing string says; ``None`` where a part was not given or was dropped as invalid."""

    group: str | None = None
    project: str | None = None
    subject: str | None = None
    session: str | None = None
    acquisition: str | None = None

    @property
    def is_empty(self) -> bool:
        """True when the routing string contributed nothing."""
        return self == Routing()


def parse_routing_string(value: str, pattern: str = DEFAULT_ROUTING_PATTERN) -> Routing:
    """Parse a routing string the way fw-meta does.

    The whole value must match ``pattern`` (it is not stripped: strip DICOM values before calling). Each
    captured part is then validated on its own and silently dropped when invalid, never raised: the group
    id is lower-cased and must be 2-64 characters of ``[0-9a-z.@_-]`` starting and ending with a letter or
    digit; labels must not contain ``/`` and are sanitised (:func:`sanitize_label`) and truncated to 64
    characters (128 for the acquisition).

    Parameters
    ----------
    value
        The routing tag's value, for example ``"fw://neuro/Amnesia/sub-01"``.
    pattern
        fw-meta pattern syntax restricted to literals, ``[optional parts]``, ``{field}`` and
        ``{field:regex}`` captures; fields are ``group``, ``project``, ``subject``, ``session`` and
        ``acquisition`` or their fw-meta aliases (``group._id``, ``project.label``, ``sub``, ``acq``, ...).
        Shell wildcards and ``!r`` raw regexes are not supported.

    Returns
    -------
    Routing
        The valid parts; all ``None`` when the value does not match.

    Raises
    ------
    ValueError
        If ``pattern`` is malformed.
    """
    match = compile_routing_pattern(pattern).fullmatch(value)
    if match is None:
        return Routing()
    found = {name: text for name, text in match.groupdict().items() if text}
    return Routing(
        group=_load_group_id(found.get("group")),
        **{field: _load_label(found.get(field), max_len) for field, max_len in _LABEL_MAX.items()},
    )


@lru_cache(maxsize=64)
def compile_routing_pattern(pattern: str) -> re.Pattern[str]:
    """Translate an fw-meta routing pattern into a regular expression with one named group per field.

    Parameters
    ----------
    pattern
        See :func:`parse_routing_string`.

    Returns
    -------
    re.Pattern
        To be used with ``fullmatch``.

    Raises
    ------
    ValueError
        If brackets or braces are unbalanced, a field is unknown or repeated, or a capture regex is invalid.
    """
    parts: list[str] = []
    pos = 0
    while pos < len(pattern):
        if pattern[pos] == "{":
            end = _closing_brace(pattern, pos)
            parts.append(_capture(pattern[pos + 1 : end], pattern))
            pos = end + 1
        else:
            parts.append(_BRACKETS.get(pattern[pos]) or re.escape(pattern[pos]))
            pos += 1
    return _compile("".join(parts), pattern)


def _compile(regex: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as exc:  # unbalanced [ ], a broken capture regex, a repeated field
        raise ValueError(f"routing pattern {pattern!r} is not valid: {exc}") from exc


def _closing_brace(pattern: str, start: int) -> int:
    depth, pos = 0, start
    while pos < len(pattern):
        char = pattern[pos]
        if char == "\\":
            pos += 1  # an escaped brace inside a capture regex
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    raise ValueError(f"routing pattern {pattern!r} has an unmatched '{{'")


def _capture(body: str, pattern: str) -> str:
    name, _, regex = body.partition(":")
    field = _FIELD_ALIASES.get(name.strip())
    if field is None:
        raise ValueError(f"routing pattern {pattern!r} names an unknown field {name!r}")
    if regex:
        _compile(regex, pattern)  # on its own, so that "a)" cannot close a bracket of the pattern
    return f"(?P<{field}>{regex or _DEFAULT_CAPTURE})"


def _load_group_id(value: str | None) -> str | None:
    if value is None:
        return None
    group_id = value.lower()
    return group_id if _GROUP_ID.fullmatch(group_id) else None


def _load_label(value: str | None, max_len: int) -> str | None:
    if value is None or "/" in value:
        return None
    return sanitize_label(value, max_len) or None


def parse_reaper_key(value: str, study_id: str) -> tuple[str, str, str]:
    """Parse the 2017 reaper routing key ``subject@group/project``.

    Leading and trailing punctuation and whitespace are stripped; the value is split at the last ``@``
    (left: subject code) and the rest at the first ``/`` (group, then project, which keeps any further
    slashes). No validation is applied: this is the legacy format, kept for sites that still type it.

    Parameters
    ----------
    value
        The routing tag's value, for example ``"ex1234@neuro/amnesia"``.
    study_id
        StudyID, for the default subject code ``ex<StudyID>`` used when the key names no subject.

    Returns
    -------
    tuple of str
        ``(subject, group, project)``; group and project may be ``""``.
    """
    subject, _, lab = value.strip(_REAPER_STRIP).rpartition("@")
    group, _, project = lab.partition("/")
    return subject or f"ex{study_id}", group, project
