"""``dicomflow projects|users|tokens|ls`` through Click's runner, on a Typer app built with ``register``."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from apihelpers import PLACEMENT_REASON, TestClient, api_settings, seed_index
from dicomflow.api import create_app
from dicomflow.cli._admin import human_size, register
from dicomflow.cli._app import ErrorHandlingGroup
from dicomflow.index import create_index_engine, migrate
from dicomflow.runtime import open_application
from dicomflow.storage import FileSystemBlobStore
from dicomflow.usecases.accounts import Role, create_token, create_user, list_tokens

TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DICOMFLOW_CONFIG", "DICOMFLOW_DATA_DIR", "DICOMFLOW_INDEX__URL", "DICOMFLOW_STORAGE__ROOT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer(cls=ErrorHandlingGroup)  # the real app's translation of errors
    register(app)
    return app


def run(app: typer.Typer, data_dir: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)], input=stdin)


def invoke(app: typer.Typer, data_dir: Path, *args: str) -> str:
    result = run(app, data_dir, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_projects_create_and_list(app: typer.Typer, tmp_path: Path) -> None:
    assert "created project default/Demo" in invoke(app, tmp_path, "projects", "create", "Demo")
    assert "created project neuro/Brain" in invoke(
        app, tmp_path, "projects", "create", "Brain", "--group", "neuro"
    )
    listing = invoke(app, tmp_path, "projects", "list")
    assert re.search(r"default\s.*Demo", listing) and re.search(r"neuro\s.*Brain", listing)
    only_neuro = invoke(app, tmp_path, "projects", "list", "--group", "neuro")
    assert "Brain" in only_neuro and "Demo" not in only_neuro


def test_projects_create_twice_fails_with_a_message(app: typer.Typer, tmp_path: Path) -> None:
    invoke(app, tmp_path, "projects", "create", "Demo")
    result = run(app, tmp_path, "projects", "create", "DEMO")
    assert result.exit_code == 1
    assert "exists already" in result.stderr


def test_projects_create_rejects_an_empty_label(app: typer.Typer, tmp_path: Path) -> None:
    result = run(app, tmp_path, "projects", "create", " ")
    assert result.exit_code == 2
    assert "must have 1 to" in result.output


def test_users_create_and_token_authenticates_against_the_api(app: typer.Typer, tmp_path: Path) -> None:
    created = invoke(
        app, tmp_path, "users", "create", "eve@example.org", "--password", "pw", "--role", "admin"
    )
    assert "created user eve@example.org (admin)" in created
    output = invoke(app, tmp_path, "tokens", "create", "--user", "eve@example.org")
    assert output.endswith("\n") and output.count("\n") == 1
    token = output.strip()
    assert TOKEN.fullmatch(token)
    with TestClient(create_app(api_settings(tmp_path))) as client:
        ok = client.post(
            "/api/v1/projects", json={"label": "ViaToken"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 201
        assert client.get("/api/v1/projects", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_users_default_to_viewer_and_roles_are_checked(app: typer.Typer, tmp_path: Path) -> None:
    assert "(viewer)" in invoke(app, tmp_path, "users", "create", "vic@example.org", "--password", "pw")
    result = CliRunner().invoke(
        app,
        [
            "users",
            "create",
            "x@example.org",
            "--password",
            "pw",
            "--role",
            "root",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2


def test_users_create_prompts_for_the_password(app: typer.Typer, tmp_path: Path) -> None:
    result = run(app, tmp_path, "users", "create", "pat@example.org", stdin="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert "created user pat@example.org (viewer)" in result.stdout
    assert "s3cret" not in result.stdout


def _empty_index(data_dir: Path) -> None:
    engine = create_index_engine(api_settings(data_dir).index_url)
    migrate(engine)
    engine.dispose()


def test_tokens_create_for_an_unknown_user_fails(app: typer.Typer, tmp_path: Path) -> None:
    _empty_index(tmp_path)
    result = CliRunner().invoke(
        app, ["tokens", "create", "--user", "ghost@example.org", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "ghost@example.org" in result.stderr


def _seed(data_dir: Path) -> None:
    settings = api_settings(data_dir)
    engine = create_index_engine(settings.index_url)
    migrate(engine)
    seed_index(engine, FileSystemBlobStore(settings.blob_root, fsync=False))
    engine.dispose()


def test_ls_json_is_the_hierarchy(app: typer.Typer, tmp_path: Path) -> None:
    _seed(tmp_path)
    groups = json.loads(invoke(app, tmp_path, "ls", "--json"))
    assert [g["id"] for g in groups] == ["neuro", "unknown"]
    assert groups[0]["counts"]["instances"] == 6
    session = groups[0]["projects"][0]["subjects"][0]["sessions"][0]
    assert session["placement_reason"] == PLACEMENT_REASON
    with TestClient(create_app(api_settings(tmp_path))) as client:
        application = client.app.state.application  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app
        create_user(application, "v@example.org", "pw", Role.ADMIN)  # sees every project
        headers = {"Authorization": f"Bearer {create_token(application, 'v@example.org')}"}
        assert client.get("/api/v1/hierarchy", headers=headers).json() == groups  # one shape for CLI and API


def test_ls_shows_a_tree_with_counts(app: typer.Typer, tmp_path: Path) -> None:
    _seed(tmp_path)
    tree = invoke(app, tmp_path, "ls")
    first = tree.splitlines()[0]
    assert (
        first.startswith("Neuro")
        and "(1 project, 2 subjects, 2 sessions, 3 acquisitions, 6 instances" in first
    )
    assert re.search(r"Brain .*2 subjects, 2 sessions, 3 acquisitions, 6 instances", tree)
    assert "P001" in tree and "CT series [CT]" in tree and "3 instances" in tree
    assert "why:" not in tree and PLACEMENT_REASON not in tree


def test_ls_why_shows_each_session_placement(app: typer.Typer, tmp_path: Path) -> None:
    _seed(tmp_path)
    tree = invoke(app, tmp_path, "ls", "--why")
    assert tree.count(f"why: routing-string: {PLACEMENT_REASON}") == 2


def test_ls_on_an_empty_index(app: typer.Typer, tmp_path: Path) -> None:
    _empty_index(tmp_path)
    assert "empty" in invoke(app, tmp_path, "ls")
    assert json.loads(invoke(app, tmp_path, "ls", "--json")) == []


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (61_400_000, "61.4 MB"), (3 * 10**12, "3.0 TB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_commands_work_while_the_api_is_serving(app: typer.Typer, tmp_path: Path) -> None:
    with TestClient(create_app(api_settings(tmp_path))) as client:
        application = client.app.state.application  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app
        create_user(application, "ops@example.org", "pw", Role.VIEWER)
        headers = {"Authorization": f"Bearer {create_token(application, 'ops@example.org')}"}
        assert client.get("/api/v1/projects", headers=headers).json() == []
        invoke(app, tmp_path, "projects", "create", "Live", "--group", "ops")
        assert client.get("/api/v1/projects", headers=headers).json() == []  # not a member yet
        invoke(app, tmp_path, "users", "grant", "ops@example.org", "--project", "Live", "--role", "viewer")
        token = invoke(app, tmp_path, "tokens", "create", "--user", "ops@example.org").strip()
        listed = client.get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"}).json()
        assert [(p["group"], p["label"]) for p in listed] == [("ops", "Live")]
        assert "Live" in invoke(app, tmp_path, "ls")


# -- tokens list|revoke, --expires-in, users disable|enable --------------------------------------------


def _user_and_tokens(app: typer.Typer, data_dir: Path, *extra: str) -> list[str]:
    invoke(app, data_dir, "users", "create", "tok@example.org", "--password", "pw", "--role", "admin")
    return [invoke(app, data_dir, "tokens", "create", "--user", "tok@example.org", *extra).strip()]


def _api_status(data_dir: Path, token: str) -> tuple[int, str]:
    with TestClient(create_app(api_settings(data_dir))) as client:
        response = client.get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()["error"]["code"] if response.status_code >= 400 else ""


def test_tokens_list_shows_each_token_without_its_secret(app: typer.Typer, tmp_path: Path) -> None:
    [forever] = _user_and_tokens(app, tmp_path)
    expiring = invoke(app, tmp_path, "tokens", "create", "--user", "tok@example.org", "--expires-in", "30d")
    expiring = expiring.strip()
    listing = invoke(app, tmp_path, "tokens", "list")
    assert forever not in listing and expiring.strip() not in listing
    lines = [line for line in listing.splitlines() if "tok@example.org" in line]
    assert len(lines) == 2
    assert re.search(rf"\b1\b.*{re.escape(forever[:6])}.*tok@example.org.*never.*never", lines[0])
    in_30_days = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")
    assert re.search(rf"\b2\b.*{re.escape(expiring[:6])}.*{in_30_days}", lines[1])
    assert "id" in listing and "last used" in listing and "expires" in listing


def test_tokens_revoke_by_id_refuses_the_token_at_once(app: typer.Typer, tmp_path: Path) -> None:
    [token] = _user_and_tokens(app, tmp_path)
    assert _api_status(tmp_path, token) == (200, "")
    assert "revoked token 1 (" in invoke(app, tmp_path, "tokens", "revoke", "1")
    assert _api_status(tmp_path, token) == (401, "token-revoked")
    assert "tok@example.org" not in invoke(app, tmp_path, "tokens", "list")
    assert re.search(r"\b1\b.*revoked", invoke(app, tmp_path, "tokens", "list", "--all"))


def test_tokens_revoke_accepts_the_token_itself(app: typer.Typer, tmp_path: Path) -> None:
    [token] = _user_and_tokens(app, tmp_path)
    assert "revoked token 1" in invoke(app, tmp_path, "tokens", "revoke", token)
    assert _api_status(tmp_path, token) == (401, "token-revoked")


@pytest.mark.parametrize("ref", ["7", "not-a-token"])
def test_tokens_revoke_of_an_unknown_token_fails(app: typer.Typer, tmp_path: Path, ref: str) -> None:
    _user_and_tokens(app, tmp_path)
    result = run(app, tmp_path, "tokens", "revoke", ref)
    assert result.exit_code == 1 and "no token" in result.stderr


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("12h", 43_200), ("30d", 2_592_000), ("45", 45)]
)
def test_tokens_create_expires_in_takes_s_m_h_d(
    app: typer.Typer, tmp_path: Path, text: str, seconds: int
) -> None:
    before = datetime.now(UTC)
    _user_and_tokens(app, tmp_path, "--expires-in", text)
    application = open_application(api_settings(tmp_path))
    try:
        [info] = list_tokens(application)
    finally:
        application.close()
    assert info.expires_at is not None
    assert timedelta(seconds=seconds - 1) < info.expires_at - before < timedelta(seconds=seconds + 60)


@pytest.mark.parametrize("text", ["30w", "", "-1d", "0s", "d"])
def test_tokens_create_refuses_a_bad_expiry(app: typer.Typer, tmp_path: Path, text: str) -> None:
    invoke(app, tmp_path, "users", "create", "tok@example.org", "--password", "pw")
    result = run(app, tmp_path, "tokens", "create", "--user", "tok@example.org", "--expires-in", text)
    assert result.exit_code == 2 and result.stdout == ""


def test_users_disable_and_enable(app: typer.Typer, tmp_path: Path) -> None:
    [token] = _user_and_tokens(app, tmp_path)
    assert "disabled user tok@example.org" in invoke(app, tmp_path, "users", "disable", "tok@example.org")
    assert _api_status(tmp_path, token) == (401, "account-disabled")
    assert "enabled user tok@example.org" in invoke(app, tmp_path, "users", "enable", "TOK@example.org")
    assert _api_status(tmp_path, token) == (200, "")
    result = run(app, tmp_path, "users", "disable", "ghost@example.org")
    assert result.exit_code == 1 and "ghost@example.org" in result.stderr
