"""Subject fields: names, sex and age (2017 reaper = fw-file rules)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

_SEX = {"m": "male", "f": "female", "o": "other"}
_SEXES = frozenset(("male", "female", "other", "unknown"))
_AGE = re.compile(r"(?P<count>\d+)(?P<unit>[DWMY]?)")
_DATE = re.compile(r"\d{8}")
_DAY = 86_400
_AGE_UNIT_SECONDS = {
    "D": _DAY,
    "W": 7 * _DAY,
    "M": 30 * _DAY,
    "Y": 31_557_600,
    "": 31_557_600,
}  # Y = 365.25 d


def split_patient_name(value: str) -> tuple[str | None, str | None]:
    """Split PatientName into first and last name as the Flywheel connector does.

    With a ``^`` the value splits at the first caret into ``last^first`` (the first name keeps any further
    carets); otherwise at the last space into ``first last``. Both parts are stripped and title-cased
    (``o'brien`` -> ``O'Brien``).

    Parameters
    ----------
    value
        The PatientName value, for example ``"Doe^John"``.

    Returns
    -------
    tuple
        ``(firstname, lastname)``, each ``None`` when empty.
    """
    if "^" in value:
        last, _, first = value.partition("^")
    else:
        first, _, last = value.rpartition(" ")
    return first.strip().title() or None, last.strip().title() or None


def format_operators(names: Sequence[str]) -> str:
    """Join OperatorsName values as Flywheel's ``session.operator``: ``"Jane Doe, Rick Roe"``.

    Parameters
    ----------
    names
        The person names, each split by :func:`split_patient_name`.

    Returns
    -------
    str
        ``"First Last"`` per name, comma-separated; names that are empty are left out.
    """
    people = (" ".join(part for part in split_patient_name(name) if part) for name in names)
    return ", ".join(person for person in people if person)


def normalize_sex(value: str) -> str | None:
    """Map PatientSex to Flywheel's ``subject.sex``.

    Parameters
    ----------
    value
        PatientSex, for example ``"M"``.

    Returns
    -------
    str or None
        ``male``, ``female``, ``other`` or ``unknown``; ``None`` for anything else (dropped, as fw-meta does).
    """
    sex = value.strip().lower()
    sex = _SEX.get(sex, sex)
    return sex if sex in _SEXES else None


def age_in_seconds(patient_age: str, birth_date: str = "", at: datetime | None = None) -> int | None:
    """Return the subject's age in seconds, as fw-file computes ``session.age``.

    Parameters
    ----------
    patient_age
        PatientAge ``nnn[DWMY]`` (no unit means years; Y = 365.25 days, M = 30 days, W = 7 days).
    birth_date
        PatientBirthDate ``YYYYMMDD``, used when PatientAge is empty or malformed.
    at
        The acquisition timestamp the birth date is compared with (midnight of the birth date, in the
        zone of ``at``).

    Returns
    -------
    int or None
        Seconds, or ``None`` when neither source is usable.
    """
    match = _AGE.fullmatch(patient_age.strip().upper())
    if match:
        return int(match["count"]) * _AGE_UNIT_SECONDS[match["unit"]]
    if at is None or not _DATE.fullmatch(birth_date.strip()):
        return None
    try:
        born = datetime.strptime(birth_date.strip(), "%Y%m%d").replace(tzinfo=at.tzinfo)
    except ValueError:  # 20240230
        return None
    return int((at - born).total_seconds())
