"""Contract: every 4xx and 5xx body is ``{"error": {"code", "message", "details"}}``, and every route under
``/api/v1`` refuses a request without a token."""

from __future__ import annotations

import re
from typing import Any

from apihelpers import ApiContext, TestClient, assert_error_shape
from dicomflow.usecases.accounts import Role

UNKNOWN_UID = "1.2.826.0.1.3680043.8.498.999"


def failing_requests(api: ApiContext) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """(method, url, request kwargs, expected status, expected code)."""
    viewer, admin = api.headers(Role.VIEWER), api.headers(Role.ADMIN)
    json_type = "application/json"
    return [
        ("GET", "/api/v1/projects", {}, 401, "unauthorized"),
        ("GET", "/api/v1/hierarchy", {"headers": {"Authorization": "Bearer wrong"}}, 401, "unauthorized"),
        ("POST", "/api/v1/projects", {"json": {"label": "X"}, "headers": viewer}, 403, "forbidden"),
        ("POST", "/api/v1/projects", {"json": {"label": "brain", "group": "neuro"}, "headers": admin}, 409,
         "already-exists"),
        ("POST", "/api/v1/projects", {"json": {"group": "neuro"}, "headers": admin}, 422, "validation-error"),
        ("POST", "/api/v1/projects", {"json": {"label": ""}, "headers": admin}, 422, "validation-error"),
        ("POST", "/api/v1/projects", {"json": {"label": "x" * 129}, "headers": admin}, 422,
         "validation-error"),
        ("POST", "/api/v1/projects", {"content": b"{", "headers": {**admin, "Content-Type": json_type}}, 422,
         "validation-error"),
        ("GET", "/api/v1/events?limit=0", {"headers": admin}, 422, "validation-error"),
        ("GET", "/api/v1/events?limit=many", {"headers": admin}, 422, "validation-error"),
        ("GET", f"/api/v1/series/{UNKNOWN_UID}", {"headers": viewer}, 404, "not-found"),
        ("GET", f"/api/v1/series/{UNKNOWN_UID}/download", {"headers": viewer}, 404, "not-found"),
        ("GET", f"/api/v1/sessions/{UNKNOWN_UID}/download", {"headers": viewer}, 404, "not-found"),
        ("GET", f"/api/v1/instances/{UNKNOWN_UID}", {"headers": viewer}, 404, "not-found"),
        ("GET", f"/api/v1/instances/{UNKNOWN_UID}/file", {"headers": viewer}, 404, "not-found"),
        ("GET", "/api/v1/no-such-route", {"headers": viewer}, 404, "not-found"),
        ("GET", "/no-such-route", {}, 404, "not-found"),
        ("DELETE", "/api/v1/projects", {"headers": admin}, 405, "method-not-allowed"),
    ]  # fmt: skip


def test_every_failing_request_has_the_error_shape(api: ApiContext) -> None:
    for method, url, kwargs, status, code in failing_requests(api):
        response = api.client.request(method, url, **kwargs)
        assert response.status_code == status, (method, url, response.text)
        assert assert_error_shape(response)["code"] == code, (method, url)


def test_validation_errors_list_what_is_wrong(api: ApiContext) -> None:
    response = api.client.post("/api/v1/projects", json={}, headers=api.headers(Role.ADMIN))
    error = assert_error_shape(response)
    assert [e["loc"] for e in error["details"]["errors"]] == [["body", "label"]]
    assert "body.label" in error["message"]


def test_every_api_route_needs_a_token(api: ApiContext) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    routes = [(method, path) for path, item in paths.items() if path.startswith("/api/v1") for method in item]
    assert len(routes) >= 10
    for method, path in routes:
        url = re.sub(r"\{\w+\}", UNKNOWN_UID, path)
        response = api.client.request(method, url, json={"label": "x"})
        assert response.status_code == 401, (method, url)
        assert_error_shape(response)


def test_missing_blob_is_a_storage_error(api: ApiContext) -> None:
    stored = api.seeded.instances["B1"][0]
    key = f"{stored.study_instance_uid}/{stored.series_instance_uid}/{stored.sop_instance_uid}.dcm"
    api.store.delete(key)
    for suffix in ("", "/file"):
        response = api.client.get(
            f"/api/v1/instances/{stored.sop_instance_uid}{suffix}", headers=api.headers()
        )
        assert response.status_code == 507
        assert assert_error_shape(response)["code"] == "storage-error"


def test_unreadable_blob_is_a_storage_error(api: ApiContext) -> None:
    stored = api.seeded.instances["B1"][0]
    key = f"{stored.study_instance_uid}/{stored.series_instance_uid}/{stored.sop_instance_uid}.dcm"
    api.store.put(key, b"not dicom at all")
    response = api.client.get(f"/api/v1/instances/{stored.sop_instance_uid}", headers=api.headers())
    assert assert_error_shape(response)["code"] == "storage-error"


def test_unhandled_exceptions_are_500_internal_error(api: ApiContext) -> None:
    app = api.client.app

    def boom() -> None:
        raise RuntimeError("secret detail")

    app.add_api_route("/api/v1/boom", boom)  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/boom", headers=api.headers())
    assert response.status_code == 500
    error = assert_error_shape(response)
    assert error["code"] == "internal-error"
    assert "secret" not in error["message"]
