"""The Typer application; each command group lives in its own module.

Errors are translated here, in one place: a :class:`~dicomflow.errors.DicomflowError` (or an ``OSError``, a
file the user named) ends the command with one red ``error: …`` line on stderr that says what to do next,
and exit status 1; Typer's own usage errors keep status 2. Nothing heavy is imported at start: every command
imports what it needs when it runs, so ``dicomflow --help`` answers at once.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from dicomflow import errors
from dicomflow.cli import _admin, _demo, _node, _processing, _serve, _transfer, _upload, _worker

_STATUS = "run `dicomflow status` to see the studies and their StudyInstanceUIDs"
_USERS = "create the user with `dicomflow users create EMAIL`"
_SERVER = "check --url (or DICOMFLOW_URL), and that `dicomflow serve` runs there"
_PROJECTS = "run `dicomflow projects list` to see the projects (`dicomflow projects create LABEL` adds one)"

# What to do next, by command (the first word after ``dicomflow``) and error class; then by class alone.
_HINTS_BY_COMMAND: dict[tuple[str, type[errors.DicomflowError]], str] = {
    ("results", errors.NotFound): _STATUS,
    ("reprocess", errors.NotFound): _STATUS,
    ("qc", errors.NotFound): _STATUS,
    ("qc", errors.InvalidState): "run `dicomflow qc list` to see the studies waiting for review",
    ("jobs", errors.NotFound): "run `dicomflow jobs` to see the job ids",
    ("rules", errors.NotFound): "run `dicomflow rules list` to see the rule ids",
    ("tokens", errors.NotFound): _USERS,
    ("users", errors.NotFound): _USERS,
    ("users", errors.AlreadyExists): "choose another email, or `dicomflow users grant` the existing user",
    ("projects", errors.AlreadyExists): _PROJECTS,
    ("node", errors.ConfigError): "check PIPELINE: a Python file that defines a ReportType subclass",
    ("send", errors.ServerUnreachable): "check --host and --port, and that the peer is running",
    ("upload", errors.ServerUnreachable): _SERVER,
    ("upload", errors.WaitTimeout): "give a longer --timeout; the server goes on working meanwhile",
}
_HINTS: dict[type[errors.DicomflowError], str] = {
    errors.UnknownProject: _PROJECTS,
    errors.UnknownReportType: "run `dicomflow report-types` to see the installed report types and aliases",
    errors.InvalidState: "run `dicomflow status` to see each study's stage",
    errors.AuthenticationRequired: "create a token with `dicomflow tokens create --user EMAIL` and pass it "
    "with --token or DICOMFLOW_TOKEN",
    errors.PermissionDenied: "ask an admin to run `dicomflow users grant EMAIL --project LABEL --role ROLE`",
    errors.ServerUnreachable: "check the address and port, and that the server runs there",
    errors.ConfigError: "check the DICOMFLOW_* environment variables and the TOML file "
    "($DICOMFLOW_CONFIG or <data dir>/dicomflow.toml)",
}


class ErrorHandlingGroup(TyperGroup):
    """The root command group: it turns the errors of every command into one line and an exit status."""

    def invoke(self, ctx: Any) -> Any:  # Typer's vendored click Context, not public
        try:
            return super().invoke(ctx)
        except errors.DicomflowError as exc:
            _fail(exc.message, hint(exc, ctx.invoked_subcommand))
        except OSError as exc:  # a path named: missing, not writable, a file where a folder should be
            _fail(_describe_os_error(exc))


def hint(exc: errors.DicomflowError, command: str | None) -> str:
    """What to do after ``exc`` in ``command`` ("" when the message says it all)."""
    if isinstance(getattr(exc, "hint", None), str):
        return str(exc.hint)  # type: ignore[attr-defined]  # an error of the command line knows its own
    by_command = next(
        (text for (name, cls), text in _HINTS_BY_COMMAND.items() if name == command and isinstance(exc, cls)),
        None,
    )
    if by_command is not None:
        return by_command
    return next((text for cls, text in _HINTS.items() if isinstance(exc, cls)), "")


def _fail(message: str, hint: str = "") -> None:
    from rich.text import Text

    from dicomflow.cli._console import stderr

    text = Text.assemble(("error: ", "bold red"), message)
    if hint:
        text.append(f"; {hint}" if not message.endswith(".") else f" {hint}")
    stderr().print(text)
    raise typer.Exit(1)


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is None:
        return str(exc.strerror or exc)
    return f"{exc.strerror or exc}: {exc.filename}"


app = typer.Typer(
    cls=ErrorHandlingGroup,
    help="dicomflow: receive, index, place and process medical images.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: typer's rich help formatter imports rich.markdown and markdown_it
    pretty_exceptions_show_locals=False,  # a traceback (a bug) must not print passwords or tokens
)
app.command("serve")(_serve.serve)
_transfer.register(app)
_admin.register(app)
_processing.register(app)
app.command("demo-data")(_demo.demo_data)
app.command("node")(_node.node)
app.command("upload")(_upload.upload)
app.command("worker")(_worker.worker)


def main() -> None:
    """Entry point of the ``dicomflow`` console script."""
    app()
