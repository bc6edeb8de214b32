"""``dicomflow upload``: send a folder to a server's native API, follow its import and, with ``--wait``, its
studies through processing and review; ``--download`` fetches the result files. Uses the SDK only, so it works
against any server it can reach (no data directory here)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dicomflow.cli._console import stderr

if TYPE_CHECKING:  # the SDK imports httpx: the command imports it when it runs, so --help stays quick
    from dicomflow.client import Client, Study, Upload

DEFAULT_URL = "http://127.0.0.1:8080"  # dicomflow.client.DEFAULT_URL
_MAX_LISTED = 50


def upload(
    directory: Annotated[
        Path,
        typer.Argument(help="Folder to send (recursive; hidden files skipped), or one file; zips welcome."),
    ],
    project: Annotated[str, typer.Option(help="Label of the project the data goes to.")],
    report_type: Annotated[
        str | None, typer.Option("--report-type", help="Report type to run on each study found.")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="Wait until each study is Finished (through review) or Failed."
        ),
    ] = False,
    download: Annotated[
        Path | None,
        typer.Option(help="Write each study's result files to OUT/<StudyInstanceUID>/ (implies --wait)."),
    ] = None,
    url: Annotated[str, typer.Option(envvar="DICOMFLOW_URL", help="The server.")] = DEFAULT_URL,
    token: Annotated[
        str,
        typer.Option(envvar="DICOMFLOW_TOKEN", help="Bearer token (`dicomflow tokens create --user EMAIL`)."),
    ] = "",
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait in all for the import and, with --wait, the results.")
    ] = 3600.0,
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Files sent at once.")] = 8,
) -> None:
    """Upload DICOM files through the API, wait for their import and list per-file errors.

    Exits 1 if the import failed or refused a file, a study ended Failed (its reason and findings are
    printed), or a wait ran out of time.
    """
    from dicomflow.client import Client, ImportFailed

    if not token:
        raise typer.BadParameter(
            "a token is needed (or DICOMFLOW_TOKEN); create one with `dicomflow tokens create --user EMAIL`",
            param_hint="--token",
        )
    deadline = time.monotonic() + timeout
    ok = True
    with Client(url, token) as client:
        try:
            started = client.upload_dir(project, directory, report_type, parallel=parallel, progress=True)
            stderr().print(f"upload {started.id}: {started.files_received} file(s) sent, importing")
            imported = client.wait_for_import(started.id, timeout=_left(deadline), poll=0.5)
            ok = _report_import(imported)
            studies = client.studies_for_upload(imported.id)
            for study in studies:
                stderr().print(f"study {study.study_instance_uid} v{study.version}: {study.stage.value}")
            if wait or download is not None:
                for study in studies:
                    ok = _follow(client, study, deadline, download) and ok
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="DIRECTORY") from exc
        except ImportFailed as exc:
            _print_file_errors(exc.errors, exc.summary_errors)
            stderr().print(f"[red]import failed[/red]: {exc.message}")
            raise typer.Exit(1) from exc
    raise typer.Exit(0 if ok else 1)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _report_import(upload: Upload) -> bool:
    """Print what the import did; False if it refused any file."""
    _print_file_errors([e.model_dump() for e in upload.errors], upload.summary_errors)
    studies = len(upload.study_instance_uids)
    stderr().print(
        f"imported {upload.instances_imported} instance(s) of {upload.files_received} file(s) "
        f"into {studies} stud{'y' if studies == 1 else 'ies'}"
        + (f"; [red]{len(upload.errors)} file(s) refused[/red]" if upload.errors else "")
    )
    return not upload.errors and not upload.summary_errors


def _print_file_errors(errors: Sequence[Mapping[str, Any]], summary: Sequence[str]) -> None:
    for line in summary:
        stderr().print(f"[red]{line}[/red]")
    for error in errors[:_MAX_LISTED]:
        stderr().print(f"[red]{error.get('file')}[/red]: {error.get('code')}: {error.get('message')}")
    if len(errors) > _MAX_LISTED:
        stderr().print(f"... and {len(errors) - _MAX_LISTED} more")


def _follow(client: Client, study: Study, deadline: float, download: Path | None) -> bool:
    """Wait for one study to end; print its failure; download its results. False if it failed."""
    from dicomflow.client import Stage, StudyFailed, safe_name

    uid = study.study_instance_uid
    shown: list[Stage] = [Stage.PROCESSING if study.stage == Stage.QUALITY_CONTROL else study.stage]

    def on_stage(seen: Study) -> None:
        if seen.stage in (shown[-1], Stage.FINISHED, Stage.FAILED):
            return  # listed already, or told below
        shown.append(seen.stage)
        if seen.stage == Stage.QUALITY_CONTROL:
            stderr().print(
                f"study {uid}: waiting for review in QualityControl "
                f"(`dicomflow qc approve {uid}` or POST /api/v1/studies/{uid}/qc/approve)"
            )
        else:
            stderr().print(f"study {uid}: {seen.stage.value}")

    try:
        finished = client.wait_for_results(uid, timeout=_left(deadline), poll=1.0, on_stage=on_stage)
    except StudyFailed as exc:
        stderr().print(f"[red]study {uid} Failed[/red]: {exc.reason}")
        for finding in exc.findings:
            stderr().print(f"  {finding.get('severity')} {finding.get('code')}: {finding.get('message')}")
        return False
    stderr().print(f"[green]study {uid} Finished[/green] (v{finished.version})")
    if download is not None:
        written = client.download_report_files(uid, download / safe_name(uid))
        for path in written:
            stderr().print(f"  {path}")
        stderr().print(f"{len(written)} result file(s) written to {download / safe_name(uid)}")
    return True
