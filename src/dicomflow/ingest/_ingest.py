"""The one use case every receive path calls: accept one instance.

parse header -> validate -> stage (fsync) -> de-duplicate -> place -> publish -> commit row + event.
The caller learns of success only after the bytes are durable and the index row is committed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from dicomflow import metrics
from dicomflow.config import DuplicatePolicy, Settings
from dicomflow.dicom import InstanceHeader, dataset_offset, read_header, read_series_attributes
from dicomflow.errors import (
    DicomflowError,
    DuplicateConflict,
    IndexUnavailable,
    InvalidInstance,
    StorageError,
)
from dicomflow.index import Instance, WriteLock, insert_instance, instances_with_uid, utcnow
from dicomflow.index.catalog import record_event
from dicomflow.index.placement import add_to_dataset
from dicomflow.ingest._placing import PlacedSeries, resolve_series
from dicomflow.placement import (
    PlacementConfig,
    acquisition_uid,
    dataset_from_calling_ae,
    project_from_called_ae,
)
from dicomflow.storage import BlobStore, StagedBlob

LOGGER = logging.getLogger(__name__)
_CACHE_SIZE = 2048


class Outcome(StrEnum):
    """What happened to an accepted instance."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # identical bytes were stored already: nothing new written
    OVERWRITTEN = "overwritten"
    KEPT_BOTH = "kept-both"


@dataclass(frozen=True, slots=True)
class Source:
    """Who sent an instance and how: ``kind`` is dimse, import or upload.

    ``project`` is the ``(group, label)`` of the project the source itself names (an upload's, a job's),
    which wins over a project named by label in ``called_ae``.
    """

    kind: str
    actor: str
    calling_ae: str | None = None
    called_ae: str | None = None
    project: tuple[str, str] | None = None


_PlacedKey = tuple[str, str, str | None, str | None, tuple[str, str] | None]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome of accepting one instance."""

    outcome: Outcome
    sop_instance_uid: str
    blob_key: str
    acquisition_id: int


def source_from_origin(origin: str) -> Source | None:
    """The source a staged file was written for (see :meth:`Ingestor._origin`); ``None`` if unreadable."""
    try:
        fields = json.loads(origin)
        known = {field.name for field in dataclasses.fields(Source)}
        values = {name: value for name, value in fields.items() if name in known}
        if values.get("project") is not None:  # JSON has no tuples; a Source must stay hashable
            values["project"] = tuple(values["project"])
        return Source(**values)
    except (ValueError, TypeError, AttributeError):
        return None


def blob_key(header: InstanceHeader, sha256: str) -> str:
    """The key of an instance's bytes: validated UIDs and a content hash, never raw input."""
    study, series, sop = header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid
    return f"{study}/{series}/{sop}.{sha256[:16]}.dcm"


def _referenced(conn: Connection, keys: list[str]) -> set[str]:
    """Those of ``keys`` that an instance row still refers to."""
    return set(conn.scalars(select(Instance.blob_key).where(Instance.blob_key.in_(keys))))


def slice_position(header: InstanceHeader) -> float | None:
    """Position along the slice normal (ImagePositionPatient on the ImageOrientationPatient normal),
    else SliceLocation."""
    ipp, iop = header.image_position_patient, header.image_orientation_patient
    if len(ipp) == 3 and len(iop) == 6:
        row, col = iop[:3], iop[3:]
        normal = (
            row[1] * col[2] - row[2] * col[1],
            row[2] * col[0] - row[0] * col[2],
            row[0] * col[1] - row[1] * col[0],
        )
        return round(sum(p * n for p, n in zip(ipp, normal, strict=True)), 6)
    return header.slice_location


class Ingestor:
    """Accepts instances into one index and blob store; safe to share between threads of one process.

    Parameters
    ----------
    settings
        The installation's settings (duplicate policy, placement rules, ``performance.fast_paths``: parse
        headers and file meta with dicomflow's scanners, else with pydicom).
    engine
        Engine of the index (its transactions must take the write lock at BEGIN on SQLite).
    store
        Where the bytes go.
    """

    def __init__(self, settings: Settings, engine: Engine, store: BlobStore) -> None:
        self.engine = engine
        self.store = store
        self.fast_paths = settings.performance.fast_paths
        self.policy = settings.ingest.duplicate_policy
        self.placement_config = PlacementConfig(
            routing_tag=settings.ingest.routing_tag,
            timezone=settings.ingest.timezone,
            project_ae_prefix=settings.dimse.project_ae_prefix,
            fallback_group=settings.ingest.fallback_group,
            fallback_project=settings.ingest.fallback_project,
            cross_project_study=settings.ingest.cross_project_study.value,
        )
        self._extra = () if settings.ingest.routing_tag == "PatientID" else (settings.ingest.routing_tag,)
        self._placed: OrderedDict[_PlacedKey, tuple[int, int]] = OrderedDict()
        self._origins: dict[Source, str] = {}
        self._lock = threading.Lock()
        self._write_lock = WriteLock(
            engine.url.render_as_string(hide_password=False),
            sqlite_synchronous=settings.index.sqlite_synchronous,
            engine=engine,
        )
        self._connections: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        # index rows are made durable in batches, before the staged copies of their blobs are dropped
        self.store.before_release = self._write_lock.sync_log

    def ingest_bytes(
        self,
        chunks: list[bytes | memoryview],
        source: Source,
        *,
        expected_sop_instance_uid: str | None = None,
    ) -> IngestResult:
        """Accept one instance given as its Part 10 bytes (file meta included), possibly in pieces.

        ``expected_sop_instance_uid`` is the UID the sender announced (the C-STORE request's Affected SOP
        Instance UID): a data set naming another is refused, and rejections are logged under it.
        """
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._ingest(data, source, expected_sop_instance_uid, expected_sop_instance_uid or "")

    def ingest_file(self, path: Path, source: Source) -> IngestResult:
        """Accept one instance from a file; the file itself is copied, never moved or changed."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            error = StorageError(f"cannot read {path}: {exc}")
            self.record_rejection(source, str(path), error)
            raise error from exc
        return self._ingest(data, source, None, str(path))

    def _ingest(
        self, data: bytes | memoryview, source: Source, expected_uid: str | None, label: str
    ) -> IngestResult:
        def parse() -> InstanceHeader:
            header = read_header(data, self._extra, fast_paths=self.fast_paths)
            if expected_uid is not None and header.sop_instance_uid != expected_uid:
                raise InvalidInstance(
                    f"data set SOP Instance UID {header.sop_instance_uid!r} differs from the request's "
                    f"{expected_uid!r}"
                )
            return header

        try:
            # parse while the disk works; the source goes with the staged file, for recovery
            staged, header = self.store.stage_while([data], parse, self._origin(source))
        except DicomflowError as exc:
            self.record_rejection(source, label, exc, size=len(data))
            raise
        result = self._accept(header, staged, source, data)
        metrics.instance_received(source.kind, result.outcome.value, len(data))
        return result

    def _origin(self, source: Source) -> str:
        """``source`` as one line of JSON (see :func:`source_from_origin`), made once per source."""
        origin = self._origins.get(source)
        if origin is None:
            if len(self._origins) >= _CACHE_SIZE:
                self._origins.clear()
            origin = self._origins[source] = json.dumps(
                dataclasses.asdict(source), separators=(",", ":"), default=str
            )
        return origin

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection of this ingestor's own small pool (checking out of SQLAlchemy's costs ~0.3 ms)."""
        try:
            conn = self._connections.get_nowait()
        except queue.Empty:
            conn = self.engine.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if conn.in_transaction():
            conn.rollback()
        self._connections.put(conn)

    def close(self) -> None:
        """Finish pending blob syncs, close pooled connections and the write lock."""
        self.store.close()
        while not self._connections.empty():
            self._connections.get_nowait().close()
        self._write_lock.close()
        self.engine.dispose()

    def record_rejection(
        self, source: Source, object_uid: str, error: DicomflowError, *, size: int = 0
    ) -> None:
        """Log a refused instance (of ``size`` bytes) or association in the event log and the metrics
        (never raises)."""
        LOGGER.warning("rejected %s from %s: %s", object_uid or "instance", source.actor, error.message)
        metrics.instance_rejected(source.kind, error.code)
        if size:
            metrics.instance_received(source.kind, "rejected", size)
        try:
            with self._write_lock, self.engine.begin() as conn:
                record_event(
                    conn, "rejected", source.actor, object_uid, f"{error.code}: {error.message}", "failed"
                )
            self._write_lock.sync_log()
        except (DBAPIError, OSError):
            LOGGER.exception("could not record the rejection in the event log")

    def _accept(
        self, header: InstanceHeader, staged: StagedBlob, source: Source, data: bytes | memoryview
    ) -> IngestResult:
        try:
            result = self._commit(header, staged, source, data)
        except DicomflowError as exc:
            self.store.release(staged)
            self.record_rejection(source, header.sop_instance_uid, exc, size=len(data))
            raise
        except BaseException:
            self.store.release(staged)
            raise
        published = result.blob_key if result.outcome is not Outcome.DUPLICATE else None
        self.store.release(staged, published_as=published)
        return result

    def _commit(
        self, header: InstanceHeader, staged: StagedBlob, source: Source, data: bytes | memoryview
    ) -> IngestResult:
        key = blob_key(header, staged.sha256)
        created = self.store.publish(staged, key)  # before taking the writer lock: its fsyncs wait alone
        try:
            result, replaced = self._commit_row(header, staged, key, source, data)
        except BaseException:
            if created:
                self._delete_unreferenced(key)
            raise
        if created and result.blob_key != key:  # the same data set is stored under another file meta
            self._delete_unreferenced(key)
        for old_key, hold in replaced:
            self.store.retire(old_key, hold)
        return result

    def _commit_row(
        self, header: InstanceHeader, staged: StagedBlob, key: str, source: Source, data: bytes | memoryview
    ) -> tuple[IngestResult, list[tuple[str, StagedBlob]]]:
        for attempt in range(3):
            try:
                with self._write_lock, self._connection() as conn:
                    try:
                        return self._index(conn, header, staged, key, source, data)
                    except BaseException:
                        self._forget(header)  # placement rows made in this transaction are rolled back
                        raise
            except IntegrityError:  # another process created the same row first: look again
                if attempt == 2:
                    raise IndexUnavailable(
                        f"cannot index {header.sop_instance_uid}: conflicting writers"
                    ) from None
                self._forget(header)
            except DBAPIError as exc:
                raise IndexUnavailable(f"cannot index {header.sop_instance_uid}: {exc.orig}") from exc
        raise AssertionError("unreachable")

    def _delete_unreferenced(self, key: str) -> None:
        """Remove a blob this attempt published, unless a concurrent identical instance indexed it."""
        with self._connection() as conn:
            if conn.scalar(select(Instance.id).where(Instance.blob_key == key)) is None:
                self.store.delete(key)

    def _index(
        self,
        conn: Connection,
        header: InstanceHeader,
        staged: StagedBlob,
        key: str,
        source: Source,
        data: bytes | memoryview,
    ) -> tuple[IngestResult, list[tuple[str, StagedBlob]]]:
        uid = header.sop_instance_uid
        # placed first: identity and the duplicate policy hold within a project, never across projects
        acquisition_id, project_id = self._acquisition_id(conn, header, source, data)
        previous = instances_with_uid(conn, uid, project_id)
        same = next((row for row in previous if row.sha256 == staged.sha256), None)
        reason = "identical instance received again; no second copy kept"
        if same is None and previous:  # rare: compare what was sent, not the file meta written for it
            same = next((row for row in previous if self._same_data_set(row.blob_key, data)), None)
            reason = "identical data set received again (another file meta); no second copy kept"
        if same is not None:
            record_event(conn, "duplicate", source.actor, uid, reason)
            conn.commit()
            return IngestResult(Outcome.DUPLICATE, uid, same.blob_key, same.acquisition_id), []
        outcome = self._duplicate_outcome(uid, bool(previous))
        insert_instance(conn, self._row(header, staged, key, acquisition_id, source))
        replaced = []
        if outcome is Outcome.OVERWRITTEN:
            conn.execute(delete(Instance).where(Instance.id.in_([row.id for row in previous])))
            # a staged name for each replaced blob: if we die between commit and deletion, recovery
            # finds it, sees no row for its key, and removes the blob (no orphan); a blob that another
            # project holds too (the same bytes were sent there) stays
            kept = _referenced(conn, [row.blob_key for row in previous])
            replaced = [
                (row.blob_key, self.store.hold(row.blob_key)) for row in previous if row.blob_key not in kept
            ]
        record_event(conn, "received", source.actor, uid, self._reason(outcome, source))
        conn.commit()
        return IngestResult(outcome, uid, key, acquisition_id), replaced

    def _same_data_set(self, key: str, data: bytes | memoryview) -> bool:
        """Whether the blob under ``key`` holds the data set of ``data`` (its file meta may differ: the
        receiver names the calling AE there, an uploaded file keeps its own)."""
        try:
            stored = self.store.get(key)
        except StorageError:
            return False
        fast = self.fast_paths
        received = memoryview(data)[dataset_offset(data, fast_paths=fast) :]
        return memoryview(stored)[dataset_offset(stored, fast_paths=fast) :] == received

    def _duplicate_outcome(self, uid: str, exists: bool) -> Outcome:
        if not exists:
            return Outcome.STORED
        if self.policy is DuplicatePolicy.REJECT:
            raise DuplicateConflict(
                f"different content already stored under this SOP Instance UID (policy: reject): {uid}"
            )
        return Outcome.OVERWRITTEN if self.policy is DuplicatePolicy.OVERWRITE else Outcome.KEPT_BOTH

    def _reason(self, outcome: Outcome, source: Source) -> str:
        via = f"{source.kind} from {source.actor}"
        if outcome is Outcome.OVERWRITTEN:
            return f"stored via {via}; replaced another object with this SOP Instance UID (policy: overwrite)"
        if outcome is Outcome.KEPT_BOTH:
            return f"stored via {via}; another object with this SOP Instance UID kept too (policy: keep-both)"
        return f"stored via {via}"

    def project_named_by(self, source: Source) -> tuple[str, str] | str | None:
        """The project ``source`` names: its own ``(group, label)``, a ``kp-`` called AE's label, or none."""
        if source.project is not None:
            return source.project
        return project_from_called_ae(source.called_ae or "", self.placement_config.project_ae_prefix)

    def _acquisition_id(
        self, conn: Connection, header: InstanceHeader, source: Source, data: bytes | memoryview
    ) -> tuple[int, int]:
        """The acquisition the instance goes to, and its project's id."""
        # the acquisition, not the series: one series may split (AcquisitionNumber, screen saves)
        study, acquisition = header.study_instance_uid, acquisition_uid(header)
        cache_key = (study, acquisition, source.called_ae, source.calling_ae, source.project)
        with self._lock:
            cached = self._placed.get(cache_key)
        if cached is not None:
            return cached
        placed: PlacedSeries = resolve_series(
            conn,
            header,
            source.called_ae,
            self.placement_config,
            source.actor,
            source.project,
            series_header=lambda: read_series_attributes(data),  # read when the series is first placed
        )
        dataset = dataset_from_calling_ae(source.calling_ae or "", self.placement_config.project_ae_prefix)
        if dataset:
            add_to_dataset(conn, dataset, placed.acquisition_id)
        with self._lock:
            self._placed[cache_key] = (placed.acquisition_id, placed.project_id)
            while len(self._placed) > _CACHE_SIZE:
                self._placed.popitem(last=False)
        return placed.acquisition_id, placed.project_id

    def _forget(self, header: InstanceHeader) -> None:
        with self._lock:
            for cache_key in [k for k in self._placed if k[0] == header.study_instance_uid]:
                del self._placed[cache_key]

    def _row(
        self, header: InstanceHeader, staged: StagedBlob, key: str, acquisition_id: int, source: Source
    ) -> dict[str, object]:
        return {
            "acquisition_id": acquisition_id,
            "sop_instance_uid": header.sop_instance_uid,
            "sop_class_uid": header.sop_class_uid,
            "transfer_syntax_uid": header.transfer_syntax_uid,
            "study_instance_uid": header.study_instance_uid,
            "series_instance_uid": header.series_instance_uid,
            "instance_number": header.instance_number,
            "slice_position": slice_position(header),
            "size": staged.size,
            "sha256": staged.sha256,
            "blob_key": key,
            "source": f"{source.kind}:{source.actor}"[:128],
            "received_at": utcnow(),
        }
