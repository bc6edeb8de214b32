"""Upload sessions: start, receive files (any order, in parallel, zips too), complete, import in the
background through the one ingest, then hand each study to the processing flow with the requested report
type. Abandoned uploads expire and their files are removed; an import cut short by a restart is resumed.

The use cases (:func:`start`, :func:`add_files`, :func:`add_bytes`, :func:`add_part`, :func:`complete`,
:func:`get`, :func:`list_uploads`, :func:`received_files`, :func:`studies`) take the process's
:class:`~dicomflow.runtime.Application` and the caller, and enforce the project wall; :class:`Uploads`
(``app.uploads``) keeps each upload's folder, journal and locks, and the rows are
:mod:`dicomflow.index.uploads`.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import mmap
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine

from dicomflow.config import Settings
from dicomflow.errors import DicomflowError, InvalidState, NotFound, StorageError, TooLarge
from dicomflow.index import reading, utcnow, writing
from dicomflow.index import uploads as rows
from dicomflow.index.studies import (
    StudyInfo,
    latest_study,
    list_studies,
    project_id_by_label,
    session_of_acquisition,
    uploaded_studies_unchecked,
)
from dicomflow.ingest import Ingestor, Outcome, Source, open_ingestor
from dicomflow.schemas import ReceivedFile, Study, Upload, UploadFileError, UploadState
from dicomflow.uploads import ArchiveRefused, ZipLimits, extract, is_zip, stored_name
from dicomflow.usecases import _schemas
from dicomflow.usecases._upload_journal import SendRefused, SharedJournal
from dicomflow.usecases.access import READ, UPLOAD, Access, project_of

if TYPE_CHECKING:
    from dicomflow.runtime import Application

LOGGER = logging.getLogger(__name__)
CHUNK = 1 << 20
RECEIVED = ".received"  # one stored name per line, appended as files arrive
JOURNAL = ".journal"  # one JSON line per file or zip member: what it became
COMPLETED = ".completed"  # present once completion began: no more files
LOCK = ".lock"  # shared by each send while it stores, exclusive while completion reads (see _sending)
DONE = ".done-"  # an imported or expired upload's folder, renamed away before it is removed
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class Uploads:
    """The upload sessions of one installation: each upload's folder, journal and locks (``app.uploads``)."""

    def __init__(self, settings: Settings, engine: Engine, flow: Any) -> None:
        self.settings = settings
        self.engine = engine
        self.flow = flow
        self.root = settings.uploads_root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        _adopt(settings.data_dir.resolve() / "uploads", self.root)
        self.shared: SharedJournal | None = None  # nodes that share no directory share the journal
        if settings.storage.backend != "filesystem":
            self.shared = SharedJournal(flow.store, settings.cluster.node_id)
        self._lock = threading.Lock()
        self._shared: Ingestor | None = None
        self._sources = _Sources(settings, engine)
        self._projects: dict[str, tuple[int, str, str]] = {}  # upload id -> (project id, group, label)
        u = settings.uploads
        self.limits = ZipLimits(u.max_zip_members, u.max_zip_bytes, u.max_file_bytes, u.max_zip_ratio)

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self, project: str, report_type: str | None, *, force_reprocessing: bool, user: str) -> Upload:
        """Open an upload into ``project``; an unknown report type is refused here, before any file."""
        if report_type:
            self.flow.registry.get(report_type)
        upload_id = str(uuid.uuid4())
        now = utcnow()
        with writing(self.engine) as conn:
            project_id = project_id_by_label(conn, project)
            rows.create(
                conn,
                upload_id,
                project_id,
                report_type=report_type or None,
                force_reprocessing=force_reprocessing,
                created_by=user,
                created_at=now,
                expires_at=now + self._lifetime(),
            )
        (self.root / upload_id).mkdir(exist_ok=True)
        LOGGER.info(
            "upload %s started by %s into %s (%s)", upload_id, user, project, report_type or "no report"
        )
        return self.get(upload_id)

    def receive(self, upload_id: str, client_name: str, stream: IO[bytes]) -> tuple[str, int]:
        """Store one file of an open upload under a fresh safe name and ingest it (zips: every member).

        The outcome of each file is appended to the upload's journal; nothing is written to the index
        but the instances themselves, so parallel sends do not queue on one row. Returns name and size.
        Up to ``uploads.in_memory_bytes`` of one instance is ingested from memory; a larger file, and
        every zip, is written to the upload's folder first (and a large instance mapped from there).

        Raises
        ------
        InvalidState
            The upload takes no more files (being completed, completed or expired): nothing was stored.
        """
        return self.receive_many(upload_id, [(client_name, stream)])[0]

    def receive_many(self, upload_id: str, files: Sequence[tuple[str, IO[bytes]]]) -> list[tuple[str, int]]:
        """:meth:`receive` of several files (the parts of one request): all are taken, or none."""
        with self._sending(upload_id) as folder:
            return [self._receive(folder, upload_id, name, stream) for name, stream in files]

    def receive_bytes(self, upload_id: str, client_name: str, data: bytes | bytearray) -> tuple[str, int]:
        """:meth:`receive` of a file already in memory (one instance is ingested from it without a copy)."""
        with self._sending(upload_id) as folder:
            return self._receive_bytes(folder, upload_id, client_name, data)

    def receive_file(self, upload_id: str, client_name: str, part: Path) -> tuple[str, int]:
        """:meth:`receive` of a file already written to :meth:`part_file` (moved, not copied)."""
        try:
            with self._sending(upload_id) as folder:
                name = stored_name(client_name)
                part.rename(folder / name)
                return self._receive_stored(folder, upload_id, name, (folder / name).stat().st_size)
        finally:
            part.unlink(missing_ok=True)

    def part_file(self, upload_id: str) -> Path:
        """A new empty file in the upload's folder, to write a large body into (see :meth:`receive_file`)."""
        folder = self.root / str(_uuid(upload_id))
        if (folder / COMPLETED).exists():
            raise self._closed(upload_id)  # before the body is written, not after
        if self.shared is not None:  # an upload another node started has no folder here yet
            self._require(upload_id, UploadState.UPLOADING)
            folder.mkdir(exist_ok=True)
        try:
            fd, path = tempfile.mkstemp(dir=folder, prefix=".part-")
        except FileNotFoundError:
            self._require(upload_id, UploadState.UPLOADING)
            raise
        os.close(fd)
        return Path(path)

    def _receive(self, folder: Path, upload_id: str, client_name: str, stream: IO[bytes]) -> tuple[str, int]:
        head = stream.read(self.settings.uploads.in_memory_bytes + 1)
        if head[:4] not in ZIP_MAGIC and len(head) <= self.settings.uploads.in_memory_bytes:
            return self._receive_bytes(folder, upload_id, client_name, head)
        name = stored_name(client_name)
        size = self._store(folder, name, client_name, head, stream)
        return self._receive_stored(folder, upload_id, name, size)

    def _receive_bytes(
        self, folder: Path, upload_id: str, client_name: str, data: bytes | bytearray
    ) -> tuple[str, int]:
        name = stored_name(client_name)
        if data[:4] in ZIP_MAGIC:
            size = self._store(folder, name, client_name, data, io.BytesIO())
            return self._receive_stored(folder, upload_id, name, size)
        limit = self.settings.uploads.max_file_bytes
        if len(data) > limit:
            raise TooLarge(f"{client_name!r} is larger than {limit} bytes")
        _append(folder / RECEIVED, name)
        _append(folder / JOURNAL, self._ingest_bytes(name.split("_", 1)[-1], data, upload_id))
        return name, len(data)

    def _receive_stored(self, folder: Path, upload_id: str, name: str, size: int) -> tuple[str, int]:
        """Ingest a file stored in the folder (a zip: each member), then remove it."""
        label = name.split("_", 1)[-1]
        _append(folder / RECEIVED, name)
        try:
            lines = [
                refusal or self._ingest_one(member_label, path, upload_id)
                for member_label, path, refusal in self._open(folder / name, label)
            ]
        finally:
            (folder / name).unlink(missing_ok=True)  # the bytes are in the blob store now (or refused)
        _append(folder / JOURNAL, *lines)
        return name, size

    def _store(
        self, folder: Path, name: str, client_name: str, head: bytes | bytearray, stream: _Readable
    ) -> int:
        size = len(head)
        limit = self.settings.uploads.max_file_bytes
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".part-", delete=False) as out:
            try:
                out.write(head)
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"{client_name!r} is larger than {limit} bytes")
                    out.write(chunk)
                if size > limit:
                    raise TooLarge(f"{client_name!r} is larger than {limit} bytes")
            except BaseException:
                Path(out.name).unlink(missing_ok=True)
                raise
        Path(out.name).rename(folder / name)
        return size

    @contextmanager
    def _sending(self, upload_id: str) -> Iterator[Path]:
        """The folder of an upload that takes files, kept open until the files given are recorded.

        Each send holds a shared lock on the folder's :data:`LOCK` file; completion marks the folder
        (:data:`COMPLETED`), then takes the lock exclusively before it reads the journal (and keeps it
        until the folder is gone). A send that cannot have the lock, or finds the mark, or finds its lock
        file gone or replaced, stores nothing and is refused (409): every send is either in the upload's
        import or refused, whatever the HTTP process that completes it. The common case costs an open, a
        lock and two ``stat`` calls.
        """
        folder = self.root / str(_uuid(upload_id))
        if self.shared is not None:
            with self._sending_shared(upload_id, folder) as own:
                yield own
            return
        try:
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            self._require(upload_id, UploadState.UPLOADING)  # NotFound, or InvalidState naming the state
            raise self._closed(upload_id) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._closed(upload_id) from None
            if (folder / COMPLETED).exists() or not _same_file(fd, folder / LOCK):
                raise self._closed(upload_id)
            yield folder
        finally:
            os.close(fd)

    @contextmanager
    def _sending_shared(self, upload_id: str, folder: Path) -> Iterator[Path]:
        """:meth:`_sending` for nodes sharing the journal through the blob store (``_upload_journal``)."""
        assert self.shared is not None

        def is_open() -> bool:
            with reading(self.engine) as conn:
                current = rows.state_of(conn, upload_id)
            if current is None:
                raise NotFound(f"no upload {upload_id!r}")
            return current == UploadState.UPLOADING

        try:
            with self.shared.sending(upload_id, folder, is_open) as own:
                yield own
        except SendRefused:
            raise self._closed(upload_id) from None

    def _closed(self, upload_id: str) -> InvalidState:
        return InvalidState(
            f"upload {upload_id} is no longer open (being completed, completed or expired); "
            "this file was not stored: start a new upload to send it"
        )

    def _ingest_bytes(self, label: str, data: bytes | bytearray | memoryview, upload_id: str) -> str:
        """Ingest one instance given as bytes; the journal line saying what became of it."""
        try:
            chunk = data if isinstance(data, bytes) else memoryview(data)
            result = self._ingestor().ingest_bytes([chunk], self._sources[upload_id])
        except DicomflowError as exc:
            return _line(label, exc.code, exc.message)
        new = result.outcome is not Outcome.DUPLICATE
        return json.dumps({"file": label, "acquisition_id": result.acquisition_id, "new": new})

    def _ingest_one(self, label: str, path: Path, upload_id: str) -> str:
        """Ingest one file (mapped, not read, when larger than ``uploads.in_memory_bytes``); the journal
        line saying what became of it."""
        with _contents(path, self.settings.uploads.in_memory_bytes) as data:
            return self._ingest_bytes(label, data, upload_id)

    def _open(self, path: Path, label: str) -> Iterator[tuple[str, Path, str]]:
        """(label, file, "") for the file itself or each member of a zip; refused members come with the
        journal line saying why instead."""
        if not is_zip(path):
            yield label, path, ""
            return
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".zip-") as target:
            try:
                extracted = extract(path, Path(target), self.limits)
            except ArchiveRefused as exc:
                yield label, path, _line(label, "invalid-archive", str(exc))
                return
            for name, reason in extracted.refused:
                yield f"{label}:{name}", path, _line(f"{label}:{name}", "refused-archive-member", reason)
            for name, member in extracted.files:
                yield f"{label}:{name}", member, ""

    def _ingestor(self) -> Ingestor:
        with self._lock:
            if self._shared is None:
                self._shared = open_ingestor(self.settings)  # its own engine: commits synced in batches
            return self._shared

    def close(self) -> None:
        """Close the ingest (its blob store syncs what is pending)."""
        with self._lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None

    def complete(self, upload_id: str) -> Upload:
        """Close the upload and import it in the background; the state says when it is done."""
        folder = self.root / str(_uuid(upload_id))
        if folder.is_dir():
            (folder / COMPLETED).touch()  # from now on sends are refused (see _sending)
        with writing(self.engine) as conn:
            changed = rows.move_state(conn, upload_id, UploadState.UPLOADING, UploadState.IMPORTING)
        if not changed:
            current = self.get(upload_id)
            if current.state in (UploadState.IMPORTING, UploadState.IMPORTED):
                return current  # completing twice is harmless
            raise InvalidState(f"upload {upload_id} is {current.state}; it cannot be completed")
        threading.Thread(
            target=self._import, args=(upload_id,), name=f"upload-{upload_id[:8]}", daemon=True
        ).start()
        return self.get(upload_id)

    def resume(self) -> int:
        """At start: import again the uploads a stop interrupted (ingest is idempotent), and check the
        studies of imported uploads that a stop left unchecked."""
        with reading(self.engine) as conn:
            ids = rows.ids_in_state(conn, UploadState.IMPORTING)
            unchecked = uploaded_studies_unchecked(conn, [UploadState.IMPORTED.value])
        for upload_id in ids:
            threading.Thread(target=self._import, args=(upload_id,), daemon=True).start()
        for left in self.root.glob(f"{DONE}*"):  # removal cut short by a stop
            shutil.rmtree(left, ignore_errors=True)
        self._promote(unchecked)
        return len(ids)

    def expire(self) -> int:
        """Expire open uploads nobody sent to for ``uploads.expire_after``; their temp files are removed.

        Instances already ingested from an expired upload stay stored and indexed (nothing received is
        lost), but never enter processing: only a completed upload hands its studies over.
        """
        cutoff = time.time() - self.settings.uploads.expire_after
        with reading(self.engine) as conn:
            open_ids = rows.ids_in_state(conn, UploadState.UPLOADING)
        expired = 0
        for upload_id in [u for u in open_ids if self._last_activity(u) < cutoff]:
            with _exclusive(self.root / upload_id, wait=False) as held:
                if held is False:
                    continue  # a file is being stored right now: not abandoned
                with writing(self.engine) as conn:
                    changed = rows.move_state(conn, upload_id, UploadState.UPLOADING, UploadState.EXPIRED)
                if changed:
                    _remove(self.root / upload_id)
                    if self.shared is not None:
                        self.shared.remove(upload_id)
                    expired += 1
                    LOGGER.info("upload %s expired; its files were removed", upload_id)
        return expired

    # -- reading ------------------------------------------------------------------------------------------

    def get(self, upload_id: str) -> Upload:
        """One upload.

        Raises
        ------
        NotFound
            For an unknown id.
        """
        with reading(self.engine) as conn:
            found = rows.find(conn, upload_id)
            if found is None:
                raise NotFound(f"no upload {upload_id!r}")
            return self._info(conn, found)

    def all(self, project_ids: Sequence[int] | None = None) -> list[Upload]:
        """Uploads, newest first (of some projects only, when given)."""
        with reading(self.engine) as conn:
            return [self._info(conn, record) for record in rows.list_uploads(conn, project_ids)]

    def project(self, upload_id: str) -> tuple[int, str, str]:
        """(id, group, label) of the project an upload goes to, for access checks (it never changes)."""
        known = self._projects.get(upload_id)
        if known is None:
            with reading(self.engine) as conn:
                found = rows.destination(conn, upload_id)
            if found is None:
                raise NotFound(f"no upload {upload_id!r}")
            known = self._projects[upload_id] = (found.project_id, found.group, found.project)
        return known

    def project_id(self, upload_id: str) -> int:
        """The id of the project an upload goes to."""
        return self.project(upload_id)[0]

    def files(self, upload_id: str) -> list[str]:
        """Names of the files received by an upload still open (empty once it is completed)."""
        if self.get(upload_id).state != UploadState.UPLOADING:
            return []
        if self.shared is not None:
            return sorted(name for record in self.shared.records(upload_id) for name in record["received"])
        return sorted(_read_lines(self.root / upload_id / RECEIVED))

    def studies(self, upload_id: str) -> list[StudyInfo]:
        """The study versions the upload's import handed to the flow."""
        ids = set(self.get(upload_id).study_ids)
        with reading(self.engine) as conn:
            return [s for s in list_studies(conn, latest_only=False) if s.id in ids]

    def _info(self, conn: Any, row: rows.UploadRecord) -> Upload:
        open_ = row.state in (UploadState.UPLOADING, UploadState.IMPORTING)  # counts live in the journal
        study_ids = list(row.study_ids)
        uids: list[str] = []
        if study_ids:
            uids = sorted(
                {
                    s.study_instance_uid
                    for s in list_studies(conn, latest_only=False, detail=False)
                    if s.id in set(study_ids)
                }
            )
        return Upload(
            id=row.id,
            project=row.project,
            report_type=row.report_type,
            force_reprocessing=row.force_reprocessing,
            state=row.state,
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            expires_at=self._expiry(row),
            files_received=self._count(row.id, RECEIVED) if open_ else row.files_received,
            instances_imported=self._count(row.id, JOURNAL, '"acquisition_id"')
            if open_
            else row.instances_imported,
            errors=[UploadFileError(**e) for e in row.errors],
            summary_errors=list(row.summary_errors),
            study_instance_uids=uids,
            study_ids=study_ids,
        )

    def _count(self, upload_id: str, log: str, containing: str = "") -> int:
        if self.shared is not None:
            field = "received" if log == RECEIVED else "journal"
            records = self.shared.records(upload_id)
            return sum(1 for record in records for line in record[field] if containing in line)
        return sum(1 for line in _read_lines(self.root / upload_id / log) if containing in line)

    def _require(self, upload_id: str, state: UploadState) -> None:
        with reading(self.engine) as conn:
            current = rows.state_of(conn, upload_id)
        if current is None:
            raise NotFound(f"no upload {upload_id!r}")
        if current != state:
            raise InvalidState(f"upload {upload_id} is {current}; files are taken only while uploading")

    def _expiry(self, row: rows.UploadRecord) -> datetime:
        if row.state != UploadState.UPLOADING:
            return row.expires_at
        last = self._last_activity(row.id)
        return datetime.fromtimestamp(last, UTC) + self._lifetime() if last else row.expires_at

    def _last_activity(self, upload_id: str) -> float:
        if self.shared is not None:
            return self.shared.last_activity(upload_id)
        folder = self.root / upload_id
        marks = [p.stat().st_mtime for p in (folder, folder / RECEIVED) if p.exists()]
        return max(marks, default=0.0)

    def _lifetime(self) -> timedelta:
        return timedelta(seconds=self.settings.uploads.expire_after)

    # -- the import ---------------------------------------------------------------------------------------

    def _import(self, upload_id: str) -> None:
        try:
            self._run_import(upload_id)
        except Exception as exc:
            LOGGER.exception("import of upload %s failed", upload_id)
            with writing(self.engine) as conn:
                rows.fail(conn, upload_id, [f"import failed: {exc}"])

    def _run_import(self, upload_id: str) -> None:
        """Completion: once the sends under way are recorded (an exclusive lock of the folder: see
        :meth:`_sending`), read the journal of what every file became, hand the studies over, close."""
        folder = self.root / upload_id
        if self.shared is not None:
            self._run_shared_import(upload_id, folder)
            return
        with _exclusive(folder) as held:
            self._import_journal(upload_id, folder)
            if held:
                _remove(folder)  # before the lock goes: a send that gets it then finds no folder

    def _run_shared_import(self, upload_id: str, folder: Path) -> None:
        """Completion on a shared journal: wait for the sends in flight, gather every send's record into a
        local folder, import it as one journal, forget the shared one."""
        assert self.shared is not None
        self.shared.wait_for_sends(upload_id)
        gathered = folder / f"{DONE}gathered"
        shutil.rmtree(gathered, ignore_errors=True)
        gathered.mkdir(parents=True)
        records = self.shared.records(upload_id)
        _append(gathered / RECEIVED, *(name for record in records for name in record["received"]))
        _append(gathered / JOURNAL, *(line for record in records for line in record["journal"]))
        self._import_journal(upload_id, gathered)
        _remove(folder)
        try:
            self.shared.remove(upload_id)
        except StorageError:  # the upload is imported: its journal objects are left over, nothing else
            LOGGER.warning("upload %s: its journal could not be removed from the store", upload_id)

    def _import_journal(self, upload_id: str, folder: Path) -> None:
        upload = self.get(upload_id)
        errors: list[UploadFileError] = []
        sessions: dict[int, bool] = {}  # session id -> anything new stored
        imported = 0
        session_of: dict[int, int] = {}  # acquisition id -> session id
        with reading(self.engine) as conn:
            for entry in _read_lines(folder / JOURNAL):
                record = json.loads(entry)
                if "acquisition_id" not in record:
                    errors.append(
                        UploadFileError(file=record["file"], code=record["code"], message=record["message"])
                    )
                    continue
                imported += 1
                acquisition = record["acquisition_id"]
                if acquisition not in session_of:
                    session_of[acquisition] = session_of_acquisition(conn, acquisition)
                session = session_of[acquisition]
                sessions[session] = sessions.get(session, False) or record["new"]
        study_ids, fresh = self._hand_over(upload, sessions)
        summary = (
            [] if imported else ["No DICOM files found" + (" (every file was refused)" if errors else "")]
        )
        with writing(self.engine) as conn:
            rows.finish(
                conn,
                upload_id,
                state=UploadState.IMPORTED if imported else UploadState.FAILED,
                files_received=len(_read_lines(folder / RECEIVED)),
                instances_imported=imported,
                errors=[error.model_dump() for error in errors],
                summary_errors=summary,
                study_ids=study_ids,
            )
        LOGGER.info(
            "upload %s imported: %d instances, %d refused, %d studies",
            upload_id,
            imported,
            len(errors),
            len(study_ids),
        )
        self._promote(fresh)  # the import is over; each study's checks are the flow's next step

    def _promote(self, study_ids: Sequence[int]) -> None:
        for study_id in study_ids:
            try:
                self.flow.promote(study_id)
            except Exception:  # the upload stays imported; the next start checks the study again
                LOGGER.exception("checks of study %d failed to run", study_id)

    def _hand_over(self, upload: Upload, sessions: dict[int, bool]) -> tuple[list[int], list[int]]:
        """Each session's study enters the flow with the report type; unchanged finished ones are reused.

        Returns the upload's studies and, of them, those opened now (still to be checked and started).
        """
        names = [upload.report_type] if upload.report_type else []
        study_ids: list[int] = []
        fresh = []
        for session_id, anything_new in sessions.items():
            with reading(self.engine) as conn:
                latest = latest_study(conn, session_id)
            if (
                latest is not None
                and not anything_new
                and not upload.force_reprocessing
                and set(names) <= set(latest.report_types)
            ):
                study_ids.append(latest.id)  # the same data again: its results stand
            else:
                fresh.append(session_id)
        opened = []
        if fresh:
            opened = self.flow.request(
                fresh, names, actor=upload.created_by, upload_id=upload.id, promote=False
            )
        return study_ids + opened, opened


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Sources:
    """The ingest source of each upload (who and into which project), looked up once."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._known: dict[str, Source] = {}

    def __getitem__(self, upload_id: str) -> Source:
        if upload_id not in self._known:
            with reading(self.engine) as conn:
                row = rows.destination(conn, upload_id)
            if row is None:
                raise NotFound(f"no upload {upload_id!r}")
            prefix = self.settings.dimse.project_ae_prefix
            self._known[upload_id] = Source(
                "upload",
                f"{row.created_by} upload {upload_id}",
                called_ae=f"{prefix}{row.project}",
                project=(row.group, row.project),  # the upload's own project, even if its label is ambiguous
            )
        return self._known[upload_id]


def _adopt(legacy: Path, root: Path) -> None:
    """Move the upload folders a version before shared upload folders kept in the data directory."""
    if legacy == root or not legacy.is_dir():
        return
    for folder in legacy.iterdir():
        try:
            folder.rename(root / folder.name)
        except OSError as exc:
            LOGGER.warning("upload folder %s stays where it is: %s", folder, exc)
    with suppress(OSError):
        legacy.rmdir()


def _append(path: Path, *lines: str) -> None:
    """Append whole lines at once (O_APPEND: parallel writers never interleave within a line)."""
    if lines:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(line + "\n" for line in lines).encode())
        finally:
            os.close(fd)


@contextmanager
def _exclusive(folder: Path, *, wait: bool = True) -> Iterator[bool | None]:
    """Hold the folder's :data:`LOCK` exclusively (no send under way, none starting): True; False when
    ``wait`` is off and a send holds it; None when the folder is gone already."""
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _remove(folder: Path) -> None:
    """Remove an upload's folder: renamed away at once (a send then finds it gone), then deleted."""
    gone = folder.with_name(f"{DONE}{folder.name}")
    try:
        folder.rename(gone)
    except FileNotFoundError:
        return
    shutil.rmtree(gone, ignore_errors=True)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, renamed away or replaced)."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (found.st_ino, found.st_dev) == (mine.st_ino, mine.st_dev)


@contextmanager
def _contents(path: Path, in_memory: int) -> Iterator[bytes | memoryview]:
    """The bytes of a file: read when small, mapped (pages of the page cache, not the heap) when large."""
    size = path.stat().st_size
    if size <= in_memory or size == 0:
        yield path.read_bytes()
        return
    with path.open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    try:
        yield view
    finally:
        with suppress(BufferError):  # a slice still held elsewhere: the map goes with it
            view.release()
            mapped.close()


def _uuid(upload_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(upload_id)
    except ValueError:
        raise NotFound(f"no upload {upload_id!r}") from None


def _read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _line(label: str, code: str, message: str) -> str:
    return json.dumps({"file": label, "code": code, "message": message})


# -- the use cases ----------------------------------------------------------------------------------------


def start(
    app: Application,
    caller: Access | None,
    project: str,
    report_type: str | None,
    *,
    force_reprocessing: bool = False,
    user: str = "cli",
) -> Upload:
    """Open an upload into ``project`` (uploaders and admins of the project).

    Parameters
    ----------
    app
        The process's application.
    caller
        Whose rights apply; ``None`` for the local operator, who may upload anywhere.
    project
        Label of the project the data goes to.
    report_type
        Report type (or alias) to run on each study found; refused here, before any file, when unknown.
    force_reprocessing
        Process again even if the same data was processed.
    user
        Who starts it, when ``caller`` is ``None`` (else the caller's email).

    Raises
    ------
    NotFound
        No such project among the caller's.
    PermissionDenied
        The caller's role in the project does not allow uploads.
    """
    if caller is not None:
        project_of(app.engine, caller, project, UPLOAD, "upload")
        user = caller.user.email
    return app.uploads.start(project, report_type, force_reprocessing=force_reprocessing, user=user)


def check(app: Application, caller: Access | None, upload_id: str, action: str) -> None:
    """Raise unless the caller may ``action`` (``read``, ``send``, ``complete``) the upload.

    Cheap once per upload and process (its project is remembered), so the HTTP adapter calls it before it
    reads a body.

    Raises
    ------
    NotFound
        No such upload, or one in a project the caller does not belong to (the same answer).
    PermissionDenied
        The caller's role in the upload's project does not allow ``action``.
    """
    if caller is None:
        return
    _, group, label = app.uploads.project(upload_id)
    try:
        caller.check(group, label, UPLOAD if action != "read" else READ, f"{action} uploads")
    except NotFound:
        raise NotFound(f"no upload {upload_id!r}") from None


def add_files(
    app: Application, caller: Access | None, upload_id: str, files: Sequence[tuple[str, IO[bytes]]]
) -> list[ReceivedFile]:
    """Store and ingest the files of one request (each a DICOM file or a zip): all are taken, or none.

    The client's names are labels, never paths: each file is stored under a fresh safe name.

    Raises
    ------
    InvalidState
        The upload takes no more files (being completed, completed or expired): nothing was stored.
    TooLarge
        A file is over ``uploads.max_file_bytes``.
    """
    check(app, caller, upload_id, "send")
    stored = app.uploads.receive_many(upload_id, files)
    return [ReceivedFile(name=name, size=size) for name, size in stored]


def add_bytes(
    app: Application, caller: Access | None, upload_id: str, name: str, data: bytes | bytearray
) -> ReceivedFile:
    """:func:`add_files` of one file already in memory (one instance is ingested from it without a copy)."""
    check(app, caller, upload_id, "send")
    stored, size = app.uploads.receive_bytes(upload_id, name, data)
    return ReceivedFile(name=stored, size=size)


def new_part(app: Application, caller: Access | None, upload_id: str) -> Path:
    """A new empty file in the upload's folder to write a large body into, then give to :func:`add_part`.

    Raises
    ------
    InvalidState
        The upload takes no more files (checked before the body is written, not after).
    """
    check(app, caller, upload_id, "send")
    return app.uploads.part_file(upload_id)


def add_part(app: Application, caller: Access | None, upload_id: str, name: str, part: Path) -> ReceivedFile:
    """:func:`add_files` of one file written to :func:`new_part` (moved, not copied; removed in any case)."""
    try:
        check(app, caller, upload_id, "send")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    stored, size = app.uploads.receive_file(upload_id, name, part)
    return ReceivedFile(name=stored, size=size)


def complete(app: Application, caller: Access | None, upload_id: str) -> Upload:
    """Close the upload and import it in the background; its state says when it is done (twice: harmless).

    Raises
    ------
    InvalidState
        The upload failed or expired.
    """
    check(app, caller, upload_id, "complete")
    return app.uploads.complete(upload_id)


def get(app: Application, caller: Access | None, upload_id: str) -> Upload:
    """One upload: state, counts, per-file errors and studies.

    Raises
    ------
    NotFound
        No such upload among the caller's projects.
    """
    check(app, caller, upload_id, "read")
    return app.uploads.get(upload_id)


def list_uploads(app: Application, caller: Access | None, project: str | None = None) -> list[Upload]:
    """The uploads of the caller's projects (of project ``project`` only, when given), newest first."""
    found = [u for u in app.uploads.all() if project is None or u.project == project]
    if caller is None or caller.roles is None:
        return found
    roles = caller.roles
    return [
        u for u in found if any(caller.sees(group, u.project) for group, label in roles if label == u.project)
    ]


def received_files(app: Application, caller: Access | None, upload_id: str) -> list[str]:
    """The stored names of the files an open upload received (empty once it is completed)."""
    check(app, caller, upload_id, "read")
    return app.uploads.files(upload_id)


def studies(app: Application, caller: Access | None, upload_id: str) -> list[Study]:
    """Each study version the upload's import handed to the processing flow, with stage and jobs."""
    check(app, caller, upload_id, "read")
    return _schemas.studies(app.uploads.studies(upload_id))
