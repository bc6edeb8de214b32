"""``performance.fast_paths``: the upload fast lane is a route of the app; on or off, the API answers alike.

With fast paths on, ``PUT /api/v1/uploads/{id}/files/{name}`` is served by a plain Starlette route registered
first (``api/_fastlane.py``); off, by FastAPI's route. Both raise into the app's one set of error handlers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route

from dicomflow.api import create_app
from dicomflow.api._fastlane import put_file_fast
from dicomflow.config import Settings
from dicomflow.usecases.accounts import Role, create_token, create_user, grant
from dicomflow.usecases.uploads import Uploads
from factories import create_project, make_instance, to_bytes


def _settings(data_dir: Path, fast_paths: bool) -> Settings:
    return Settings.model_validate(
        {"data_dir": data_dir, "storage": {"fsync": False}, "performance": {"fast_paths": fast_paths}}
    )


def _fast_lanes(app: FastAPI) -> list[int]:
    return [i for i, r in enumerate(app.router.routes) if getattr(r, "endpoint", None) is put_file_fast]


def test_the_fast_lane_is_the_first_route_only_with_fast_paths(tmp_path: Path) -> None:
    fast = create_app(_settings(tmp_path / "fast", True))
    stock = create_app(_settings(tmp_path / "stock", False))

    assert _fast_lanes(fast) == [0] and isinstance(fast.router.routes[0], Route)
    assert _fast_lanes(stock) == []
    assert fast.openapi()["paths"] == stock.openapi()["paths"]  # FastAPI's route documents it either way


def _answers(app: FastAPI, monkeypatch: pytest.MonkeyPatch, data: bytes) -> list[tuple[int, Any]]:
    """Status and body of the one-file PUT in each case it meets (upload ID and stored name masked)."""
    application = app.state.application
    project = create_project(application.engine, "A")
    for who, role in [("admin", Role.ADMIN), ("viewer", Role.VIEWER)]:
        create_user(application, f"{who}@example.org", "pw", Role.ADMIN if who == "admin" else Role.VIEWER)
        if who != "admin":
            grant(application, f"{who}@example.org", project.id, role)
    admin = {"Authorization": f"Bearer {create_token(application, 'admin@example.org')}"}
    viewer = {"Authorization": f"Bearer {create_token(application, 'viewer@example.org')}"}
    answers = []
    with TestClient(app, raise_server_exceptions=False) as client:
        upload = client.post("/api/v1/uploads", json={"project": "A"}, headers=admin).json()["id"]

        def put(upload_id: str, headers: dict[str, str], name: str = "a.dcm") -> None:
            url = f"/api/v1/uploads/{upload_id}/files/{name}"
            response = client.put(url, content=data, headers={**headers, "Content-Type": "application/dicom"})
            body = json.loads(response.text.replace(upload, "<id>"))
            for received in body.get("received", []):
                received["name"] = received["name"].split("_", 1)[1]  # a fresh UUID in front
            answers.append((response.status_code, body))

        put(upload, admin)
        put(upload, admin, "sub/dir/b.dcm")
        put("no-such-upload", admin)
        put(upload, viewer)
        put(upload, {"Authorization": "Bearer nope"})
        put(upload, {})
        monkeypatch.setattr(Uploads, "receive_bytes", _fail)
        put(upload, admin)  # an unexpected error: the API's one 500
        monkeypatch.undo()
        client.post(f"/api/v1/uploads/{upload}/complete", headers=admin)
        put(upload, admin)  # no longer uploading
    return answers


def _fail(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("disk on fire")


def test_the_one_file_put_answers_alike_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = to_bytes(make_instance())  # the same bytes both ways (fresh UIDs may differ in length)
    fast = _answers(create_app(_settings(tmp_path / "fast", True)), monkeypatch, data)
    stock = _answers(create_app(_settings(tmp_path / "stock", False)), monkeypatch, data)

    assert fast == stock
    assert [status for status, _ in fast] == [200, 200, 404, 403, 401, 401, 500, 409]
    assert fast[0][1] == {"received": [{"name": "a.dcm", "size": len(data)}]}
    assert fast[6][1] == {
        "error": {"code": "internal-error", "message": "internal server error", "details": {}}
    }
    assert all(set(body) == {"error"} for status, body in fast if status >= 400)
