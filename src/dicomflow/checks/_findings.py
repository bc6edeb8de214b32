"""Findings: what a check found, named by a stable code, with a sentence that names series and values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

MINUS = "\u2212"
"""The typographic minus sign negative positions are written with (``z=−12.5 mm``)."""


class Severity(StrEnum):
    """How bad a finding is: an error sends the study to Failed, a warning is only recorded."""

    ERROR = "error"
    WARNING = "warning"


class FindingCode(StrEnum):
    """The stable kebab-case ids of findings (a :class:`Finding`'s ``code`` is one of these)."""

    COUNT_MISMATCH = "count-mismatch"
    DUPLICATE_POSITION = "duplicate-position"
    INSTANCE_NUMBER_GAP = "instance-number-gap"
    MALFORMED_VALUE = "malformed-value"
    MISSING_SLICE = "missing-slice"
    MISSING_TAG = "missing-tag"
    MIXED_ORIENTATION = "mixed-orientation"
    REQUIRED_SERIES_MISSING = "required-series-missing"
    UNEVEN_REPETITION = "uneven-repetition"
    UNEVEN_SPACING = "uneven-spacing"
    VALUE_MISMATCH = "value-mismatch"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem of a study, stored with it; an error finding sends the study to Failed.

    ``code`` is a stable kebab-case id (a :class:`FindingCode`), ``message`` a sentence naming the series
    and the values, ``series_instance_uid`` the series concerned (``None`` for study-level findings).
    """

    code: str
    message: str
    severity: Severity = Severity.ERROR
    series_instance_uid: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The finding as JSON-ready plain strings.

        Returns
        -------
        dict
            ``code``, ``message``, ``severity`` and ``series_instance_uid``.
        """
        return {
            "code": str(self.code),
            "message": self.message,
            "severity": str(self.severity),
            "series_instance_uid": self.series_instance_uid,
        }


def missing_series(input_name: str, wanted: str) -> Finding:
    """The finding for a report type's required series that no series of the study matched.

    Parameters
    ----------
    input_name
        The report type's name for the input, for example ``"FLAIR"``.
    wanted
        The caller's description of the match rule, for example ``"SeriesDescription ~ /flair/i"``.

    Returns
    -------
    Finding
        An error ``required-series-missing``: ``required series 'FLAIR' missing: no series matched
        SeriesDescription ~ /flair/i``.
    """
    return Finding(
        FindingCode.REQUIRED_SERIES_MISSING,
        f"required series {input_name!r} missing: no series matched {wanted}",
    )


def position(value: float) -> str:
    """A position in mm with one decimal and a typographic minus (``−12.5``; never ``−0.0``)."""
    rounded = round(value, 1)
    return f"{abs(rounded):.1f}" if rounded == 0 else f"{rounded:.1f}".replace("-", MINUS)


def length(value: float) -> str:
    """A distance in mm with up to three decimals (``5``, ``0.625``, ``2.5``)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text.replace("-", MINUS)


def number_runs(runs: Sequence[tuple[int, int]]) -> str:
    """Runs of integers as ``1–16, 18–40`` (a run of one number as just that number)."""
    return ", ".join(str(first) if first == last else f"{first}\u2013{last}" for first, last in runs)
