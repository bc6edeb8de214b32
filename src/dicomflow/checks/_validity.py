"""Validity of one series: required tags present, well-formed for their VR, and matching expected values."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pydicom import config
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import DA, DT, TEXT_VR_DELIMS, TM, VALIDATORS, format_number_as_ds

from dicomflow.checks._facts import SeriesFacts
from dicomflow.checks._findings import Finding, FindingCode

ValueRule: TypeAlias = str | re.Pattern[str] | Callable[[object], bool]
"""An expected value: a string (equal after stripping), a regex (``search``) or a predicate.

Rules see the value as DICOM encodes it for string VRs (``"ORIGINAL\\\\PRIMARY"``, ``"2.5"``) and the
decoded value for binary VRs (``512``, ``(0.5, 0.5)``); a predicate that raises ``ValueError``,
``TypeError``, ``ArithmeticError`` or ``LookupError`` rejects the value.
"""

TagLike: TypeAlias = str | int
Instance: TypeAlias = Mapping[Any, object] | Dataset
"""An instance: a pydicom dataset, or values by keyword (``"PatientID"``) or tag (``0x00100020``)."""

_TEXT_VRS = frozenset(("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM"))
_TEXT_VRS |= frozenset(("UC", "UI", "UR", "UT"))
_UNSPLIT_VRS = frozenset(("LT", "ST", "UR", "UT"))  # a backslash is text here, not a value delimiter
_CALENDAR: dict[str, Callable[..., object]] = {"DA": DA, "DT": DT, "TM": TM}
_DATE_FORMATS = {datetime.date: "%Y%m%d", datetime.datetime: "%Y%m%d%H%M%S.%f", datetime.time: "%H%M%S.%f"}
_PREDICATE_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError)
_SHOWN = 64


@dataclass(frozen=True, slots=True)
class _Attribute:
    """A required attribute: its tag, how messages name it, and its VR (``None``: not checked)."""

    tag: BaseTag
    name: str
    vr: str | None


@dataclass(frozen=True, slots=True)
class _Value:
    """One instance's value of an attribute: its items (text for string VRs) and what rules see."""

    items: tuple[object, ...]
    is_text: bool

    @property
    def is_empty(self) -> bool:
        return not any(str(item).strip(" \x00") if self.is_text else _has(item) for item in self.items)

    @property
    def for_rule(self) -> object:
        if self.is_text:
            return "\\".join(str(item) for item in self.items)
        return self.items[0] if len(self.items) == 1 else self.items


@dataclass(slots=True)
class _Tally:
    """How many instances show one problem with one attribute, and the first offending value."""

    count: int = 0
    example: str = ""

    def add(self, example: object) -> None:
        if not self.count:
            text = str(example)
            self.example = text if len(text) <= _SHOWN else f"{text[:_SHOWN]}\u2026"
        self.count += 1


@dataclass(slots=True)
class _Tallies:
    missing: _Tally = field(default_factory=_Tally)
    malformed: _Tally = field(default_factory=_Tally)
    mismatch: _Tally = field(default_factory=_Tally)


def check_validity(
    series: SeriesFacts,
    instances: Sequence[Instance],
    required_tags: Sequence[TagLike] = (),
    required_values: Mapping[TagLike, ValueRule] | None = None,
) -> list[Finding]:
    """Check that the instances of ``series`` carry the required attributes, well-formed and as expected.

    Parameters
    ----------
    series
        The series the instances belong to (names it in messages).
    instances
        Its instances: pydicom datasets (raw elements are decoded without pydicom's reading validation,
        so a malformed value is reported, not warned about), or mappings by keyword or tag.
    required_tags
        Attributes that must be present and not empty (type 1), by keyword (``"PatientID"``) or tag
        (``0x00100020``).
    required_values
        Expected values by keyword or tag; their attributes are required too. See :data:`ValueRule`.

    Returns
    -------
    list of Finding
        Per attribute, in the order given: ``missing-tag``, ``malformed-value`` (not valid for the
        attribute's VR, by pydicom's validators, dates and times also by the calendar), ``value-mismatch``;
        each once per series with the count of instances concerned and the first offending value.

    Raises
    ------
    ValueError
        If a keyword is not in pydicom's data dictionary.
    """
    rules = {_attribute(tag).tag: rule for tag, rule in (required_values or {}).items()}
    attributes = list(
        {a.tag: a for a in map(_attribute, [*required_tags, *(required_values or {})])}.values()
    )
    tallies = {attribute.tag: _Tallies() for attribute in attributes}
    for instance in instances:
        for attribute in attributes:
            _tally(instance, attribute, rules.get(attribute.tag), tallies[attribute.tag])
    total = len(instances)
    return [
        finding
        for attribute in attributes
        for finding in _findings(series, attribute, rules.get(attribute.tag), tallies[attribute.tag], total)
    ]


def _attribute(tag: TagLike) -> _Attribute:
    number = tag_for_keyword(tag) if isinstance(tag, str) else tag
    if number is None:
        raise ValueError(f"{tag!r} is not a DICOM keyword")
    found = Tag(number)
    name = keyword_for_tag(found) or f"({found.group:04X},{found.element:04X})"
    vr = dictionary_VR(found) if dictionary_has_tag(found) else None
    return _Attribute(found, name, vr if vr in VALIDATORS or vr in _TEXT_VRS or vr == "SQ" else None)


def _tally(instance: Instance, attribute: _Attribute, rule: ValueRule | None, tallies: _Tallies) -> None:
    value = _read(instance, attribute)
    if value is None or value.is_empty:
        tallies.missing.add("")
        return
    bad = _malformed_item(attribute.vr, value)
    if bad is not None:
        tallies.malformed.add(bad)
    elif rule is not None and not _matches(rule, value.for_rule):
        tallies.mismatch.add(_as_text(value.for_rule))


def _read(instance: Instance, attribute: _Attribute) -> _Value | None:
    if not isinstance(instance, Dataset):
        found = instance.get(attribute.name, instance.get(int(attribute.tag)))
        return None if found is None else _value(found, attribute.vr)
    elem = instance.get_item(attribute.tag)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and attribute.vr in _TEXT_VRS:
        if elem.value is None:
            return _Value((), is_text=True)
        text = decode_bytes(elem.value, _encodings(instance), TEXT_VR_DELIMS)
        return _value(text, attribute.vr)
    return _value(instance[attribute.tag].value, attribute.vr)


def _encodings(ds: Dataset) -> list[str]:
    try:
        return list(convert_encodings(ds.get("SpecificCharacterSet")))
    except (LookupError, ValueError):
        return list(convert_encodings(None))


def _value(value: object, vr: str | None) -> _Value | None:
    """Split a value into items; items of string VRs become the text DICOM encodes."""
    if value is None:
        return None
    is_text = vr in _TEXT_VRS if vr else isinstance(value, (str, bytes))
    if isinstance(value, bytes) and is_text:
        value = value.decode("latin-1")
    items: tuple[object, ...]
    if isinstance(value, (list, tuple, MultiValue, DicomSequence)):
        items = tuple(value)
    elif isinstance(value, str) and vr not in _UNSPLIT_VRS:
        items = tuple(value.split("\\"))
    else:
        items = (value,)
    if is_text:
        items = tuple(_text(item, vr) for item in items)
    return _Value(items, is_text)


def _text(item: object, vr: str | None) -> str:
    if isinstance(item, bytes):
        return item.decode("latin-1").rstrip(" \x00")
    if type(item) is float and vr == "DS":
        try:
            return str(format_number_as_ds(item))
        except ValueError:  # nan, inf
            return str(item)
    pattern = _DATE_FORMATS.get(type(item))
    if pattern is not None and isinstance(item, (datetime.date, datetime.time)):
        return item.strftime(pattern)
    return str(item).rstrip(" \x00")


def _has(item: object) -> bool:
    try:
        return item is not None and len(item) > 0  # type: ignore[arg-type]  # anything without len is a value
    except TypeError:
        return item is not None


def _malformed_item(vr: str | None, value: _Value) -> object | None:
    """The first item not valid for ``vr`` (pydicom's validator, and the calendar for DA, DT, TM)."""
    validator: Callable[[str, object], tuple[bool, str]] | None = VALIDATORS.get(vr) if vr else None
    if vr is None or validator is None:
        return None
    for item in value.items:
        if value.is_text and not str(item):
            continue  # an empty value of a multi-valued attribute
        valid, _ = validator(vr, item)
        if not valid or not _is_on_calendar(vr, item):
            return item
    return None


def _is_on_calendar(vr: str | None, item: object) -> bool:
    parse = _CALENDAR.get(vr or "")
    if parse is None or not isinstance(item, str):
        return True
    try:
        parse(item, validation_mode=config.IGNORE)
    except (ValueError, OverflowError):
        return False
    return True


def _as_text(value: object) -> str:
    if isinstance(value, tuple):
        return "\\".join(str(item) for item in value)
    return str(value)


def _matches(rule: ValueRule, value: object) -> bool:
    if isinstance(rule, str):
        return _as_text(value).strip() == rule.strip()
    if isinstance(rule, re.Pattern):
        return rule.search(_as_text(value)) is not None
    try:
        return bool(rule(value))
    except _PREDICATE_ERRORS:
        return False


def _describe(rule: ValueRule) -> str:
    """``does not match 'MR'``, ``does not match /flair/i``, ``fails check is_adult``."""
    if isinstance(rule, str):
        return f"does not match {rule.strip()!r}"
    if isinstance(rule, re.Pattern):
        flags = "".join(
            f for f, bit in (("i", re.I), ("m", re.M), ("s", re.S), ("x", re.X)) if rule.flags & bit
        )
        return f"does not match /{rule.pattern}/{flags}"
    return f"fails check {getattr(rule, '__name__', repr(rule))}"


def _findings(
    series: SeriesFacts, attribute: _Attribute, rule: ValueRule | None, tallies: _Tallies, total: int
) -> list[Finding]:
    of = f"in {{}} of {total} instance{'' if total == 1 else 's'}"
    name = attribute.name
    found = []
    if tallies.missing.count:
        found.append((FindingCode.MISSING_TAG, f"{name} missing {of.format(tallies.missing.count)}"))
    if tallies.malformed.count:
        what = f"{name} {tallies.malformed.example!r} is not a valid {attribute.vr}"
        found.append((FindingCode.MALFORMED_VALUE, f"{what} {of.format(tallies.malformed.count)}"))
    if tallies.mismatch.count and rule is not None:
        what = f"{name} {tallies.mismatch.example!r} {_describe(rule)}"
        found.append((FindingCode.VALUE_MISMATCH, f"{what} {of.format(tallies.mismatch.count)}"))
    uid = series.series_instance_uid or None
    return [Finding(code, f"{series.label()}: {message}", series_instance_uid=uid) for code, message in found]
