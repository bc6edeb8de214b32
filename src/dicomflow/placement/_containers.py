"""Subject, session and acquisition identity: UIDs and labels (reaper and fw-file defaults)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from dicomflow.placement._sanitize import first_label, sanitize_label
from dicomflow.placement._timestamps import acquisition_timestamp, session_timestamp

if TYPE_CHECKING:
    from dicomflow.dicom import InstanceHeader

UNKNOWN_SUBJECT = "Unknown"
"""Subject label when PatientID is empty."""

SCREEN_SAVE_IMAGE_TYPES = (
    ("DERIVED", "SECONDARY", "SCREEN SAVE"),
    ("DERIVED", "SECONDARY", "VXTL STATE"),  # GE
)
"""ImageType values (exact, all three in order) whose acquisition UID is the series UID minus one."""

_LABEL_TIME = "%Y-%m-%dT%H-%M-%S"
_ACQUISITION_LABEL_MAX = 128


def acquisition_uid(header: InstanceHeader) -> str:
    """Return the Flywheel acquisition UID of an instance.

    Screen saves (ImageType exactly ``DERIVED\\SECONDARY\\SCREEN SAVE`` or GE's
    ``DERIVED\\SECONDARY\\VXTL STATE``) get the SeriesInstanceUID with its last component decreased by one,
    so that they land in the acquisition of the series they were taken from. Unlike the reaper, a last
    component of ``0`` is left alone rather than turned into the invalid ``-1``.

    When AcquisitionNumber is present and greater than 1 and the Manufacturer does not upper-case to
    exactly ``SIEMENS``, ``_<AcquisitionNumber>`` is appended, so a series holding several acquisitions is
    split. A missing Manufacturer counts as non-Siemens (it crashed the 2017 reaper).

    Parameters
    ----------
    header
        The instance's header.

    Returns
    -------
    str
        For example ``"1.2.3.4"``, ``"1.2.3.3"`` (screen save) or ``"1.2.3.4_2"``.
    """
    uid = header.series_instance_uid
    if header.image_type in SCREEN_SAVE_IMAGE_TYPES:
        uid = _decrement_last_component(uid)
    number = header.acquisition_number
    if number is not None and number > 1 and header.manufacturer.upper() != "SIEMENS":
        uid = f"{uid}_{number}"
    return uid


def _decrement_last_component(uid: str) -> str:
    root, dot, last = uid.rpartition(".")
    if not dot or not last.isdigit() or int(last) == 0:
        return uid
    return f"{root}.{int(last) - 1}"


def subject_label(header: InstanceHeader) -> str:
    """Return the default subject label: PatientID, sanitised and cut to 64 characters.

    Parameters
    ----------
    header
        The instance's header.

    Returns
    -------
    str
        The label, or ``"Unknown"`` when PatientID is empty (or nothing survives sanitising), so that a
        subject is never unlabelled. This gathers every PatientID-less instance of a project in one
        subject; the 2017 reaper used ``ex<StudyID>`` instead (see :func:`parse_reaper_key`).
    """
    return sanitize_label(header.patient_id) or UNKNOWN_SUBJECT


def session_label(header: InstanceHeader, tz: str) -> str:
    """Return the default session label (fw-file).

    Parameters
    ----------
    header
        The instance's header.
    tz
        IANA zone name for naive timestamps.

    Returns
    -------
    str
        StudyDescription, else the session timestamp as ``YYYY-MM-DDTHH-MM-SS`` (wall-clock time in the
        timestamp's own zone), else StudyInstanceUID; sanitised, at most 64 characters.
    """
    timestamp = session_timestamp(header, tz)
    label = first_label(header.study_description, _format(timestamp), header.study_instance_uid)
    return label or header.study_instance_uid


def acquisition_label(header: InstanceHeader, tz: str) -> str:
    """Return the default acquisition label (fw-file).

    Parameters
    ----------
    header
        The instance's header.
    tz
        IANA zone name for naive timestamps.

    Returns
    -------
    str
        SeriesDescription, else ProtocolName, else the acquisition timestamp as ``YYYY-MM-DDTHH-MM-SS``,
        else SeriesInstanceUID; prefixed with ``"<SeriesNumber> - "`` when SeriesNumber is present and not
        zero; sanitised, at most 128 characters.
    """
    candidates = (
        header.series_description,
        header.protocol_name,
        _format(acquisition_timestamp(header, tz)),
        header.series_instance_uid,
    )
    base = next((text for text in candidates if sanitize_label(text, _ACQUISITION_LABEL_MAX)), "")
    if header.series_number:
        base = f"{header.series_number} - {base}"
    return sanitize_label(base, _ACQUISITION_LABEL_MAX) or header.series_instance_uid


def _format(timestamp: datetime | None) -> str:
    return timestamp.strftime(_LABEL_TIME) if timestamp else ""
