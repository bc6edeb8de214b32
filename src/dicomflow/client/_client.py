"""The SDK's client of the native API (``/api/v1``): uploads, studies in the flow, review and results."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from dicomflow.client._errors import error_from_response
from dicomflow.client._files import files_to_upload, label, safe_name
from dicomflow.client._types import OnSent
from dicomflow.errors import DicomflowError, ImportFailed, ServerUnreachable, StudyFailed, WaitTimeout
from dicomflow.schemas import (
    FileList,
    ReceivedFile,
    ReceivedFiles,
    ResultFile,
    Stage,
    Study,
    StudyReports,
    Upload,
    UploadState,
)

DEFAULT_URL = "http://127.0.0.1:8080"
API_PREFIX = "/api/v1"
_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)
_SEND_ATTEMPTS = 3  # a file whose request broke off is sent again (the server keeps identical copies once)
_CHUNK = 1 << 20
_IN_ONE_WRITE = 64 << 20


class Client:
    """A client of one dicomflow server's native API.

    Parameters
    ----------
    base_url
        The server's address, e.g. ``http://127.0.0.1:8080`` (``/api/v1`` is added unless it ends with it).
    token
        A bearer token (``dicomflow tokens create --user EMAIL``).
    http
        An ``httpx.Client`` to send requests with, used as is (FastAPI's ``TestClient`` in tests); by default
        the client makes its own and closes it in :meth:`close`.
    timeout
        Seconds per request of the client's own ``httpx.Client`` (not of an injected one).

    Every method raises the :mod:`dicomflow.errors` class named by the ``code`` of the API's error body
    (:class:`~dicomflow.errors.NotFound`, :class:`~dicomflow.errors.AuthenticationRequired`, …), and
    :class:`~dicomflow.errors.ServerUnreachable` when no answer came.
    """

    def __init__(
        self, base_url: str, token: str, *, http: httpx.Client | None = None, timeout: float = 60.0
    ) -> None:
        root = base_url.rstrip("/")
        self.api_url = root if root.endswith(API_PREFIX) else root + API_PREFIX
        self._headers = {"Authorization": f"Bearer {token}"}
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))

    def close(self) -> None:
        """Close the client's own ``httpx.Client`` (an injected one is left open)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- uploads ------------------------------------------------------------------------------------------

    def create_upload(
        self, project: str, report_type: str | None = None, force_reprocessing: bool = False
    ) -> Upload:
        """Open an upload into a project.

        Parameters
        ----------
        project
            Label of an existing project.
        report_type
            Report type (or alias) to run on every study the upload brings; ``None`` for none.
        force_reprocessing
            Process again even if the same data was processed before.

        Raises
        ------
        UnknownProject, NotFound
            No such project (or not visible to the token's user).
        UnknownReportType
            No such report type.
        """
        body = {"project": project, "report_type": report_type, "force_reprocessing": force_reprocessing}
        return self._model(Upload, self._request("POST", "/uploads", json=body))  # the server validates it

    def upload_files(
        self,
        upload_id: str,
        paths: Iterable[Path | str],
        *,
        parallel: int = 8,
        progress: bool | OnSent = False,
        root: Path | None = None,
    ) -> list[ReceivedFile]:
        """Send files to an open upload, one per request, ``parallel`` requests at a time.

        Parameters
        ----------
        upload_id
            The upload, in state uploading.
        paths
            Files (DICOM, or zips of DICOM).
        parallel
            Requests at once.
        progress
            ``True`` for a Rich progress bar on stderr, or a callback ``(path, size)`` called per file sent.
        root
            Files are labelled by their path below ``root`` (else by their name); labels are not paths on
            the server.

        Returns
        -------
        list[ReceivedFile]
            What the server stored, in the order of ``paths``.

        Raises
        ------
        DicomflowError
            The first failure; files not sent yet are not sent.
        """
        files = [Path(p) for p in paths]
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, not {parallel!r}")
        sizes = [path.stat().st_size for path in files]
        received: list[ReceivedFile | None] = [None] * len(files)
        with self._progress(len(files), sum(sizes), progress) as on_sent:

            def send(index: int) -> None:
                path = files[index]
                received[index] = self._send_file(upload_id, path, label(path, root) if root else path.name)
                on_sent(path, sizes[index])

            self._run_parallel(send, len(files), parallel)
        return [item for item in received if item is not None]

    def complete_upload(self, upload_id: str) -> Upload:
        """Close the upload; its import starts in the background (poll with :meth:`wait_for_import`).

        Raises
        ------
        InvalidState
            The upload is not in state uploading.
        """
        return self._model(Upload, self._request("POST", f"/uploads/{upload_id}/complete"))

    def get_upload(self, upload_id: str) -> Upload:
        """An upload with its state, counts, per-file errors and studies.

        Raises
        ------
        NotFound
            No such upload (or not visible to the token's user).
        """
        return self._model(Upload, self._request("GET", f"/uploads/{upload_id}"))

    def list_uploads(self, project: str | None = None) -> list[Upload]:
        """The uploads the token's user may see, newest first; only ``project``'s if given."""
        params = {"project": project} if project is not None else None
        return self._models(Upload, self._request("GET", "/uploads", params=params))

    def received_files(self, upload_id: str) -> list[str]:
        """Stored names of the files received and not yet imported."""
        return self._model(FileList, self._request("GET", f"/uploads/{upload_id}/files")).files

    def upload_dir(
        self,
        project: str,
        path: Path | str,
        report_type: str | None = None,
        *,
        parallel: int = 8,
        progress: bool | OnSent = True,
        force_reprocessing: bool = False,
    ) -> Upload:
        """Upload every file under a folder (hidden files and folders skipped) and complete the upload.

        Parameters
        ----------
        project
            Label of an existing project.
        path
            A folder (walked recursively; symbolic links are not followed) or one file; zips are welcome.
        report_type
            Report type (or alias) to run on each study found.
        parallel
            Requests at once.
        progress
            ``True`` for a Rich progress bar on stderr (the default), ``False`` for none, or a callback
            ``(path, size)`` called per file sent.
        force_reprocessing
            Process again even if the same data was processed before.

        Returns
        -------
        Upload
            The completed upload, importing (wait with :meth:`wait_for_import`).

        Raises
        ------
        ValueError
            ``path`` holds no file to send.
        DicomflowError
            As :meth:`create_upload` and :meth:`upload_files`; an upload left open by a failed send has its
            id in ``details["upload_id"]`` and expires on the server.
        """
        root = Path(path)
        files = files_to_upload(root)
        if not files:
            raise ValueError(f"no files to upload under {str(root)!r} (hidden files are skipped)")
        upload = self.create_upload(project, report_type, force_reprocessing)
        try:
            self.upload_files(upload.id, files, parallel=parallel, progress=progress, root=root)
        except DicomflowError as exc:
            exc.details.setdefault("upload_id", upload.id)
            raise
        return self.complete_upload(upload.id)

    def wait_for_import(self, upload_id: str, timeout: float = 600.0, poll: float = 1.0) -> Upload:
        """Wait until an upload's import has ended.

        Returns
        -------
        Upload
            The upload in state imported; per-file problems are in its ``errors``.

        Raises
        ------
        ImportFailed
            The upload ended failed or expired (its errors in the exception's details).
        WaitTimeout
            Still not imported after ``timeout`` seconds.
        """

        def ended(upload: Upload) -> bool:
            if upload.state in (UploadState.FAILED, UploadState.EXPIRED):
                raise ImportFailed(
                    f"upload {upload_id} {upload.state.value}: "
                    + ("; ".join(upload.summary_errors) or f"{len(upload.errors)} file error(s)"),
                    {
                        "upload_id": upload_id,
                        "state": upload.state.value,
                        "errors": [error.model_dump(mode="json") for error in upload.errors],
                        "summary_errors": list(upload.summary_errors),
                    },
                )
            return upload.state == UploadState.IMPORTED

        return self._wait(lambda: self.get_upload(upload_id), ended, timeout, poll, f"upload {upload_id}")

    def studies_for_upload(self, upload_id: str) -> list[Study]:
        """The study versions the upload's import handed to the processing flow."""
        return self._models(Study, self._request("GET", f"/uploads/{upload_id}/studies"))

    # -- studies, results, review -------------------------------------------------------------------------

    def get_study(self, study_instance_uid: str) -> Study:
        """The newest version of a study: stage, reason, history, findings and jobs.

        Raises
        ------
        NotFound
            No such study.
        """
        return self._model(Study, self._request("GET", f"/studies/{study_instance_uid}"))

    def results(self, study_instance_uid: str) -> list[ResultFile]:
        """The result files of a study's newest version."""
        return self._models(ResultFile, self._request("GET", f"/studies/{study_instance_uid}/results"))

    def reports_for_study(self, study_instance_uid: str) -> StudyReports:
        """A study (stage, findings, jobs) with the list of its result files."""
        study = self._request("GET", f"/studies/{study_instance_uid}").json()
        results = self._request("GET", f"/studies/{study_instance_uid}/results").json()
        return self._validate(StudyReports, {**study, "results": results})

    def wait_for_results(
        self,
        study_instance_uid: str,
        timeout: float = 3600.0,
        poll: float = 2.0,
        *,
        accept_review: bool = False,
        on_stage: Callable[[Study], None] | None = None,
    ) -> Study:
        """Wait until a study is Finished (or, with ``accept_review``, waits in QualityControl).

        Parameters
        ----------
        study_instance_uid
            The study (its newest version is followed).
        timeout, poll
            Seconds to wait at most, and between two looks.
        accept_review
            Also return when the study waits for review in QualityControl.
        on_stage
            Called with the study each time its stage is seen to change (and once at the start).

        Raises
        ------
        StudyFailed
            The study is Failed; its ``reason`` and ``findings`` are on the exception.
        WaitTimeout
            Neither after ``timeout`` seconds.
        """
        done = {Stage.FINISHED, Stage.QUALITY_CONTROL} if accept_review else {Stage.FINISHED}
        seen: list[Stage] = []

        def ended(study: Study) -> bool:
            if on_stage is not None and (not seen or seen[-1] != study.stage):
                on_stage(study)
            seen.append(study.stage)
            if study.stage == Stage.FAILED:
                raise StudyFailed(
                    f"study {study_instance_uid} failed: {study.reason}",
                    {
                        "study_instance_uid": study_instance_uid,
                        "version": study.version,
                        "reason": study.reason,
                        "findings": [finding.model_dump(mode="json") for finding in study.findings],
                    },
                )
            return study.stage in done

        def fetch() -> Study:
            return self.get_study(study_instance_uid)

        return self._wait(fetch, ended, timeout, poll, f"study {study_instance_uid}")

    def approve(self, study_instance_uid: str, comment: str = "") -> Study:
        """Approve a study waiting in QualityControl (→ Finished); reviewers and admins only.

        Raises
        ------
        InvalidState
            The study is not waiting for review.
        PermissionDenied
            The token's user is neither reviewer nor admin.
        """
        path = f"/studies/{study_instance_uid}/qc/approve"
        return self._model(Study, self._request("POST", path, json={"comment": comment}))

    def download_report_files(self, study_instance_uid: str, out_dir: Path | str) -> list[Path]:
        """Download every result file of a study into ``out_dir/<report type>/<name>``.

        Names are reduced to safe file names (no folders, no leading dot), so nothing is written outside
        ``out_dir``; each file is checked against the size and SHA-256 the server lists, written under a
        temporary name and renamed when complete.

        Returns
        -------
        list[Path]
            The files written, in the server's order.

        Raises
        ------
        DicomflowError
            A file's bytes do not match its listed size or SHA-256.
        """
        out = Path(out_dir)
        written: list[Path] = []
        for result in self.results(study_instance_uid):
            folder = out / safe_name(result.report_type, "results")
            target = folder / safe_name(result.name, f"result-{result.id}")
            if target in written:
                target = target.with_name(f"{result.id}-{target.name}")
            folder.mkdir(parents=True, exist_ok=True)
            self._download(result, target)
            written.append(target)
        return written

    # -- helpers ------------------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self._http.request(
                method, self.api_url + path, headers={**self._headers, **(headers or {})}, **kwargs
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"no answer from {self.api_url} to {method} {path}: {exc}", {"url": self.api_url}
            ) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    def _validate(self, model: type[_M], data: Any) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise DicomflowError(
                f"the server's answer is not a {model.__name__}: {exc}", {"errors": exc.errors()}
            ) from exc

    def _model(self, model: type[_M], response: httpx.Response) -> _M:
        return self._validate(model, response.json())

    def _models(self, model: type[_M], response: httpx.Response) -> list[_M]:
        try:
            return TypeAdapter(list[model]).validate_python(response.json())  # type: ignore[valid-type]  # a runtime type
        except ValidationError as exc:
            raise DicomflowError(
                f"the server's answer is not a list of {model.__name__}: {exc}", {"errors": exc.errors()}
            ) from exc

    def _send_file(self, upload_id: str, path: Path, name: str) -> ReceivedFile:
        for attempt in range(1, _SEND_ATTEMPTS + 1):
            try:
                with path.open("rb") as stream:
                    size = os.fstat(stream.fileno()).st_size
                    response = self._request(
                        "PUT",
                        f"/uploads/{upload_id}/files/{quote(name, safe='')}",
                        # a DICOM file goes in one write; a big zip is streamed, never read whole
                        content=stream.read() if size <= _IN_ONE_WRITE else stream,
                        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                    )
                break
            except ServerUnreachable:
                if attempt == _SEND_ATTEMPTS:
                    raise
                time.sleep(0.5 * attempt)
        received = self._validate(ReceivedFiles, response.json()).received
        if len(received) != 1:
            raise DicomflowError(f"{path}: the server stored {len(received)} files for one", {"file": name})
        return received[0]

    @staticmethod
    def _run_parallel(task: Callable[[int], None], count: int, parallel: int) -> None:
        """``task(i)`` for i in range(count), ``parallel`` at once; the first failure cancels the rest."""
        if count == 0:
            return
        failed = threading.Event()

        def guarded(index: int) -> None:
            if failed.is_set():  # a send failed: what is not sent yet stays unsent
                return
            try:
                task(index)
            except BaseException:
                failed.set()
                raise

        with ThreadPoolExecutor(
            max_workers=min(parallel, count), thread_name_prefix="dicomflow-upload"
        ) as pool:
            futures: list[Future[None]] = [pool.submit(guarded, i) for i in range(count)]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future in finished and (error := future.exception()) is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise error

    @staticmethod
    @contextmanager
    def _progress(files: int, nbytes: int, progress: bool | OnSent) -> Iterator[OnSent]:
        if callable(progress):
            yield progress
        elif progress:
            from dicomflow.client._progress import upload_bar

            with upload_bar(files, nbytes) as advance:
                yield advance
        else:
            yield _ignore

    def _download(self, result: ResultFile, target: Path) -> None:
        partial = target.with_name(f".{target.name}.partial")
        digest, size = hashlib.sha256(), 0
        try:
            with self._stream(f"/results/{result.id}/file") as response, partial.open("wb") as sink:
                for chunk in response.iter_bytes(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    sink.write(chunk)
            if (size, digest.hexdigest()) != (result.size, result.sha256):
                raise DicomflowError(
                    f"result {result.name!r} arrived with {size} bytes, SHA-256 {digest.hexdigest()}; "
                    f"the server lists {result.size} bytes, SHA-256 {result.sha256}",
                    {"result_id": result.id},
                )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    @contextmanager
    def _stream(self, path: str) -> Iterator[httpx.Response]:
        try:
            with self._http.stream("GET", self.api_url + path, headers=self._headers) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"no answer from {self.api_url} to GET {path}: {exc}") from exc

    @staticmethod
    def _wait(
        fetch: Callable[[], _T], ended: Callable[[_T], bool], timeout: float, poll: float, what: str
    ) -> _T:
        """Poll ``fetch`` until ``ended`` says so (or raises); a broken connection is tried again."""
        deadline = time.monotonic() + timeout
        last: _T | None = None
        while True:
            try:
                last = fetch()
            except ServerUnreachable:
                if last is None and time.monotonic() >= deadline:
                    raise
            else:
                if ended(last):
                    return last
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = _describe(last)
                now = f" (still {seen.get('state') or seen.get('stage')})" if seen else ""
                raise WaitTimeout(
                    f"{what}: not done after {timeout:g} s{now}", {"timeout": timeout, "last": seen}
                )
            time.sleep(min(poll, remaining))


def _describe(value: object) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", include={"state", "stage", "reason", "id", "version"})
    return {}


def _ignore(_path: Path, _size: int) -> None:
    """The progress callback of no progress display."""
