"""Session and acquisition timestamps from DICOM dates, times and UIDs (fw-file rules), as aware datetimes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from dicomflow.dicom import InstanceHeader

_DATETIME = re.compile(
    r"(?P<date>\d{8})(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?P<offset>[+-]\d{4})?"
)
_OFFSET = re.compile(r"(?P<sign>[+-]?)(?P<hours>\d{2})(?P<minutes>\d{2})")
_UID_TIMESTAMP = re.compile(r"(?:19|20)\d{12}")
_NOON = "120000"
_UUID_ROOT = "2.25."


def parse_dicom_datetime(date: str, time: str, tz: str, offset: str = "") -> datetime | None:
    """Parse a DICOM date and time (or one DT value) into an aware datetime, as fw-file does.

    ``date + time`` must read ``YYYYMMDD[HH[MM[SS[.ffffff]]]][+-HHMM]``: a date without time is taken at
    12:00 (noon), missing minutes or seconds are zero. The zone is, in order: the value's own ``+-HHMM``
    suffix, then ``offset`` (TimezoneOffsetFromUTC; the sign may be omitted), then ``tz``.

    Parameters
    ----------
    date
        DA value, or a whole DT value with ``time`` empty.
    time
        TM value, may be ``""``.
    tz
        IANA zone name for naive values, for example ``"UTC"`` or ``"Europe/Berlin"``.
    offset
        TimezoneOffsetFromUTC, for example ``"-0500"``; ignored when malformed.

    Returns
    -------
    datetime or None
        ``None`` when the date is missing or any part is malformed or out of range.

    Raises
    ------
    ValueError
        If ``tz`` is not a known time zone.
    """
    match = _DATETIME.fullmatch(date.strip() + time.strip())
    if match is None:
        return None
    zone = _offset_zone(match["offset"] or "") or _offset_zone(offset) or zone_info(tz)
    naive = _naive(match["date"], match["time"] or _NOON)
    return naive.replace(tzinfo=zone) if naive else None


def uid_timestamp(uid: str, tz: str) -> datetime | None:
    """Return the timestamp many vendors embed in a UID.

    The first UID component starting with ``19`` or ``20`` followed by at least 12 more digits is read as
    ``YYYYMMDDHHMMSS`` (its first 14 digits), in zone ``tz``.

    Parameters
    ----------
    uid
        A Study or Series Instance UID, for example ``"1.2.840.113619.2.55.3.20240315101530.123"``.
    tz
        IANA zone name.

    Returns
    -------
    datetime or None
        ``None`` when no component qualifies or the first one is not a valid date and time. UUID-derived
        UIDs (root ``2.25.``) never carry a timestamp: fw-file would read one out of roughly every 20 000
        of them, since their random decimal digits can look like ``20010315...``.
    """
    if uid.startswith(_UUID_ROOT):
        return None
    for component in uid.split("."):
        if _UID_TIMESTAMP.match(component):
            naive = _naive(component[:8], component[8:14])
            return naive.replace(tzinfo=zone_info(tz)) if naive else None
    return None


def session_timestamp(header: InstanceHeader, tz: str) -> datetime | None:
    """Return the session timestamp: the first available of, in fw-file's order, study date/time, the
    StudyInstanceUID timestamp, series date/time, the SeriesInstanceUID timestamp, AcquisitionDateTime,
    acquisition date/time.

    Parameters
    ----------
    header
        The instance's header; TimezoneOffsetFromUTC applies to every date/time pair.
    tz
        IANA zone name for naive values.

    Returns
    -------
    datetime or None
        Aware; ``None`` when no source is usable.
    """
    return _first(
        _study(header, tz),
        uid_timestamp(header.study_instance_uid, tz),
        _series(header, tz),
        uid_timestamp(header.series_instance_uid, tz),
        *_acquisition(header, tz),
    )


def acquisition_timestamp(header: InstanceHeader, tz: str) -> datetime | None:
    """Return the acquisition timestamp: the first available of, in fw-file's order, AcquisitionDateTime,
    acquisition date/time, series date/time, the SeriesInstanceUID timestamp, study date/time, the
    StudyInstanceUID timestamp.

    For Siemens data (Manufacturer upper-cased starts with ``SIEMENS``) series date/time come first, as
    the Flywheel "Timestamps" documentation says.

    Parameters
    ----------
    header
        The instance's header; TimezoneOffsetFromUTC applies to every date/time pair.
    tz
        IANA zone name for naive values.

    Returns
    -------
    datetime or None
        Aware; ``None`` when no source is usable.
    """
    series = _series(header, tz)
    siemens_first = series if header.manufacturer.upper().startswith("SIEMENS") else None
    return _first(
        siemens_first,
        *_acquisition(header, tz),
        series,
        uid_timestamp(header.series_instance_uid, tz),
        _study(header, tz),
        uid_timestamp(header.study_instance_uid, tz),
    )


def zone_info(tz: str) -> tzinfo:
    """Return the zone named ``tz``.

    Parameters
    ----------
    tz
        IANA zone name, for example ``"Europe/Berlin"``.

    Returns
    -------
    tzinfo

    Raises
    ------
    ValueError
        If the zone is unknown.
    """
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"time zone {tz!r} is unknown") from exc


def _study(header: InstanceHeader, tz: str) -> datetime | None:
    return parse_dicom_datetime(header.study_date, header.study_time, tz, header.timezone_offset_from_utc)


def _series(header: InstanceHeader, tz: str) -> datetime | None:
    return parse_dicom_datetime(header.series_date, header.series_time, tz, header.timezone_offset_from_utc)


def _acquisition(header: InstanceHeader, tz: str) -> tuple[datetime | None, datetime | None]:
    offset = header.timezone_offset_from_utc
    return (
        parse_dicom_datetime(header.acquisition_date_time, "", tz, offset),
        parse_dicom_datetime(header.acquisition_date, header.acquisition_time, tz, offset),
    )


def _first(*candidates: datetime | None) -> datetime | None:
    return next((candidate for candidate in candidates if candidate is not None), None)


def _naive(date: str, time: str) -> datetime | None:
    seconds, _, fraction = time.partition(".")
    try:
        return datetime(
            int(date[:4]),
            int(date[4:6]),
            int(date[6:8]),
            int(seconds[:2]),
            int(seconds[2:4] or 0),
            int(seconds[4:6] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError:  # month 13, 24 o'clock, ...
        return None


def _offset_zone(offset: str) -> tzinfo | None:
    match = _OFFSET.fullmatch(offset.strip())
    if match is None or int(match["hours"]) > 14 or int(match["minutes"]) > 59:
        return None
    delta = timedelta(hours=int(match["hours"]), minutes=int(match["minutes"]))
    return timezone(-delta if match["sign"] == "-" else delta)
