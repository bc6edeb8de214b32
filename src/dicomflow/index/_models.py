"""The index schema: the hierarchy group / project / subject / session / acquisition / instance, datasets,
users and tokens, and the event log. Portable SQL only (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so that migrations are stable."""

    metadata = MetaData(naming_convention=NAMING)


_UID = String(64)
_LABEL = String(128)
_CREATED = DateTime(timezone=True)


class Group(Base):
    """Top of the hierarchy, e.g. a lab or department (Flywheel's group)."""

    __tablename__ = "groups"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(_LABEL)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Project(Base):
    """A project within a group; ``label_key`` (lower-cased label) makes lookup case-insensitive."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("group_id", "label_key", name="uq_projects_group_label"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id"), index=True)
    label: Mapped[str] = mapped_column(_LABEL)
    label_key: Mapped[str] = mapped_column(_LABEL, index=True)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Subject(Base):
    """A patient or participant within a project."""

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("project_id", "label", name="uq_subjects_project_label"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    label: Mapped[str] = mapped_column(_LABEL)
    firstname: Mapped[str | None] = mapped_column(_LABEL)
    lastname: Mapped[str | None] = mapped_column(_LABEL)
    sex: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Session(Base):
    """One study (StudyInstanceUID) within a project, with the rule that placed it."""

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("project_id", "study_instance_uid", name="uq_sessions_project_study"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    study_instance_uid: Mapped[str] = mapped_column(_UID, index=True)
    label: Mapped[str] = mapped_column(_LABEL)
    timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    timezone: Mapped[str] = mapped_column(String(64))
    placement_rule: Mapped[str] = mapped_column(String(32))
    placement_reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Acquisition(Base):
    """One series (or one acquisition of a split series) within a session."""

    __tablename__ = "acquisitions"
    __table_args__ = (UniqueConstraint("session_id", "acquisition_uid", name="uq_acquisitions_session_uid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    acquisition_uid: Mapped[str] = mapped_column(String(80))
    series_instance_uid: Mapped[str] = mapped_column(_UID, index=True)
    label: Mapped[str] = mapped_column(_LABEL)
    timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    modality: Mapped[str] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str] = mapped_column(_LABEL)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    # JSON {keyword: [values as text]} of its first instance (dicom.SERIES_KEYWORDS), kept when it is placed
    series_header: Mapped[str | None] = mapped_column(Text, nullable=True)


class Instance(Base):
    """One stored object: its identity, where its bytes are, and their checksum."""

    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    acquisition_id: Mapped[int] = mapped_column(ForeignKey("acquisitions.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(_UID, index=True)
    sop_class_uid: Mapped[str] = mapped_column(_UID)
    transfer_syntax_uid: Mapped[str] = mapped_column(_UID)
    study_instance_uid: Mapped[str] = mapped_column(_UID)
    series_instance_uid: Mapped[str] = mapped_column(_UID, index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    slice_position: Mapped[float | None] = mapped_column(Float)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # keys name content (UIDs and a hash): the same bytes kept in two projects share one blob
    blob_key: Mapped[str] = mapped_column(String(255), index=True)
    source: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Dataset(Base):
    """A named collection of series (Kaapana's dataset), filled by calling AE ``kp-<dataset>``."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(_LABEL, unique=True)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class DatasetSeries(Base):
    """Membership of an acquisition (series) in a dataset."""

    __tablename__ = "dataset_series"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    acquisition_id: Mapped[int] = mapped_column(ForeignKey("acquisitions.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Event(Base):
    """The event log: who did what, when, to which object, and why."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_at", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    object_uid: Mapped[str] = mapped_column(String(80), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)


class User(Base):
    """A person or service account; ``role`` is admin, uploader, reviewer or viewer."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(_CREATED, nullable=True)


class Token(Base):
    """A bearer token (``api``) or a cookie session (``session``); only its SHA-256 is stored."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    prefix: Mapped[str | None] = mapped_column(String(8), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(_CREATED, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(_CREATED, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(_CREATED, nullable=True)


class LoginFailure(Base):
    """Failed password logins of one account (``email:…``) or client address (``address:…``)."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(_CREATED)
    locked_until: Mapped[datetime | None] = mapped_column(_CREATED, nullable=True)


# --- processing: study versions and their stages, findings, jobs, results, the export outbox, rules ---


class Study(Base):
    """One version of a session going through the flow; data arriving after it ended opens the next."""

    __tablename__ = "studies"
    __table_args__ = (UniqueConstraint("session_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    report_types: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of requested names
    upload_id: Mapped[str | None] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(16), default="session")  # or "subject" (node mode)
    last_instance_id: Mapped[int] = mapped_column(Integer, default=0)
    last_instance_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class StageChange(Base):
    """The history of a study's stage: who or what moved it, when and why."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    stage: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")


class FindingRow(Base):
    """A named result of a completeness or validity check, kept with the study version."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    report_type: Mapped[str] = mapped_column(String(64), default="")
    code: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    series_instance_uid: Mapped[str | None] = mapped_column(_UID)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Job(Base):
    """One report type (at one version) run on one study version, with its retry state."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("study_id", "report_type", "report_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    report_type: Mapped[str] = mapped_column(String(64))
    report_version: Mapped[str] = mapped_column(String(32))
    requires_qc: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    timeout: Mapped[float] = mapped_column(Float, default=3600.0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str] = mapped_column(String(128), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class ResultRow(Base):
    """A file a job produced (report, results JSON, NIfTI …), stored under the data directory."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class OutboxItem(Base):
    """One instance to C-STORE to a configured node; retried with back-off until the node takes it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    node: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(128))  # the sender now sending it
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # then free again


class ProjectRule(Base):
    """Run a report type on new studies of a project whose tags match (keyword → regex, all must match)."""

    __tablename__ = "project_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    report_type: Mapped[str] = mapped_column(String(64))
    match: Mapped[str] = mapped_column(Text, default="{}")  # JSON object keyword -> regex
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Cursor(Base):
    """A named position in an append-only table (the flow's last seen instance id)."""

    __tablename__ = "cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)  # 64-bit: PostgreSQL xids (0007)


class Lease(Base):
    """A background duty that one node of several runs at a time, until ``expires_at`` unless renewed."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))  # the holding node's ``cluster.node_id``
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- uploads and project membership ---


class Upload(Base):
    """An HTTP upload session: files received into a temp folder, imported when completed."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a UUID4
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    report_type: Mapped[str | None] = mapped_column(String(64))
    force_reprocessing: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_by: Mapped[str] = mapped_column(String(255))
    files_received: Mapped[int] = mapped_column(Integer, default=0)
    instances_imported: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[str] = mapped_column(Text, default="[]")  # JSON [{file, code, message}]
    summary_errors: Mapped[str] = mapped_column(Text, default="[]")  # JSON [str]
    study_ids: Mapped[str] = mapped_column(Text, default="[]")  # JSON [studies.id] found by the import
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)


class Membership(Base):
    """A user's role in one project (admins of the installation need none)."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
