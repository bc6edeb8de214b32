"""``/metrics`` and ``/ready`` in process (the real server's are in tests/e2e/test_observability.py): the page
with the index's gauges, public on a loopback-only API, behind a token otherwise or when configured so; the
broker among /ready's parts when jobs go through one (a real redis-server, and a closed port as the fault)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from apihelpers import TestClient, api_settings, assert_error_shape
from dicomflow.api import create_app
from dicomflow.config import HttpSettings
from dicomflow.usecases.accounts import Role, create_token, create_user


@pytest.mark.parametrize(
    ("host", "public", "needs_token"),
    [
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("localhost", None, False),
        ("0.0.0.0", None, True),
        ("10.1.2.3", None, True),
        ("127.0.0.1", False, True),
        ("0.0.0.0", True, False),
    ],
)
def test_metrics_are_public_on_loopback_only_unless_configured(
    host: str, public: bool | None, needs_token: bool
) -> None:
    http = HttpSettings.model_validate({"host": host, "public_metrics": public})
    assert http.metrics_need_token is needs_token


def test_metrics_behind_a_token_answer_401_without_one_and_the_page_with_one(tmp_path: Path) -> None:
    settings = api_settings(tmp_path).with_overrides(**{"http.public_metrics": False})
    app = create_app(settings)
    with TestClient(app) as client:
        assert assert_error_shape(client.get("/metrics"))["code"] == "unauthorized"
        create_user(app.state.application, "ops@example.org", "correct horse battery", Role.VIEWER)
        token = create_token(app.state.application, "ops@example.org")
        page = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    for family in ("dicomflow_jobs_waiting", "dicomflow_export_backlog", "dicomflow_lease_holder"):
        assert f"# TYPE {family} gauge" in page.text


def test_ready_asks_the_broker_when_jobs_go_through_one(
    tmp_path: Path, redis_url: str, free_port: Callable[[], int]
) -> None:
    settings = api_settings(tmp_path).with_overrides(
        **{"jobs.executor": "celery", "jobs.broker_url": redis_url}
    )
    with TestClient(create_app(settings)) as client:
        answer = client.get("/ready")
    assert (answer.status_code, answer.json()["checks"]) == (
        200,
        {"index": "ok", "store": "ok", "broker": "ok"},
    )

    closed = f"redis://127.0.0.1:{free_port()}/0"  # fault: nothing listens there
    with TestClient(create_app(settings.with_overrides(**{"jobs.broker_url": closed}))) as client:
        error = assert_error_shape(client.get("/ready"))
    assert error["code"] == "not-ready" and "broker" in error["message"]
    assert error["details"]["index"] == error["details"]["store"] == "ok"
    assert error["details"]["broker"].startswith("ConnectionError")
