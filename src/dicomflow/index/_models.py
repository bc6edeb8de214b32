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
    blob_key: Mapped[str] = mapped_column(String(255), unique=True)
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


class Token(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(_CREATED, default=utcnow)
