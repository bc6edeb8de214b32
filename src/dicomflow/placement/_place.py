"""Where an instance goes: group and project (scitran core's placement), subject, session, acquisition."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from dicomflow.errors import StudyInAnotherProject
from dicomflow.placement._containers import (
    acquisition_label,
    acquisition_uid,
    session_label,
    subject_label,
)
from dicomflow.placement._kaapana import PROJECT_AE_PREFIX
from dicomflow.placement._routing import (
    DEFAULT_ROUTING_PATTERN,
    Routing,
    compile_routing_pattern,
    parse_routing_string,
)
from dicomflow.placement._sanitize import sanitize_label
from dicomflow.placement._subject import normalize_sex, split_patient_name
from dicomflow.placement._timestamps import acquisition_timestamp, session_timestamp, zone_info

if TYPE_CHECKING:
    from dicomflow.dicom import InstanceHeader

_FUZZY_CUTOFF = 0.8


class Rule(StrEnum):
    """Which rule decided the group and project of a placement."""

    EXISTING_SESSION = "existing-session"
    """A session with this StudyInstanceUID already exists in the named project (or, when nothing names a
    project, anywhere): the instance stays there."""
    CALLED_AE = "called-ae"
    """The called AE title ``kp-<project>`` names an existing project."""
    ROUTING_STRING = "routing-string"
    """The routing string names an existing group (and a project in it)."""
    UNKNOWN_GROUP = "unknown-group"
    """The routing string names a group that does not exist: fallback group, project ``<group>_<project>``."""
    FALLBACK = "fallback"
    """Nothing usable: fallback group and project."""


@dataclass(frozen=True)
class PlacementConfig:
    """How instances are placed.

    Attributes
    ----------
    routing_tag
        DICOM keyword holding the routing string (PatientComments and StudyComments are common choices).
    routing_pattern
        fw-meta pattern the routing string is parsed with (see :func:`parse_routing_string`).
    timezone
        IANA zone of naive DICOM dates and times.
    project_ae_prefix
        Prefix of called AE titles naming a project (Kaapana's ``kp-``).
    fallback_group
        Group of instances whose group is unknown; always treated as existing.
    fallback_project
        Project of instances whose routing names no project.
    cross_project_study
        ``"separate"``: data naming a project opens a session there even when its study has a session in
        another project; ``"reject"``: such data is refused.
    """

    routing_tag: str = "PatientID"
    routing_pattern: str = DEFAULT_ROUTING_PATTERN
    timezone: str = "UTC"
    project_ae_prefix: str = PROJECT_AE_PREFIX
    fallback_group: str = "unknown"
    fallback_project: str = "Unsorted"
    cross_project_study: str = "separate"

    def __post_init__(self) -> None:
        """Fail at construction, not at the first instance, when a value is unusable."""
        zone_info(self.timezone)
        compile_routing_pattern(self.routing_pattern)
        for name in ("routing_tag", "project_ae_prefix", "fallback_group", "fallback_project"):
            if not getattr(self, name):
                raise ValueError(f"placement setting {name!r} must not be empty")
        if self.cross_project_study not in ("separate", "reject"):
            raise ValueError(
                f"cross_project_study {self.cross_project_study!r} is not 'separate' or 'reject'"
            )


@dataclass(frozen=True)
class Destination:
    """The group and project an instance goes to, and why."""

    group: str
    project: str
    rule: Rule
    reason: str


@dataclass(frozen=True)
class Placement:
    """Everything the index needs to file one instance, Flywheel-style.

    Labels are what this instance says; when the session already exists the index keeps the existing
    values and only fills empty ones.
    """

    group: str
    project: str
    subject: str
    subject_firstname: str | None
    subject_lastname: str | None
    subject_sex: str | None
    session_uid: str
    session_label: str
    session_timestamp: datetime | None
    acquisition_uid: str
    acquisition_label: str
    acquisition_timestamp: datetime | None
    timezone: str
    rule: Rule
    reason: str


def resolve_destination(
    group: str | None,
    project: str | None,
    config: PlacementConfig,
    *,
    existing_groups: Collection[str],
    existing_projects: Collection[tuple[str, str]],
    source: str = "the routing string",
) -> Destination:
    """Find the group and project for a routing string's group and project, as scitran core did.

    The group is looked up case-insensitively, then fuzzily (difflib ratio >= 0.8, accepted only when
    exactly one existing group is that close). A group that is still not found sends the instance to the
    fallback group, with the project label ``<group>_<project>``, so that nothing typed is lost. An empty
    project becomes the fallback project. The project is looked up case-insensitively within the group
    and returned in its existing spelling; otherwise it is a new project with the given label.

    Parameters
    ----------
    group, project
        As parsed; ``None`` or ``""`` when not given.
    config
        Fallback group and project.
    existing_groups
        Ids of the groups that exist (the fallback group always counts as existing).
    existing_projects
        ``(group, project label)`` of the projects that exist.
    source
        How the reason names the input, for example ``"PatientComments 'fw://neuro/x'"``.

    Returns
    -------
    Destination
        With rule ``ROUTING_STRING``, ``UNKNOWN_GROUP`` or, when neither group nor project is given,
        ``FALLBACK``.
    """
    group, project = group or "", project or ""
    if not group and not project:
        label = _existing_project(config.fallback_group, config.fallback_project, existing_projects)
        return Destination(config.fallback_group, label, Rule.FALLBACK, f"{source} names no group or project")
    found = _match_group(group, existing_groups, config.fallback_group)
    if found is None:
        label = _existing_project(
            config.fallback_group, sanitize_label(f"{group}_{project}"), existing_projects
        )
        named = f"group {group!r}, which does not exist" if group else "a project but no group"
        reason = f"{source} names {named}; placed in {config.fallback_group!r} as project {label!r}"
        return Destination(config.fallback_group, label, Rule.UNKNOWN_GROUP, reason)
    label = _existing_project(found, project or config.fallback_project, existing_projects)
    reason = f"{source} names group {found!r}" + (f" and project {label!r}" if project else " but no project")
    return Destination(found, label, Rule.ROUTING_STRING, reason)


def _match_group(group: str, existing_groups: Collection[str], fallback_group: str) -> str | None:
    if not group:
        return None
    by_lower = {existing.lower(): existing for existing in existing_groups}
    by_lower.setdefault(fallback_group.lower(), fallback_group)
    if group.lower() in by_lower:
        return by_lower[group.lower()]
    candidates = [lower for lower in by_lower if lower != fallback_group.lower()]
    close = difflib.get_close_matches(group.lower(), candidates, n=2, cutoff=_FUZZY_CUTOFF)
    return by_lower[close[0]] if len(close) == 1 else None


def _existing_project(group: str, label: str, existing_projects: Collection[tuple[str, str]]) -> str:
    for existing_group, existing_label in existing_projects:
        if existing_group.lower() == group.lower() and existing_label.lower() == label.lower():
            return existing_label
    return label


def place(
    header: InstanceHeader,
    config: PlacementConfig,
    *,
    existing_sessions: Sequence[tuple[str, str]] = (),
    called_ae_project: tuple[str, str] | None,
    existing_groups: Collection[str],
    existing_projects: Collection[tuple[str, str]],
    called_ae_title: str = "",
) -> Placement:
    """Decide where one instance goes.

    The project named by the sender comes first: the project of the called AE title (an upload names its
    project this way), else the routing string in ``config.routing_tag`` when it names an existing group
    (see :func:`resolve_destination`). A session that already holds this StudyInstanceUID keeps the
    instance only within that named project: projects are walls, so data for a study placed in another
    project opens a session of its own in the named project (``config.cross_project_study`` "separate") or
    is refused ("reject"). When nothing names a project (a plain PatientID, an unknown group, no routing
    string), the oldest existing session keeps the instance, so a study is never split by a changed
    routing string; else the fallback group and project. Subject, session and acquisition labels given
    by the routing string override the defaults derived from the header in every case.

    Parameters
    ----------
    header
        The instance's header; the routing tag is read from ``header.extra`` or, for PatientID, from
        ``header.patient_id``.
    config
        Placement settings.
    existing_sessions
        ``(group, project label)`` of every project holding a session with this StudyInstanceUID, oldest
        first.
    called_ae_project
        ``(group, project label)`` of the existing project the called AE title names (resolved by the
        caller with :func:`project_from_called_ae`); ``None`` when it names none or an unknown one.
    existing_groups
        Ids of the groups that exist.
    existing_projects
        ``(group, project label)`` of the projects that exist.
    called_ae_title
        The called AE title, only to name it in the reason.

    Returns
    -------
    Placement

    Raises
    ------
    StudyInAnotherProject
        A project is named, the study has sessions only in other projects, and the policy is "reject".
        The message names no other project.
    """
    value = _routing_value(header, config)
    routing = parse_routing_string(value, config.routing_pattern)
    if called_ae_project is not None:
        named_by = f"called AE {called_ae_title!r}" if called_ae_title else "the called AE title"
        reason = f"{named_by} names project {'/'.join(called_ae_project)!r}"
        destination = Destination(*called_ae_project, Rule.CALLED_AE, reason)
    else:
        destination = resolve_destination(
            routing.group,
            routing.project,
            config,
            existing_groups=existing_groups,
            existing_projects=existing_projects,
            source=f"{config.routing_tag} {value!r}",
        )
    destination = _within_walls(header, config, destination, existing_sessions)
    return _placement(header, config.timezone, routing, destination)


def _within_walls(
    header: InstanceHeader,
    config: PlacementConfig,
    named: Destination,
    existing_sessions: Sequence[tuple[str, str]],
) -> Destination:
    """Apply the existing-session rule: only within the named project, or anywhere if none is named."""
    uid = header.study_instance_uid
    if named.rule not in (Rule.CALLED_AE, Rule.ROUTING_STRING):  # nothing names a project
        if not existing_sessions:
            return named
        group, project = existing_sessions[0]
        reason = f"study {uid!r} already has a session in {group + '/' + project!r}"
        return Destination(group, project, Rule.EXISTING_SESSION, reason)
    key = (named.group.lower(), named.project.lower())
    if any((group.lower(), project.lower()) == key for group, project in existing_sessions):
        reason = f"study {uid!r} already has a session in {named.group + '/' + named.project!r}"
        return Destination(named.group, named.project, Rule.EXISTING_SESSION, reason)
    if existing_sessions and config.cross_project_study == "reject":
        raise StudyInAnotherProject(
            f"study is in another project (cross_project_study=reject): Study Instance UID {uid!r} is "
            f"not added to project {named.project!r}",
            {"study_instance_uid": uid, "project": named.project},
        )
    return named


def _routing_value(header: InstanceHeader, config: PlacementConfig) -> str:
    if config.routing_tag in header.extra:
        return header.extra[config.routing_tag].strip()
    return header.patient_id.strip() if config.routing_tag == "PatientID" else ""


def _placement(header: InstanceHeader, tz: str, routing: Routing, destination: Destination) -> Placement:
    firstname, lastname = split_patient_name(header.patient_name)
    return Placement(
        group=destination.group,
        project=destination.project,
        subject=routing.subject or subject_label(header),
        subject_firstname=firstname,
        subject_lastname=lastname,
        subject_sex=normalize_sex(header.patient_sex),
        session_uid=header.study_instance_uid,
        session_label=routing.session or session_label(header, tz),
        session_timestamp=session_timestamp(header, tz),
        acquisition_uid=acquisition_uid(header),
        acquisition_label=routing.acquisition or acquisition_label(header, tz),
        acquisition_timestamp=acquisition_timestamp(header, tz),
        timezone=tz,
        rule=destination.rule,
        reason=destination.reason,
    )
