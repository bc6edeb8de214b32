"""Pure placement rules: where an instance goes and what its containers are called.

Re-implements, without I/O, the Flywheel DICOM connector's routing (fw-meta routing strings, the 2017
reaper's ``subject@group/project``), scitran core's server-side placement (session UID first, fuzzy group
match, ``unknown`` group, fallback project), fw-file's default labels and timestamps, and Kaapana's
``kp-`` AE-title routing. Rules and their sources: ``specs/flywheel_kaapana.md`` sections 1.5-1.7, 2.2, 3.
"""

from __future__ import annotations

from dicomflow.placement._containers import (
    SCREEN_SAVE_IMAGE_TYPES,
    UNKNOWN_SUBJECT,
    acquisition_label,
    acquisition_uid,
    session_label,
    subject_label,
)
from dicomflow.placement._kaapana import (
    PROJECT_AE_PREFIX,
    called_ae_for_project,
    dataset_from_calling_ae,
    project_from_called_ae,
)
from dicomflow.placement._place import (
    Destination,
    Placement,
    PlacementConfig,
    Rule,
    place,
    resolve_destination,
)
from dicomflow.placement._routing import (
    DEFAULT_ROUTING_PATTERN,
    Routing,
    compile_routing_pattern,
    parse_reaper_key,
    parse_routing_string,
)
from dicomflow.placement._sanitize import first_label, sanitize_label
from dicomflow.placement._subject import age_in_seconds, format_operators, normalize_sex, split_patient_name
from dicomflow.placement._timestamps import (
    acquisition_timestamp,
    parse_dicom_datetime,
    session_timestamp,
    uid_timestamp,
    zone_info,
)

__all__ = [
    "DEFAULT_ROUTING_PATTERN",
    "PROJECT_AE_PREFIX",
    "SCREEN_SAVE_IMAGE_TYPES",
    "UNKNOWN_SUBJECT",
    "Destination",
    "Placement",
    "PlacementConfig",
    "Routing",
    "Rule",
    "acquisition_label",
    "acquisition_timestamp",
    "acquisition_uid",
    "age_in_seconds",
    "called_ae_for_project",
    "compile_routing_pattern",
    "dataset_from_calling_ae",
    "first_label",
    "format_operators",
    "normalize_sex",
    "parse_dicom_datetime",
    "parse_reaper_key",
    "parse_routing_string",
    "place",
    "project_from_called_ae",
    "resolve_destination",
    "sanitize_label",
    "session_label",
    "session_timestamp",
    "split_patient_name",
    "subject_label",
    "uid_timestamp",
    "zone_info",
]
