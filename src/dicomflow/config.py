"""All settings of dicomflow: one pydantic-settings tree, read from ``DICOMFLOW_*`` and an optional TOML file.

Nested fields use ``__``: ``DICOMFLOW_DIMSE__PORT=11112``, ``DICOMFLOW_INDEX__URL=postgresql+psycopg://…``.
The TOML file is ``$DICOMFLOW_CONFIG`` or ``<data_dir>/dicomflow.toml``; environment variables win over it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class DuplicatePolicy(StrEnum):
    """What happens when a different object arrives under an existing SOP Instance UID."""

    REJECT = "reject"
    OVERWRITE = "overwrite"
    KEEP_BOTH = "keep-both"


class CrossProjectStudy(StrEnum):
    """What happens when data for a study placed in one project is sent into another project."""

    SEPARATE = "separate"
    REJECT = "reject"


def _per_cores(cores: int, *, minimum: int) -> int:
    """Processes to start by default: one per ``cores`` CPU cores, at least ``minimum``."""
    return max(minimum, (os.cpu_count() or 1) // cores)


class DimseSettings(BaseModel):
    """The DICOM receiver."""

    ae_title: str = Field("DICOMFLOW", description="AE title of the receiver.", max_length=16)
    host: str = Field("127.0.0.1", description="Address the receiver listens on.")
    port: int = Field(11112, description="TCP port of the receiver.")
    project_ae_prefix: str = Field("kp-", description="Called AE '<prefix><project>' selects a project.")
    max_associations: int = Field(16, description="Associations served at once; more are rejected (busy).")
    workers: int = Field(
        default_factory=lambda: _per_cores(1, minimum=2),
        description=(
            "Receiving processes (default one per CPU core, at least 2; 0 = two per core); associations "
            "spread over them. Each is an interpreter of about 80 MiB."
        ),
    )
    idle_timeout: float = Field(
        60.0, description="Seconds an association may stay silent before it is aborted."
    )
    acse_timeout: float = Field(30.0, description="Seconds to wait for association negotiation.")
    max_pdu_size: int = Field(
        1 << 20,
        ge=0,
        description=(
            "Largest P-DATA-TF PDU accepted, in bytes, as announced in A-ASSOCIATE-AC; a PDU declaring more "
            "is aborted (other PDUs: at most this or 1 MiB). 0 = no limit (trusted networks only)."
        ),
    )
    network_timeout: float = Field(
        30.0, gt=0, description="Seconds a read or write of a PDU may wait on the network before abort."
    )
    max_pending_connections: int = Field(
        64,
        ge=1,
        description=(
            "Connections not yet associated, apart from max_associations; past it the oldest is closed."
        ),
    )
    allowed_peers: list[str] = Field(
        default_factory=list,
        description=(
            "Callers allowed to associate: calling AE titles, IP addresses or networks (10.0.0.0/8), or "
            "AE@address; empty = everyone. Others get A-ASSOCIATE-RJ (calling AE not recognised)."
        ),
    )

    @field_validator("allowed_peers")
    @classmethod
    def _check_peers(cls, peers: list[str]) -> list[str]:
        for peer in peers:
            title, at, address = peer.strip().rpartition("@")
            if at and not 0 < len(title.strip()) <= 16:
                raise ValueError(
                    f"allowed peer {peer!r}: the AE title before '@' must have 1 to 16 characters"
                )
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                if at or not 0 < len(address) <= 16:
                    raise ValueError(
                        f"allowed peer {peer!r} is no AE title, address, network or AE@address"
                    ) from None
        return peers


class HttpSettings(BaseModel):
    """The HTTP API."""

    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8080, description="TCP port of the HTTP API.")
    workers: int = Field(
        default_factory=lambda: _per_cores(1, minimum=2),
        description=(
            "HTTP processes sharing the port (default one per CPU core, at least 2: one alone serves uploads "
            "at 0.6-0.7x of two, measured by bench/upload.py). Each is an interpreter of about 80 MiB."
        ),
    )
    session_idle_timeout: float = Field(
        1800.0,
        gt=0,
        description="Seconds a cookie session (icometrix API login) may go unused before it ends.",
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed password logins of one account before it is locked for a while."
    )
    login_max_failures_per_address: int = Field(
        20,
        ge=1,
        description="Failed password logins from one client address (any accounts) before it is locked.",
    )
    login_lockout: float = Field(
        1.0, gt=0, description="Seconds of the first lockout; each further failure doubles it."
    )
    login_lockout_max: float = Field(
        900.0, gt=0, description="Longest lockout after failed logins, in seconds."
    )
    login_failure_window: float = Field(
        86400.0, gt=0, description="Seconds after the last failed login when the failures are forgotten."
    )
    max_body_bytes: int = Field(
        1 << 20, ge=0, description="Largest request body of every route but the file uploads (413 beyond)."
    )
    public_docs: bool = Field(
        True, description="Serve /docs, /redoc and /openapi.json without a token (false: they need one)."
    )
    public_metrics: bool | None = Field(
        None,
        description=(
            "Serve /metrics without a token (true) or only with one (false); empty = without a token when "
            "the API listens on a loopback address only (only this host can scrape), else with one."
        ),
    )

    @property
    def metrics_need_token(self) -> bool:
        """Whether ``/metrics`` needs a token (see ``public_metrics``)."""
        if self.public_metrics is not None:
            return not self.public_metrics
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host != "localhost"


class IndexSettings(BaseModel):
    """The metadata index (SQLAlchemy URL)."""

    url: str = Field(
        "", description="SQLAlchemy URL; empty = SQLite file index.sqlite3 in the data directory."
    )
    sqlite_synchronous: str = Field(
        "NORMAL",
        description=(
            "SQLite synchronous pragma (WAL mode) of the ingest. NORMAL: index rows are made durable in "
            "batches by an fsync of the WAL before the staged copies of their blobs are dropped (recovery "
            "ingests a staged blob again if its row was lost); FULL: SQLite also fsyncs every commit. On "
            "PostgreSQL, NORMAL commits the ingest with synchronous_commit off and flushes the WAL once "
            "per batch in the same way; FULL keeps every commit synchronous."
        ),
    )


class StorageSettings(BaseModel):
    """Where instance bytes are kept."""

    root: Path | None = Field(
        None, description="Blob store directory; empty = 'blobs' in the data directory."
    )
    fsync: bool = Field(
        True, description="fsync every blob before acknowledging it (turn off only for tests)."
    )
    backend: Literal["filesystem", "s3"] = Field(
        "filesystem", description="Where blobs live: 'filesystem' (storage.root) or 's3' (an S3 bucket)."
    )
    staging: Path | None = Field(
        None,
        description=(
            "S3 back end: node-local directory where received bytes are fsynced before they are PUT "
            "(each node stages in '<staging>/<node_id>'); empty = 'staging' in the data directory."
        ),
    )
    scratch: Path | None = Field(
        None,
        description=(
            "Node-local directory where blobs are fetched for readers that need files (a job's inputs); "
            "empty = 'scratch' in the data directory."
        ),
    )
    s3_endpoint_url: str = Field(
        "", description="S3 endpoint URL (MinIO, Ceph RGW, ...); empty = AWS's for the region."
    )
    s3_bucket: str = Field("", description="S3 bucket of the blobs (must exist); required for s3.")
    s3_prefix: str = Field("", description="Prefix of every object key in the bucket, e.g. 'dicomflow/'.")
    s3_region: str = Field(
        "", description="S3 region; empty = boto3's configuration (AWS_DEFAULT_REGION, ~/.aws/config)."
    )


class IngestSettings(BaseModel):
    """How received instances are accepted and placed."""

    duplicate_policy: DuplicatePolicy = Field(
        DuplicatePolicy.REJECT, description="A different object under an existing SOP Instance UID."
    )
    routing_tag: str = Field(
        "PatientID", description="DICOM keyword carrying the routing string [fw://]group[/project[/…]]."
    )
    timezone: str = Field("UTC", description="Time zone of naive DICOM dates and times.")
    fallback_group: str = Field("unknown", description="Group of instances no rule could place.")
    fallback_project: str = Field("Unsorted", description="Project of instances no rule could place.")
    cross_project_study: CrossProjectStudy = Field(
        CrossProjectStudy.SEPARATE,
        description=(
            "Data naming a project (upload, called AE kp-<project>, routing string) for a study that has "
            "a session in another project: 'separate' opens a session in the named project, 'reject' "
            "refuses it."
        ),
    )


class NodeSettings(BaseModel):
    """A DICOM node results can be exported to (C-STORE)."""

    host: str = Field(description="Host name or address of the node.")
    port: int = Field(description="TCP port of the node.")
    ae_title: str = Field(description="Called AE title of the node.", max_length=16)
    calling_ae_title: str = Field("DICOMFLOW", description="Our AE title towards the node.", max_length=16)


class ProcessingSettings(BaseModel):
    """When studies are processed, by how many workers, and how failures are retried."""

    settle_time: float = Field(
        10.0, description="Seconds without a new instance before a study received over DICOM is ready."
    )
    workers: int = Field(1, description="Jobs run at once, each in its own worker process (0 = no executor).")
    max_attempts: int = Field(
        3, description="Attempts of a job before it fails (a report type may lower it)."
    )
    retry_delay: float = Field(5.0, description="Seconds before the first retry; doubles with each attempt.")
    retry_delay_max: float = Field(300.0, description="Longest wait between two attempts, in seconds.")
    timeout: float = Field(3600.0, description="Seconds a job may run before it is killed (and retried).")
    heartbeat: float = Field(2.0, description="Seconds between a running job's heartbeats.")
    stale_after: float = Field(
        30.0, description="A running job without a heartbeat for this long was lost and is run again."
    )
    poll_interval: float = Field(0.5, description="Seconds between looks for new instances and due jobs.")
    plugins: list[str] = Field(
        default_factory=list,
        description="Extra report types: 'pkg.module:Class', 'pkg.module' or '/path/file.py[:Class]'.",
    )
    aliases: dict[str, str] = Field(
        default_factory=lambda: {"icobrain_ms": "ms_lesions"},
        description="Other names report types answer to (alias -> report type name).",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Options per report type name, passed to its processor."
    )
    nodes: dict[str, NodeSettings] = Field(
        default_factory=dict, description="DICOM nodes results can be exported to, by name."
    )
    export_retry_delay: float = Field(2.0, description="Seconds before an export is retried; doubles.")
    export_retry_delay_max: float = Field(300.0, description="Longest wait between two export attempts.")
    export_claim_seconds: float = Field(
        600.0,
        gt=0,
        description=(
            "Seconds a sender holds the exports it is sending; if it dies meanwhile, they are sent again "
            "after this (longer than sending one round of exports takes)."
        ),
    )


class JobExecutor(StrEnum):
    """Where jobs run."""

    EMBEDDED = "embedded"
    CELERY = "celery"


class JobsSettings(BaseModel):
    """Where jobs run: in worker processes of ``dicomflow serve`` (embedded), or in ``dicomflow worker``
    processes on any host, told of due jobs through a Celery broker (the jobs table stays the queue)."""

    executor: JobExecutor = Field(
        JobExecutor.EMBEDDED,
        description=(
            "'embedded': the server runs jobs itself; 'celery': the server runs none and announces due jobs "
            "on the broker to `dicomflow worker` processes."
        ),
    )
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Celery broker of the 'celery' executor (a Redis URL)."
    )
    announce_again: float = Field(
        60.0,
        gt=0,
        description="Seconds after which a due job no worker claimed is announced again (a lost message).",
    )


class UploadSettings(BaseModel):
    """HTTP upload sessions."""

    expire_after: float = Field(86400.0, description="Seconds an upload may stay open without a new file.")
    sweep_interval: float = Field(60.0, description="Seconds between looks for abandoned uploads.")
    max_file_bytes: int = Field(1024**3, description="Largest file (or zip) one request may send.")
    max_zip_members: int = Field(20_000, description="Most files one zip may hold.")
    max_zip_bytes: int = Field(4 * 1024**3, description="Most bytes one zip may expand to.")
    max_zip_ratio: float = Field(100.0, description="Highest compression ratio of a zip member (bombs).")
    ingest_threads: int = Field(
        2,
        ge=1,
        description=(
            "Files each HTTP process ingests at once: a few overlap the disk's waits, more only contend "
            "for the GIL (the API runs one process per core)."
        ),
    )
    in_memory_bytes: int = Field(
        16 << 20,
        ge=0,
        description="A one-file body up to this size is kept in memory; a larger one is streamed to disk.",
    )


def _data_dir_toml(init_settings: PydanticBaseSettingsSource) -> Path | None:
    """``<data_dir>/dicomflow.toml`` if it exists, the data directory given as argument, by
    ``DICOMFLOW_DATA_DIR``, or the default."""
    given = getattr(init_settings, "init_kwargs", {}).get("data_dir")
    data_dir = Path(
        given or os.environ.get("DICOMFLOW_DATA_DIR") or Settings.model_fields["data_dir"].default
    )
    toml = data_dir / "dicomflow.toml"
    return toml if toml.is_file() else None


class PerformanceSettings(BaseModel):
    """Speed-ups reaching into a library's internals: each measured in ``bench/``, each with a canary test
    (``tests/unit/test_private_canary.py``)."""

    fast_paths: bool = Field(
        True,
        description="Run dicomflow's fast paths into pynetdicom, pydicom, uvicorn, Starlette and SQLAlchemy "
        "internals; off, every one of them runs on the stock library code (slower, but immune to a change "
        "in a library's private parts).",
    )


class ClusterSettings(BaseModel):
    """Several ``dicomflow serve`` processes (nodes) on one index and one blob store."""

    node_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description=(
            "This node's name, unique among the nodes sharing an index (default: the host name); its "
            "crash recovery touches only what this node left behind."
        ),
    )
    lease_seconds: float = Field(
        30.0, gt=0, description="Seconds a node holds a background duty's lease without renewing it."
    )


class Settings(BaseSettings):
    """Every setting of a dicomflow installation."""

    model_config = SettingsConfigDict(env_prefix="DICOMFLOW_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(
        Path("dicomflow-data"), description="Directory holding the index, blobs and temp files."
    )
    dimse: DimseSettings = Field(default_factory=DimseSettings, description="DICOM receiver.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    http: HttpSettings = Field(default_factory=HttpSettings, description="HTTP API.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    index: IndexSettings = Field(default_factory=IndexSettings, description="Metadata index.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    storage: StorageSettings = Field(default_factory=StorageSettings, description="Blob storage.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="Ingest rules.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings, description="Processing.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    uploads: UploadSettings = Field(default_factory=UploadSettings, description="Upload sessions.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings, description="Fast paths.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    cluster: ClusterSettings = Field(default_factory=ClusterSettings, description="Several nodes.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class
    jobs: JobsSettings = Field(default_factory=JobsSettings, description="Where jobs run.")  # type: ignore[arg-type]  # pydantic's stub wants a factory, not a BaseSettings class

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = os.environ.get("DICOMFLOW_CONFIG") or _data_dir_toml(init_settings)
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @property
    def index_url(self) -> str:
        """The SQLAlchemy URL of the index."""
        return self.index.url or f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"

    @property
    def blob_root(self) -> Path:
        """The directory of the filesystem blob store."""
        return self.storage.root or self.data_dir / "blobs"

    @property
    def uploads_root(self) -> Path:
        """The folders of open uploads: beside the filesystem blob store, so that every node sharing the
        store's directory sees them (with the S3 store, in the data directory: one node's)."""
        if self.storage.backend == "filesystem":
            return self.blob_root / "uploads"
        return self.data_dir / "uploads"

    @property
    def staging_root(self) -> Path:
        """The node-local staging directory of the S3 blob store."""
        return self.storage.staging or self.data_dir / "staging"

    @property
    def scratch_dir(self) -> Path:
        """The node-local directory where blobs are fetched for readers that need files."""
        return self.storage.scratch or self.data_dir / "scratch"

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with dotted overrides applied, e.g. ``with_overrides(**{"dimse.port": 4242})``."""
        data = self.model_dump()
        for dotted, value in values.items():
            if value is None:
                continue
            target = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                target = target[part]
            target[leaf] = value
        return Settings.model_validate(data)
