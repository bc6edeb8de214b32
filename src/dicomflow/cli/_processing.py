"""Processing commands: ``status``, ``jobs``, ``reprocess``, ``qc list|approve|reject``, ``results``,
``rules add|list|delete`` and ``report-types``. Each opens the index for short transactions, so they work
while ``dicomflow serve`` runs (which then picks up what they queue)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from dicomflow.cli._admin import opened_index
from dicomflow.cli._options import DataDir, load_settings
from dicomflow.flow import JobState, Stage

if TYPE_CHECKING:
    from dicomflow.config import Settings

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
def _flow(data_dir: Path | None) -> Iterator[tuple[Settings, Any]]:
    from dicomflow.jobs import Flow
    from dicomflow.pipelines import load_report_types
    from dicomflow.storage import FileSystemBlobStore

    settings = load_settings(data_dir)
    with opened_index(data_dir) as engine:
        processing = settings.processing
        registry = load_report_types(processing.plugins, processing.aliases, processing.options)
        store = FileSystemBlobStore(settings.blob_root, fsync=settings.storage.fsync)
        try:
            yield settings, Flow(settings, engine, store, registry)
        finally:
            store.close()


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


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
    from dicomflow.index import reading
    from dicomflow.index.studies import list_studies, project_id_by_label

    with opened_index(data_dir) as engine, reading(engine) as conn:
        if project is not None:
            project_id_by_label(conn, project)  # an unknown project is an error, not an empty list
        studies = list_studies(
            conn, project=project, stage=stage and stage.value, latest_only=not all_versions
        )
    if as_json:
        typer.echo(_json([asdict(s) for s in studies]))
        return
    if not studies:
        typer.echo("no studies")
        return
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
    return Column(header, no_wrap=True, overflow="fold")


def _print_table(table: Table) -> None:
    """On a terminal as wide as the whole UIDs need; elsewhere unwrapped, so ``grep`` sees whole lines."""
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
    from dicomflow.index import reading
    from dicomflow.index.jobs import job_row, list_jobs

    settings = load_settings(data_dir)
    with opened_index(data_dir) as engine, reading(engine) as conn:
        if log is not None:
            job = job_row(conn, log)
            from dicomflow.jobs import job_workdir

            path = job_workdir(settings, job.id, max(job.attempts, 1)) / "job.log"
            typer.echo(path.read_text() if path.is_file() else f"job {log} has no log yet")
            return
        found = list_jobs(conn, state=state and state.value)
    if as_json:
        typer.echo(_json([asdict(j) for j in found]))
        return
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
    from dicomflow.index import reading
    from dicomflow.index.studies import study_row

    with _flow(data_dir) as (_, flow):
        study_id = flow.reprocess(study_instance_uid, report_type or [], actor="cli")
        with reading(flow.engine) as conn:
            study = study_row(conn, study_id)
    if study.stage == Stage.FAILED.value:  # the new run's checks blocked it
        typer.echo(f"study {study_instance_uid} Failed its checks: {study.reason}")
        raise typer.Exit(1)
    typer.echo(f"study {study_instance_uid} queued for reprocessing")


def qc_list(data_dir: DataDir = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Studies waiting for review."""
    from dicomflow.index import reading
    from dicomflow.index.studies import list_studies

    with opened_index(data_dir) as engine, reading(engine) as conn:
        waiting = list_studies(conn, stage=Stage.QUALITY_CONTROL.value)
    if as_json:
        typer.echo(_json([asdict(s) for s in waiting]))
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
    with _flow(data_dir) as (_, flow):
        flow.review(study_instance_uid, approve=True, reviewer=reviewer, comment=comment)
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
    with _flow(data_dir) as (_, flow):
        flow.review(study_instance_uid, approve=False, reviewer=reviewer, comment=comment, rerun=rerun)
    typer.echo(f"study {study_instance_uid} rejected" + (": running again" if rerun else ": Failed"))


def results(
    study_instance_uid: Annotated[str, typer.Argument()],
    download: Annotated[Path | None, typer.Option(help="Copy every result file into this folder.")] = None,
    version: Annotated[int | None, typer.Option(help="Study version (default: newest).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """List a study's result files, or download them."""
    from dicomflow.index import reading
    from dicomflow.index.results import results_of_study
    from dicomflow.index.studies import find_study

    settings = load_settings(data_dir)
    with opened_index(data_dir) as engine, reading(engine) as conn:
        study = find_study(conn, study_instance_uid, version)
        found = results_of_study(conn, study.id)
    if download is not None:
        for r in found:
            target = download / r.report_type / r.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(settings.data_dir / r.path, target)
        typer.echo(f"{len(found)} file(s) written to {download}")
    elif as_json:
        typer.echo(_json([asdict(r) for r in found]))
    else:
        typer.echo(f"study {study_instance_uid} v{study.version}: {study.stage}")
        for r in found:
            typer.echo(f"  {r.id:>5}  {r.report_type:<16} {r.name:<32} {r.media_type:<24} {r.size} B")


def report_types(data_dir: DataDir = None) -> None:
    """The installed report types and aliases."""
    from dicomflow.pipelines import load_report_types

    processing = load_settings(data_dir).processing
    registry = load_report_types(processing.plugins, processing.aliases, processing.options)
    for name in registry.names():
        rt = registry.get(name)
        inputs = ", ".join(f"{k}: {v.describe()}" for k, v in rt.input_objects().items())
        typer.echo(f"{name} v{rt.version}{'  (QC)' if rt.requires_qc else ''}  {rt.title}  inputs: {inputs}")
    for alias, target in sorted(registry.aliases.items()):
        typer.echo(f"{alias} -> {target}")


def rules_add(
    project: Annotated[str, typer.Argument(help="Project label.")],
    report_type: Annotated[str, typer.Argument(help="Report type to run.")],
    match: Annotated[
        list[str] | None, typer.Option(help="KEYWORD=REGEX a new study's tag must match (repeatable).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run REPORT_TYPE on new studies of PROJECT whose tags match."""
    from dicomflow.index import writing
    from dicomflow.index.rules import add_rule
    from dicomflow.index.studies import project_id_by_label
    from dicomflow.pipelines import load_report_types

    pairs = dict(_pair(m) for m in match or [])
    processing = load_settings(data_dir).processing
    load_report_types(processing.plugins, processing.aliases).get(report_type)
    with opened_index(data_dir) as engine, writing(engine) as conn:
        project_id = project_id_by_label(conn, project)
        rule_id = add_rule(conn, project_id, report_type, pairs)
    typer.echo(f"rule {rule_id}: {project}: {report_type} on {pairs or 'every new study'}")


def rules_list(data_dir: DataDir = None) -> None:
    """Every project rule."""
    from dicomflow.index import reading
    from dicomflow.index.rules import list_rules

    with opened_index(data_dir) as engine, reading(engine) as conn:
        for rule in list_rules(conn):
            typer.echo(f"{rule.id}  {rule.project}  {rule.report_type}  {rule.match or 'every new study'}")


def rules_delete(rule_id: Annotated[int, typer.Argument()], data_dir: DataDir = None) -> None:
    """Remove a project rule."""
    from dicomflow.index import writing
    from dicomflow.index.rules import delete_rule

    with opened_index(data_dir) as engine, writing(engine) as conn:
        delete_rule(conn, rule_id)
    typer.echo(f"rule {rule_id} deleted")


def _pair(text: str) -> tuple[str, str]:
    keyword, sep, pattern = text.partition("=")
    if not sep or not keyword:
        raise typer.BadParameter(f"{text!r} is not KEYWORD=REGEX", param_hint="--match")
    return keyword.strip(), pattern
