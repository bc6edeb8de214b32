"""Administration commands: ``projects``, ``users``, ``tokens`` and ``ls`` (the hierarchy as a tree).

Each command opens the index for one short transaction, so they are safe while ``dicomflow serve`` runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dicomflow.cli._options import DataDir, load_settings, require_index

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text
    from rich.tree import Tree

    # the index imports SQLAlchemy: commands import it when they run, so --help stays quick
    from dicomflow.runtime import Application
    from dicomflow.usecases.catalog import Counts, GroupNode, SessionNode, StudyStage


class Role(StrEnum):
    """The roles of ``dicomflow.usecases.accounts.Role``, repeated here so that ``--help`` needs no index."""

    ADMIN = "admin"
    UPLOADER = "uploader"
    REVIEWER = "reviewer"
    VIEWER = "viewer"


DEFAULT_GROUP = "default"  # dicomflow.index.catalog.DEFAULT_GROUP
_LEVELS = ("projects", "subjects", "sessions", "acquisitions", "instances")
_UNWRAPPED = 10_000


def register(app: typer.Typer) -> None:
    """Add ``projects create|list``, ``users create|grant|disable|enable``, ``tokens create|list|revoke``
    and ``ls`` to ``app``."""
    projects = typer.Typer(help="Create and list projects.", no_args_is_help=True)
    projects.command("create")(projects_create)
    projects.command("list")(projects_list)
    users = typer.Typer(help="Manage users.", no_args_is_help=True)
    users.command("create")(users_create)
    users.command("grant")(users_grant)
    users.command("disable")(users_disable)
    users.command("enable")(users_enable)
    tokens = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
    tokens.command("create")(tokens_create)
    tokens.command("list")(tokens_list)
    tokens.command("revoke")(tokens_revoke)
    app.add_typer(projects, name="projects")
    app.add_typer(users, name="users")
    app.add_typer(tokens, name="tokens")
    app.command("ls")(ls)


@contextmanager
def opened_application(data_dir: Path | None = None, *, create: bool = False) -> Iterator[Application]:
    """The application of the settings (its index migrated); unless ``create``, the data directory must
    hold an index already."""
    from dicomflow.runtime import open_application

    settings = load_settings(data_dir)
    if not create:
        require_index(settings)
    application = open_application(settings)
    try:
        yield application
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        application.close()


def projects_create(
    label: Annotated[str, typer.Argument(help="Project label (unique within its group, ignoring case).")],
    group: Annotated[str, typer.Option(help="Group id; created if missing.")] = DEFAULT_GROUP,
    data_dir: DataDir = None,
) -> None:
    """Create a project."""
    from dicomflow.usecases.catalog import create_project

    with opened_application(data_dir, create=True) as application:
        project = create_project(application, None, label, group)
    typer.echo(f"created project {project.group}/{project.label} (id {project.id})")


def projects_list(
    group: Annotated[str | None, typer.Option(help="Only this group's projects.")] = None,
    data_dir: DataDir = None,
) -> None:
    """List projects."""
    from dicomflow.usecases.catalog import list_projects

    with opened_application(data_dir) as application:
        projects = list_projects(application, None, group)
    from rich.table import Table

    table = Table("group", "project", "id", "created")
    for project in projects:
        table.add_row(project.group, project.label, str(project.id), f"{project.created_at:%Y-%m-%d %H:%M}")
    _console().print(table)


def users_create(
    email: Annotated[str, typer.Argument(help="Login email.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, help="Password (prompted if absent)."
        ),
    ],
    role: Annotated[Role, typer.Option(help="What the user may do.", case_sensitive=False)] = Role.VIEWER,
    data_dir: DataDir = None,
) -> None:
    """Create a user. An admin may do anything anywhere; other users act in the projects they are granted."""
    from dicomflow.usecases.accounts import create_user

    with opened_application(data_dir, create=True) as application:
        user = create_user(application, email, password, role.value)
    typer.echo(f"created user {user.email} ({user.role.value})")


def users_grant(
    email: Annotated[str, typer.Argument(help="Login email.")],
    project: Annotated[str, typer.Option(help="Project label.")],
    role: Annotated[Role, typer.Option(help="Role in that project.", case_sensitive=False)],
    data_dir: DataDir = None,
) -> None:
    """Give a user a role in one project (uploader, reviewer, viewer or admin); replaces an earlier one."""
    from dicomflow.usecases.accounts import grant

    with opened_application(data_dir) as application:
        grant(application, email, project, role.value)
    typer.echo(f"{email} is {role.value} in {project}")


def users_disable(
    email: Annotated[str, typer.Argument(help="Login email.")], data_dir: DataDir = None
) -> None:
    """Disable a user: logins, tokens and sessions are refused (within 2 s in a running server)."""
    from dicomflow.usecases.accounts import set_user_disabled

    with opened_application(data_dir) as application:
        user = set_user_disabled(application, email, True)
    typer.echo(f"disabled user {user.email}")


def users_enable(
    email: Annotated[str, typer.Argument(help="Login email.")], data_dir: DataDir = None
) -> None:
    """Enable a disabled user again (its tokens that are not revoked or expired work again)."""
    from dicomflow.usecases.accounts import set_user_disabled

    with opened_application(data_dir) as application:
        user = set_user_disabled(application, email, False)
    typer.echo(f"enabled user {user.email}")


def tokens_create(
    user: Annotated[str, typer.Option("--user", help="Email of the user the token is for.")],
    expires_in: Annotated[
        str | None,
        typer.Option(help="Refuse the token after this long: 90s, 15m, 12h, 30d (default: never)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an API token and print only the token (it is shown once; only its hash is kept)."""
    from dicomflow.usecases.accounts import create_token

    lifetime = None if expires_in is None else parse_duration(expires_in)
    with opened_application(data_dir) as application:
        token = create_token(application, user, expires_in=lifetime)
    typer.echo(token)


def tokens_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also revoked tokens and ended sessions.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List tokens and sessions: id, first characters, user, kind, created, expires, last used, state."""
    from dicomflow.usecases.accounts import TokenKind, list_tokens

    with opened_application(data_dir) as application:
        tokens = list_tokens(application, email=user)  # sessions idle past http.session_idle_timeout
    from rich.table import Table

    table = Table("id", "token", "user", "kind", "created", "expires", "last used", "state")
    for token in tokens:
        ended = token.state == "revoked" or (token.kind is TokenKind.SESSION and token.state != "active")
        if ended and not show_all:
            continue
        prefix = f"{token.prefix}…" if token.prefix else "-"
        times = (_when(token.created_at), _when(token.expires_at), _when(token.last_used_at))
        table.add_row(str(token.id), prefix, token.email, token.kind.value, *times, token.state)
    _console().print(table)


def tokens_revoke(
    token: Annotated[str, typer.Argument(help="The id shown by 'tokens list', or the token itself.")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a token or session: it is refused from now on (within 2 s in a running server)."""
    from dicomflow.usecases.accounts import revoke_token_ref

    with opened_application(data_dir) as application:
        info = revoke_token_ref(application, token)
    typer.echo(f"revoked token {info.id} ({info.prefix or '-'}…, {info.email})")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d`` (or plain seconds) as a positive duration.

    Raises
    ------
    typer.BadParameter
        Not a positive number with one of the units s, m, h, d.
    """
    value = text.strip().lower()
    number, unit = (value[:-1], value[-1]) if value[-1:] in _UNITS else (value, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds != seconds or seconds > 1e11:
        raise typer.BadParameter(
            f"{text!r} is not a duration like 90s, 15m, 12h or 30d", param_hint="--expires-in"
        )
    return timedelta(seconds=seconds)


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print the hierarchy as JSON.")] = False,
    why: Annotated[
        bool, typer.Option("--why", help="Show each session's placement rule and reason.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Show the hierarchy group / project / subject / session / acquisition with counts."""
    from pydantic import TypeAdapter

    from dicomflow.usecases.catalog import GroupNode, hierarchy, study_stages

    with opened_application(data_dir) as application:
        groups = hierarchy(application, None)
        stages = {uid: _stage(stage) for uid, stage in study_stages(application, None).items()}
    if as_json:
        typer.echo(TypeAdapter(list[GroupNode]).dump_json(groups, indent=2).decode())
    elif not groups:
        typer.echo("the index is empty")
    else:
        _console().print(*(hierarchy_tree(group, why=why, stages=stages) for group in groups))


def _stage(stage: StudyStage) -> str:
    """``Stage vN: reason`` of a study's newest version."""
    return f"{stage.stage} v{stage.version}: {stage.reason}"


def _console() -> Console:
    """Standard output; when it is not a terminal, lines are never wrapped, so ``grep`` sees whole lines."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=_UNWRAPPED)


def hierarchy_tree(group: GroupNode, *, why: bool = False, stages: dict[str, str] | None = None) -> Tree:
    """A Rich tree of one group, with counts on every node and, if ``why``, each session's placement."""
    from rich.tree import Tree

    tree = Tree(_node(group.label, group.counts, "projects"))
    for project in group.projects:
        project_branch = tree.add(_node(project.label, project.counts, "subjects"))
        for subject in project.subjects:
            subject_branch = project_branch.add(_node(subject.label, subject.counts, "sessions"))
            for session in subject.sessions:
                session_branch = subject_branch.add(
                    _session(session, why=why, stage=(stages or {}).get(session.study_instance_uid))
                )
                for acquisition in session.acquisitions:
                    label = f"{acquisition.label} [{acquisition.modality}]"
                    session_branch.add(_node(label, acquisition.counts, "instances"))
    return tree


def _session(session: SessionNode, *, why: bool, stage: str | None = None) -> Text:
    text = _node(session.label, session.counts, "acquisitions")
    text.append(f"  {session.study_instance_uid}", style="dim")
    if stage:
        text.append(f"  [{stage}]", style="magenta")
    if why:
        text.append(f"\nwhy: {session.placement_rule}: {session.placement_reason}", style="italic")
    return text


def _node(label: str, counts: Counts, first_level: str) -> Text:
    """``label (2 sessions, 3 acquisitions, 120 instances, 61.4 MB)``, counting from ``first_level`` down."""
    parts = [_plural(getattr(counts, level), level) for level in _LEVELS[_LEVELS.index(first_level) :]]
    from rich.text import Text

    text = Text(label, style="bold")
    text.append(f"  ({', '.join([*parts, human_size(counts.size)])})", style="cyan")
    return text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun[:-1] if count == 1 else noun}"


def human_size(size: int) -> str:
    """Bytes in the largest decimal unit that keeps the number below 1000 (``999 B``, ``61.4 MB``)."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"
