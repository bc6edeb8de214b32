"""``dicomflow send`` (C-STORE to any node) and ``dicomflow import`` (local folder or zip into the index)."""

from __future__ import annotations

import contextlib
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dicomflow.cli._console import stderr
from dicomflow.cli._options import DataDir, load_settings

if TYPE_CHECKING:
    from rich.progress import Progress

    from dicomflow.runtime import Application


@contextlib.contextmanager
def collected_files(paths: list[Path]) -> Iterator[list[Path]]:
    """Every regular file under ``paths``; zips are extracted (safely) to a temporary folder first."""
    with contextlib.ExitStack() as stack:
        files: list[Path] = []
        for path in paths:
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()))
            elif zipfile.is_zipfile(path):
                target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dicomflow-zip-")))
                files.extend(extract_zip(path, target))
            elif path.is_file():
                files.append(path)
            else:
                raise typer.BadParameter(f"{path} is neither a file nor a folder")
        yield files


def extract_zip(archive: Path, target: Path) -> list[Path]:
    """Extract the regular members of ``archive`` into ``target`` with the uploads' safe extraction."""
    from dicomflow.uploads import ArchiveRefused, extract

    try:
        extracted = extract(archive, target)
    except ArchiveRefused as exc:
        raise typer.BadParameter(f"{archive}: {exc}") from exc
    for name, reason in extracted.refused:
        stderr().print(f"[yellow]skipped zip member {name!r}: {reason}")
    return [path for _, path in extracted.files]


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        transient=False,
    )


def _summary(
    title: str,
    counts: Counter[str],
    failures: list[tuple[Path, str]],
    warnings: Sequence[tuple[Path, str]] = (),
) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("status")
    table.add_column("files", justify="right")
    for name, count in sorted(counts.items()):
        table.add_row(name, str(count))
    stderr().print(table)
    _listed(warnings, "warning", "yellow")
    _listed(failures, "", "red")


def _listed(outcomes: Sequence[tuple[Path, str]], prefix: str, style: str) -> None:
    """One line per reason: ``reason: 120 files (first: path)``, or ``path: reason`` when it is one file."""
    by_reason: dict[str, list[Path]] = {}
    for path, why in outcomes:
        by_reason.setdefault(f"{prefix} {why}".strip(), []).append(path)
    for shown, (why, paths) in enumerate(by_reason.items()):
        if shown == 50:
            stderr().print(f"... and {len(by_reason) - 50} more reasons")
            break
        if len(paths) == 1:
            stderr().print(f"[{style}]{paths[0]}[/{style}]: {why}", highlight=False)
        else:
            stderr().print(
                f"[{style}]{why}[/{style}]: {len(paths)} files (first: {paths[0]})", highlight=False
            )


def send(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders (recursive) or zip files.")],
    host: Annotated[str, typer.Option(help="Peer host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Peer port.")] = 11112,
    calling_ae: Annotated[
        str, typer.Option(help="Our AE title (kp-<dataset> picks a dataset).")
    ] = "DICOMFLOW-SCU",
    called_ae: Annotated[
        str, typer.Option(help="Peer AE title (kp-<project> picks a project).")
    ] = "DICOMFLOW",
    associations: Annotated[int, typer.Option(help="Parallel associations.")] = 1,
) -> None:
    """Send DICOM files with C-STORE; exits non-zero if any file was not stored."""
    from dicomflow.dimse import describe, probe
    from dicomflow.dimse import send as send_items
    from dicomflow.errors import ServerUnreachable

    unreachable = probe(host, port)
    if unreachable:
        raise ServerUnreachable(f"{unreachable}; nothing was sent")
    with collected_files(paths) as files:
        described = [(path, describe(path)) for path in files]
        items = [item for _path, item in described if item is not None]
        skipped = [path for path, item in described if item is None]
        with _progress() as progress:
            task = progress.add_task("sending", total=len(items))
            report = send_items(
                items,
                host,
                port,
                calling_ae=calling_ae,
                called_ae=called_ae,
                associations=associations,
                on_done=lambda _path, _status: progress.advance(task),
            )
    for path in skipped:
        report.add(path, "not DICOM")
    _summary(f"sent to {called_ae}@{host}:{port}", report.counts, report.failures, report.warnings)
    raise typer.Exit(0 if report.ok and items else 1)


def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders (recursive) or zip files.")],
    data_dir: DataDir = None,
    project: Annotated[str | None, typer.Option(help="Put everything in this existing project.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Add every series to this dataset.")] = None,
    report_type: Annotated[
        list[str] | None,
        typer.Option(
            "--report-type", help="Run this report type on the imported studies and wait (repeatable)."
        ),
    ] = None,
) -> None:
    """Import DICOM files from disk through the same ingest as the receiver; exits non-zero on failures.

    With ``--report-type`` the imported studies go through the whole flow here (checks, jobs, results) and
    the command waits until each is Finished, Failed or waiting in QualityControl.
    """
    from dicomflow.errors import DicomflowError
    from dicomflow.runtime import open_application
    from dicomflow.usecases import receive

    settings = load_settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    application = open_application(settings)
    try:
        prefix = settings.dimse.project_ae_prefix
        if project is not None and not receive.project_exists(application, project):
            raise typer.BadParameter(f"no project named {project!r}", param_hint="--project")
        source = receive.Source(
            "import-flow" if report_type else "import",  # with report types, this command starts the flow
            "cli",
            calling_ae=f"{prefix}{dataset}" if dataset else None,
            called_ae=f"{prefix}{project}" if project else None,
        )
        counts: Counter[str] = Counter()
        failures: list[tuple[Path, str]] = []
        acquisitions: set[int] = set()
        if report_type:
            _check_report_types(application, report_type)
        with collected_files(paths) as files, _progress() as progress:
            task = progress.add_task("importing", total=len(files))
            for path in files:
                try:
                    result = receive.receive_file(application, path, source)
                    counts[str(result.outcome)] += 1
                    acquisitions.add(result.acquisition_id)
                except DicomflowError as exc:
                    counts[exc.code] += 1
                    failures.append((path, exc.message))
                progress.advance(task)
        _summary("imported", counts, failures)
        if report_type and acquisitions:
            ended = _process(application, receive.sessions_of(application, acquisitions), report_type)
            raise typer.Exit(1 if failures or any(stage == "Failed" for stage in ended) else 0)
        raise typer.Exit(1 if failures else 0)
    finally:
        application.close()


def _check_report_types(application: Application, names: list[str]) -> None:
    from dicomflow.errors import UnknownReportType

    for name in names:
        try:
            application.registry.get(name)
        except UnknownReportType as exc:
            raise typer.BadParameter(exc.message, param_hint="--report-type") from exc


def _process(application: Application, sessions: list[int], report_types: list[str]) -> list[str]:
    """Run the flow on the imported sessions until they end; print each study's stage and reason."""
    from dicomflow.usecases.jobs import process_here

    with stderr().status(f"processing {len(sessions)} study(ies) with {', '.join(report_types)}"):
        studies = process_here(application, sessions, report_types, actor="cli import")
    for study in studies:
        typer.echo(f"{study.study_instance_uid}: {study.stage}: {study.reason}")
    return [study.stage for study in studies]


def register(app: typer.Typer) -> None:
    """Add ``send`` and ``import`` to the command line."""
    app.command("send")(send)
    app.command("import")(import_)
