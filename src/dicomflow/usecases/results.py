"""Result files of a study's jobs: list them, download one, all of them as a zip, or copy them out."""

from __future__ import annotations

import io
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from dicomflow import schemas
from dicomflow.errors import NotFound, StorageError
from dicomflow.index import reading
from dicomflow.index.results import result_row, results_of_study
from dicomflow.index.studies import study_of_job
from dicomflow.storage import is_shared_key
from dicomflow.usecases import _schemas
from dicomflow.usecases.access import READ, Access
from dicomflow.usecases.studies import walled_study

if TYPE_CHECKING:
    from dicomflow.runtime import Application


@dataclass(frozen=True)
class ResultDownload:
    """One result file to send: its bytes open for reading (the receiver closes them), size, media type and
    the name to give it."""

    stream: IO[bytes]
    size: int
    media_type: str
    name: str


def open_result(app: Application, stored: str) -> tuple[IO[bytes], int]:
    """A result file's bytes, open for reading, and its size: from the shared blob store (any node), or for
    a result filed before results went there, from this node's data directory.

    Raises
    ------
    StorageError
        The file cannot be read.
    """
    if is_shared_key(stored):
        return app.store.open(stored), app.store.size(stored)
    path = app.settings.data_dir / stored
    try:
        return path.open("rb"), path.stat().st_size
    except OSError as exc:
        raise StorageError(f"cannot read result file {stored!r}: {exc}") from exc


def read_result(app: Application, stored: str) -> bytes:
    """A result file's bytes (see :func:`open_result`)."""
    if is_shared_key(stored):
        return app.store.get(stored)
    stream, _size = open_result(app, stored)
    with stream:
        return stream.read()


@dataclass(frozen=True)
class ResultsArchive:
    """Every result file of a study version as one zip, in folders by report type."""

    name: str
    content: bytes
    media_type: str = "application/zip"


def study_results(
    app: Application, caller: Access | None, study_instance_uid: str, version: int | None = None
) -> schemas.StudyReports:
    """The newest (or a given) version of a study with its result files.

    Raises
    ------
    NotFound
        No such study (version) in the caller's projects.
    """
    with reading(app.engine) as conn:
        study = walled_study(conn, caller, study_instance_uid, version, READ, "read it")
        return _schemas.study_reports(study, results_of_study(conn, study.id))


def result_file(app: Application, caller: Access | None, result_id: int) -> ResultDownload:
    """One result file, as the job wrote it.

    Raises
    ------
    NotFound
        No result with that id in the caller's projects.
    """
    with reading(app.engine) as conn:
        result = result_row(conn, result_id)
        if caller is not None:
            study = study_of_job(conn, result.job_id)
            if not caller.sees(study.group, study.project):
                raise NotFound(f"no result with id {result_id}")
    stream, size = open_result(app, result.path)
    return ResultDownload(stream, size, result.media_type, result.name)


def results_archive(
    app: Application, caller: Access | None, study_instance_uid: str, version: int | None = None
) -> ResultsArchive:
    """A zip of a study version's result files, in folders by report type.

    Raises
    ------
    NotFound
        No such study (version) in the caller's projects.
    """
    study = study_results(app, caller, study_instance_uid, version)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for result in study.results:
            archive.writestr(f"{result.report_type}/{result.name}", read_result(app, result.path))
    return ResultsArchive(f"{study_instance_uid}-v{study.version}-results.zip", buffer.getvalue())


def copy_results(
    app: Application,
    caller: Access | None,
    study_instance_uid: str,
    folder: Path,
    version: int | None = None,
) -> list[Path]:
    """Copy a study version's result files into ``folder``, in folders by report type; the files written.

    Raises
    ------
    NotFound
        No such study (version) in the caller's projects.
    OSError
        ``folder`` cannot be written.
    """
    written = []
    for result in study_results(app, caller, study_instance_uid, version).results:
        target = folder / result.report_type / result.name
        target.parent.mkdir(parents=True, exist_ok=True)
        stream, _size = open_result(app, result.path)
        with stream, target.open("wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        written.append(target)
    return written
