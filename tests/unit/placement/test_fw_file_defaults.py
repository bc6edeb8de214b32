"""Spec 3.5: fw-file default metadata (TZ=UTC) -- timestamps, labels, age."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dicomflow.dicom import InstanceHeader
from dicomflow.placement import (
    acquisition_label,
    acquisition_timestamp,
    age_in_seconds,
    parse_dicom_datetime,
    session_label,
    session_timestamp,
    uid_timestamp,
)

MakeHeader = Callable[..., InstanceHeader]
STUDY = {"study_date": "20240315", "study_time": "101530"}


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "session", "acquisition"),
    [
        pytest.param(STUDY, utc(2024, 3, 15, 10, 15, 30), utc(2024, 3, 15, 10, 15, 30), id="study-date-time"),
        pytest.param(
            {"study_date": "20240315"}, utc(2024, 3, 15, 12), utc(2024, 3, 15, 12), id="date-only-noon"
        ),
        pytest.param(
            {"study_date": "20240315", "study_time": "1015"},
            utc(2024, 3, 15, 10, 15),
            utc(2024, 3, 15, 10, 15),
            id="hhmm",
        ),
        pytest.param(
            {"study_date": "20240315", "study_time": "101530.123456", "timezone_offset_from_utc": "-0500"},
            utc(2024, 3, 15, 15, 15, 30, 123456),
            utc(2024, 3, 15, 15, 15, 30, 123456),
            id="fraction-and-timezone-offset",
        ),
        pytest.param(
            {"study_instance_uid": "1.2.840.113619.2.55.3.20240315101530.123"},
            utc(2024, 3, 15, 10, 15, 30),
            utc(2024, 3, 15, 10, 15, 30),
            id="study-uid-timestamp",
        ),
        pytest.param(
            {
                "series_date": "20240315",
                "series_time": "080000",
                "acquisition_date": "20240315",
                "acquisition_time": "081500",
            },
            utc(2024, 3, 15, 8),
            utc(2024, 3, 15, 8, 15),
            id="series-beats-acquisition-for-session",
        ),
        pytest.param(
            {"acquisition_date_time": "20240316081500.5+0100"},
            utc(2024, 3, 16, 7, 15, 0, 500000),
            utc(2024, 3, 16, 7, 15, 0, 500000),
            id="acquisition-datetime-with-offset",
        ),
        pytest.param({}, None, None, id="nothing"),
    ],
)
def test_timestamps(
    make_header: MakeHeader, fields: dict[str, Any], session: datetime | None, acquisition: datetime | None
) -> None:
    header = make_header(**fields)
    assert session_timestamp(header, "UTC") == session
    assert acquisition_timestamp(header, "UTC") == acquisition


@pytest.mark.parametrize(
    ("manufacturer", "expected"),
    [
        pytest.param("SIEMENS", utc(2024, 3, 15, 8), id="siemens-series-first"),
        pytest.param("Siemens Healthineers", utc(2024, 3, 15, 8), id="siemens-healthineers-series-first"),
        pytest.param("GE MEDICAL SYSTEMS", utc(2024, 3, 15, 8, 15), id="others-acquisition-first"),
        pytest.param("", utc(2024, 3, 15, 8, 15), id="missing-manufacturer"),
    ],
)
def test_siemens_acquisition_timestamp(
    make_header: MakeHeader, manufacturer: str, expected: datetime
) -> None:
    header = make_header(
        manufacturer=manufacturer,
        series_date="20240315",
        series_time="080000",
        acquisition_date="20240315",
        acquisition_time="081500",
    )
    assert acquisition_timestamp(header, "UTC") == expected


@pytest.mark.parametrize(
    ("date", "time", "tz", "offset", "expected"),
    [
        pytest.param("20240315", "10", "UTC", "", utc(2024, 3, 15, 10), id="hour-only"),
        pytest.param(
            "20240315", "101530.5", "UTC", "0100", utc(2024, 3, 15, 9, 15, 30, 500000), id="unsigned-off"
        ),
        pytest.param(
            "20240315101530+0200", "", "UTC", "-0500", utc(2024, 3, 15, 8, 15, 30), id="suffix-wins"
        ),
        pytest.param(
            "20240315", "101530", "UTC", "junk", utc(2024, 3, 15, 10, 15, 30), id="bad-offset-ignored"
        ),
        pytest.param(
            "20240701",
            "120000",
            "Europe/Berlin",
            "",
            utc(2024, 7, 1, 10),
            id="naive-in-configured-zone-summer",
        ),
        pytest.param("", "101530", "UTC", "", None, id="time-without-date"),
        pytest.param("20241315", "", "UTC", "", None, id="month-13"),
        pytest.param("20240315", "250000", "UTC", "", None, id="hour-25"),
        pytest.param("2024-03-15", "", "UTC", "", None, id="not-dicom-date"),
        pytest.param("2024", "", "UTC", "", None, id="partial-date"),
    ],
)
def test_parse_dicom_datetime(date: str, time: str, tz: str, offset: str, expected: datetime | None) -> None:
    assert parse_dicom_datetime(date, time, tz, offset) == expected


def test_parse_dicom_datetime_is_aware_in_the_given_zone() -> None:
    parsed = parse_dicom_datetime("20240315", "101530", "Europe/Berlin")
    assert parsed is not None and parsed.tzinfo == ZoneInfo("Europe/Berlin")
    offset = parse_dicom_datetime("20240315", "101530", "UTC", "-0500")
    assert offset is not None and offset.tzinfo == timezone(-timedelta(hours=5))


def test_unknown_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        parse_dicom_datetime("20240315", "", "Mars/Olympus")


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        pytest.param("1.2.840.113619.2.55.3.20240315101530.123", utc(2024, 3, 15, 10, 15, 30), id="ge-style"),
        pytest.param(
            "1.3.12.2.1107.5.2.32.35162.2012021516094547811", utc(2012, 2, 15, 16, 9, 45), id="siemens-style"
        ),
        pytest.param("1.2.3.4", None, id="no-timestamp"),
        pytest.param("1.2.3.2024031510153", None, id="only-11-digits-after-20"),
        pytest.param("1.2.3.20241315101530.2024031510153000", None, id="first-candidate-invalid"),
        # Better than fw-file: UUID-derived UIDs hold random digits, not a time.
        pytest.param("2.25.200103151015309999999999", None, id="uuid-root-ignored"),
    ],
)
def test_uid_timestamp(uid: str, expected: datetime | None) -> None:
    assert uid_timestamp(uid, "UTC") == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({**STUDY, "study_description": "Brain"}, "Brain", id="study-description"),
        pytest.param(STUDY, "2024-03-15T10-15-30", id="timestamp"),
        pytest.param({}, "1.2.826.0.1.3680043.8.498.1", id="study-uid"),
        pytest.param({"study_description": "Head/Neck*"}, "Head_Neckstar", id="sanitised"),
        pytest.param(
            {**STUDY, "study_description": "..."}, "2024-03-15T10-15-30", id="empty-after-sanitising"
        ),
        pytest.param(
            {**STUDY, "timezone_offset_from_utc": "-0500"}, "2024-03-15T10-15-30", id="wall-clock-of-own-zone"
        ),
    ],
)
def test_session_label(make_header: MakeHeader, fields: dict[str, Any], expected: str) -> None:
    assert session_label(make_header(**fields), "UTC") == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"series_description": "T1", "series_number": 3}, "3 - T1", id="series-number-prefix"),
        pytest.param({"protocol_name": "P", "series_number": 0}, "P", id="protocol-name-series-number-0"),
        pytest.param({"series_instance_uid": "1.2.3", "series_number": 5}, "5 - 1.2.3", id="only-uid"),
        pytest.param(
            {"series_date": "20240315", "series_time": "080000"},
            "2024-03-15T08-00-00",
            id="acquisition-timestamp",
        ),
        pytest.param(
            {"series_description": "T1", "protocol_name": "P"}, "T1", id="description-beats-protocol"
        ),
        pytest.param({"series_description": "a" * 200}, "a" * 128, id="cut-to-128"),
        pytest.param({"series_description": "T2*", "series_number": -1}, "-1 - T2star", id="negative-number"),
    ],
)
def test_acquisition_label(make_header: MakeHeader, fields: dict[str, Any], expected: str) -> None:
    assert acquisition_label(make_header(**fields), "UTC") == expected


@pytest.mark.parametrize(
    ("age", "birth_date", "at", "expected"),
    [
        pytest.param("034Y", "", None, 1_072_958_400, id="034Y"),
        pytest.param("34", "", None, 1_072_958_400, id="34-no-unit-years"),
        pytest.param("006M", "", None, 15_552_000, id="006M"),
        pytest.param("010D", "", None, 864_000, id="010D"),
        pytest.param("002W", "", None, 1_209_600, id="002W"),
        pytest.param("", "19900101", utc(2020, 1, 1), 946_684_800, id="birth-date-vs-acquisition"),
        pytest.param("abc", "19900101", utc(2020, 1, 1), 946_684_800, id="bad-age-uses-birth-date"),
        pytest.param("", "19900101", None, None, id="birth-date-without-timestamp"),
        pytest.param("", "19900231", utc(2020, 1, 1), None, id="invalid-birth-date"),
        pytest.param("", "", utc(2020, 1, 1), None, id="nothing"),
    ],
)
def test_age_in_seconds(age: str, birth_date: str, at: datetime | None, expected: int | None) -> None:
    assert age_in_seconds(age, birth_date, at) == expected
