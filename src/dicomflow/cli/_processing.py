"""Processing commands: ``status``, ``jobs``, ``reprocess``, ``qc list|approve|reject``, ``results``,
``rules add|list|delete`` and ``report-types``. Each calls one use case of :mod:`dicomflow.usecases` as the
local operator (who sees every project); the index is used in short transactions, so they work while
``dicomflow serve`` runs (which then picks up what they queue)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dicomflow.cli._options import DataDir, load_settings, require_index
from dicomflow.flow import JobState, Stage

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.table import Column, Table

    from dicomflow.runtime import Application

STAGE_STYLE = {
    "Finished": "green",
    "Failed": "red",
    "QualityControl": "yellow",
    "Processing": "cyan",
    "Importing": "blue",
    "Uploading": "blue",
}


def register(app: typer.Typer) -> None:
    """Add the processing commands to ``app``."""
    app.command("status")(status)
    app.command("jobs")(jobs)
    app.command("reprocess")(reprocess)
    app.command("results")(results)
    app.command("report-types")(report_types)
    qc = typer.Typer(help="Review results waiting in QualityControl.", no_args_is_help=True)
    qc.command("list")(qc_list)
    qc.command("approve")(qc_approve)
    qc.command("reject")(qc_reject)
    app.add_typer(qc, name="qc")
    rules = typer.Typer(
        help="Project rules: run a report type on new studies whose tags match.", no_args_is_help=True
    )
    rules.command("add")(rules_add)
    rules.command("list")(rules_list)
    rules.command("delete")(rules_delete)
    app.add_typer(rules, name="rules")


@contextmanager
def _application(data_dir: Path | None) -> Iterator[Application]:
    """The application of the data directory, which must hold an index already (closed on the way out)."""
    from dicomflow.runtime import open_application

    settings = load_settings(data_dir)
    require_index(settings)
    with _usage_errors():
        application = open_application(settings)
    try:
        with _usage_errors():
            yield application
    finally:
        application.close()


@contextmanager
def _usage_errors() -> Iterator[None]:
    """A ``ValueError`` (an index newer than this version, a stage change the flow refuses) is a usage
    error, as where the index is opened alone."""
    try:
        yield
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _json(models: Sequence[BaseModel]) -> str:
    return json.dumps([m.model_dump() for m in models], indent=2, default=str)


def status(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    stage: Annotated[
        Stage | None, typer.Option(help="Only studies in this stage.", case_sensitive=False)
    ] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Every version, not the newest.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print studies with history, findings and jobs.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """List studies with their stage, reason, findings and jobs."""
    from dicomflow.usecases.studies import list_studies

    with _application(data_dir) as application:
        studies = list_studies(application, None, project=project, stage=stage, latest_only=not all_versions)
    if as_json:
        typer.echo(_json(studies))
        return
    if not studies:
        typer.echo("no studies")
        return
    from rich.table import Column, Table

    place = Column("project / subject / session", overflow="fold")
    table = Table(_uid_column("study"), "v", place, "stage", "reason", "jobs", "findings")
    for s in studies:
        jobs_text = ", ".join(f"{j.report_type}:{j.state}" for j in s.jobs) or "-"
        table.add_row(
            s.study_instance_uid,
            str(s.version),
            f"{s.project} / {s.subject} / {s.session}",
            f"[{STAGE_STYLE.get(s.stage, '')}]{s.stage}[/]",
            s.reason,
            jobs_text,
            "\n".join(f"{f.severity}: {f.message}" for f in s.findings) or "-",
        )
    _print_table(table)


def _uid_column(header: str) -> Column:
    """A column that never shortens its UIDs: other commands take them whole."""
    from rich.table import Column

    return Column(header, no_wrap=True, overflow="fold")


def _print_table(table: Table) -> None:
    """On a terminal as wide as the whole UIDs need; elsewhere unwrapped, so ``grep`` sees whole lines."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console()
    if not console.is_terminal:
        Console(width=10_000).print(table)
        return
    needed = Measurement.get(console, console.options.update_width(10_000), table).minimum
    Console(width=max(console.width, needed)).print(table)


def jobs(
    state: Annotated[
        JobState | None, typer.Option(help="Only jobs in this state.", case_sensitive=False)
    ] = None,
    log: Annotated[int | None, typer.Option(help="Print the log of this job's newest attempt.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List jobs (newest first), or print one job's log."""
    from dicomflow.usecases.jobs import job_log, list_jobs

    with _application(data_dir) as application:
        if log is not None:
            text = job_log(application, None, log)
            typer.echo(f"job {log} has no log yet" if text is None else text)
            return
        found = list_jobs(application, None, state)
    if as_json:
        typer.echo(_json(found))
        return
    from rich.table import Table

    table = Table("id", _uid_column("study"), "report type", "state", "attempts", "error")
    for j in found:
        table.add_row(
            str(j.id),
            j.study_instance_uid,
            f"{j.report_type} v{j.report_version}",
            j.state,
            f"{j.attempts}/{j.max_attempts}",
            j.error,
        )
    _print_table(table)


def reprocess(
    study_instance_uid: Annotated[str, typer.Argument(help="StudyInstanceUID of the study.")],
    report_type: Annotated[
        list[str] | None,
        typer.Option(
            "--report-type", help="Run this report type (repeatable); default: those requested before."
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run a study's report types again (force_reprocessing): checks, then fresh jobs."""
    from dicomflow.usecases.reprocess import reprocess as run_again

    with _application(data_dir) as application:
        study = run_again(application, None, study_instance_uid, report_type or [], actor="cli")
    if study.stage is Stage.FAILED:  # the new run's checks blocked it
        typer.echo(f"study {study_instance_uid} Failed its checks: {study.reason}")
        raise typer.Exit(1)
    typer.echo(f"study {study_instance_uid} queued for reprocessing")


def qc_list(data_dir: DataDir = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Studies waiting for review."""
    from dicomflow.usecases.review import waiting_for_review

    with _application(data_dir) as application:
        waiting = waiting_for_review(application, None)
    if as_json:
        typer.echo(_json(waiting))
        return
    for s in waiting:
        typer.echo(
            f"{s.study_instance_uid}  {s.project}/{s.subject}/{s.session}  {', '.join(s.report_types)}"
        )
    if not waiting:
        typer.echo("nothing waits for review")


Reviewer = Annotated[str, typer.Option(help="Who reviews (recorded in the event log).")]


def qc_approve(
    study_instance_uid: Annotated[str, typer.Argument()],
    reviewer: Reviewer,
    comment: Annotated[str, typer.Option(help="Optional note.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Approve a study's results: QualityControl → Finished."""
    from dicomflow.usecases.review import approve

    with _application(data_dir) as application:
        approve(application, None, study_instance_uid, comment=comment, actor=reviewer)
    typer.echo(f"study {study_instance_uid} approved: Finished")


def qc_reject(
    study_instance_uid: Annotated[str, typer.Argument()],
    reviewer: Reviewer,
    comment: Annotated[str, typer.Option(help="Why (required).")],
    rerun: Annotated[
        bool, typer.Option(help="Run the report types again instead of failing the study.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Reject a study's results: QualityControl → Failed (or → Processing with --rerun)."""
    from dicomflow.usecases.review import reject

    with _application(data_dir) as application:
        reject(application, None, study_instance_uid, comment=comment, rerun=rerun, actor=reviewer)
    typer.echo(f"study {study_instance_uid} rejected" + (": running again" if rerun else ": Failed"))


def results(
    study_instance_uid: Annotated[str, typer.Argument()],
    download: Annotated[Path | None, typer.Option(help="Copy every result file into this folder.")] = None,
    version: Annotated[int | None, typer.Option(help="Study version (default: newest).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """List a study's result files, or download them."""
    from dicomflow.usecases.results import copy_results, study_results

    with _application(data_dir) as application:
        if download is not None:
            written = copy_results(application, None, study_instance_uid, download, version)
            typer.echo(f"{len(written)} file(s) written to {download}")
            return
        study = study_results(application, None, study_instance_uid, version)
    if as_json:
        typer.echo(_json(study.results))
        return
    typer.echo(f"study {study_instance_uid} v{study.version}: {study.stage}")
    for r in study.results:
        typer.echo(f"  {r.id:>5}  {r.report_type:<16} {r.name:<32} {r.media_type:<24} {r.size} B")


def report_types(data_dir: DataDir = None) -> None:
    """The installed report types and aliases."""
    from dicomflow.schemas import ReportType
    from dicomflow.usecases.report_types import installed_report_types

    for entry in installed_report_types(load_settings(data_dir)):
        if isinstance(entry, ReportType):
            inputs = ", ".join(f"{k}: {v}" for k, v in entry.inputs.items())
            qc = "  (QC)" if entry.requires_qc else ""
            typer.echo(f"{entry.name} v{entry.version}{qc}  {entry.title}  inputs: {inputs}")
        else:
            typer.echo(f"{entry.alias} -> {entry.name}")


def rules_add(
    project: Annotated[str, typer.Argument(help="Project label.")],
    report_type: Annotated[str, typer.Argument(help="Report type to run.")],
    match: Annotated[
        list[str] | None, typer.Option(help="KEYWORD=REGEX a new study's tag must match (repeatable).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run REPORT_TYPE on new studies of PROJECT whose tags match."""
    from dicomflow.usecases.rules import add_rule

    pairs = dict(_pair(m) for m in match or [])
    with _application(data_dir) as application:
        rule = add_rule(application, project, report_type, pairs)
    typer.echo(f"rule {rule.id}: {project}: {report_type} on {pairs or 'every new study'}")


def rules_list(data_dir: DataDir = None) -> None:
    """Every project rule."""
    from dicomflow.usecases.rules import list_rules

    with _application(data_dir) as application:
        for rule in list_rules(application, None):
            typer.echo(f"{rule.id}  {rule.project}  {rule.report_type}  {rule.match or 'every new study'}")


def rules_delete(rule_id: Annotated[int, typer.Argument()], data_dir: DataDir = None) -> None:
    """Remove a project rule."""
    from dicomflow.usecases.rules import delete_rule

    with _application(data_dir) as application:
        delete_rule(application, rule_id)
    typer.echo(f"rule {rule_id} deleted")


def _pair(text: str) -> tuple[str, str]:
    keyword, sep, pattern = text.partition("=")
    if not sep or not keyword:
        raise typer.BadParameter(f"{text!r} is not KEYWORD=REGEX", param_hint="--match")
    return keyword.strip(), pattern
