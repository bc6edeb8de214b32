"""The gate in front of every route: the caller is known and the body's size allowed before a byte of the
body is read (one-file PUT, multipart, JSON, the icometrix API), and streamed bodies stop at the limit; the
API documentation is served from our own assets, public or not as the settings say."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apihelpers import TestClient, assert_error_shape
from dicomflow.api import create_app
from dicomflow.config import Settings
from dicomflow.usecases.accounts import Role, create_token, create_user, grant
from factories import create_project

UPLOAD_LIMIT = 64 << 10
JSON_LIMIT = 4 << 10
CHUNK = 4 << 10
ICO_UPLOADS = "/uploads-service/api/v1/projects/1/multi-upload"


class Body:
    """A lazily generated request body that counts how much of it the server pulled."""

    def __init__(self, size: int, prefix: bytes = b"") -> None:
        self.size, self.prefix, self.pulled = size, prefix, 0

    def __iter__(self) -> Iterator[bytes]:
        sent = len(self.prefix)
        self.pulled += sent
        yield self.prefix
        while sent < self.size:
            piece = b"\0" * min(CHUNK, self.size - sent)
            self.pulled += len(piece)
            sent += len(piece)
            yield piece


def _settings(data_dir: Path, **uploads: Any) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": data_dir,
            "storage": {"fsync": False},
            "http": {"max_body_bytes": JSON_LIMIT},
            "uploads": {"max_file_bytes": UPLOAD_LIMIT, **uploads},
        }
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, str, str]]:
    """A client, an admin token and the id of an open upload."""
    app = create_app(_settings(tmp_path / "data"))
    project = create_project(app.state.engine, "A")
    create_user(app.state.application, "a@example.org", "pw", Role.ADMIN)
    grant(app.state.application, "a@example.org", project.id, Role.UPLOADER)
    token = create_token(app.state.application, "a@example.org")
    with TestClient(app) as client:
        started = client.post("/api/v1/uploads", json={"project": "A"}, headers=_bearer(token))
        assert started.status_code == 201, started.text
        yield client, token, started.json()["id"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


MULTIPART = {"Content-Type": "multipart/form-data; boundary=x"}
PART = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.dcm"\r\n\r\n'


def _routes(upload_id: str) -> list[tuple[str, str, dict[str, str]]]:
    """(method, url, headers) of routes that take a body: uploads (one file, multipart), JSON, icometrix."""
    multipart = MULTIPART
    return [
        ("PUT", f"/api/v1/uploads/{upload_id}/files/a.dcm", {"Content-Type": "application/dicom"}),
        ("PUT", f"/api/v1/uploads/{upload_id}/files", multipart),
        ("POST", "/api/v1/uploads", {"Content-Type": "application/json"}),
        ("POST", "/api/v1/projects", {"Content-Type": "application/json"}),
        ("PUT", f"{ICO_UPLOADS}/{upload_id}", multipart),
        ("POST", "/uploads-service/api/v1/projects/1/multi-upload", {"Content-Type": "application/json"}),
    ]


def test_a_body_without_a_valid_token_is_refused_before_it_is_read(api: tuple[TestClient, str, str]) -> None:
    client, _, upload_id = api
    for method, url, headers in _routes(upload_id):
        for credentials in ({}, {"Authorization": "Bearer forged"}, {"Cookie": "dicomflow_session=forged"}):
            body = Body(1 << 20)
            response = client.request(method, url, content=iter(body), headers={**headers, **credentials})
            assert response.status_code == 401, (method, url, credentials, response.text)
            assert assert_error_shape(response)["code"] == "unauthorized"
            assert body.pulled == 0, (method, url, credentials)


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(
    api: tuple[TestClient, str, str],
) -> None:
    client, token, upload_id = api
    for method, url, headers in _routes(upload_id):
        limit = UPLOAD_LIMIT if "upload" in url and method == "PUT" else JSON_LIMIT
        body = Body(limit + (1 << 20))
        declared = {**headers, **_bearer(token), "Content-Length": str(limit + (1 << 20))}
        response = client.request(method, url, content=iter(body), headers=declared)
        assert response.status_code == 413, (method, url, response.text)
        assert assert_error_shape(response)["code"] == "too-large"
        assert "larger than" in response.json()["error"]["message"]
        assert body.pulled == 0, (method, url)


def test_a_streamed_body_stops_at_the_limit(api: tuple[TestClient, str, str]) -> None:
    client, token, upload_id = api
    for method, url, headers in _routes(upload_id):
        limit = UPLOAD_LIMIT if "upload" in url and method == "PUT" else JSON_LIMIT
        body = Body(limit + (256 << 10), PART if headers == MULTIPART else b"")
        response = client.request(
            method, url, content=iter(body), headers={**headers, **_bearer(token)}
        )  # no Content-Length: chunked
        assert response.status_code == 413, (method, url, response.text)
        assert assert_error_shape(response)["code"] == "too-large"
    files = client.get(f"/api/v1/uploads/{upload_id}/files", headers=_bearer(token)).json()["files"]
    assert files == []  # nothing of the refused bodies was kept


def test_bodies_within_the_limits_and_the_login_routes_still_work(api: tuple[TestClient, str, str]) -> None:
    client, token, upload_id = api
    login = client.post("/authentication-service/api/v1/token-sessions", json={"key": token})
    assert login.status_code == 200, login.text
    session = client.get("/storage-service/api/v2/projects")  # the cookie session, no bearer token
    assert session.status_code == 200, session.text
    small = client.put(
        f"/api/v1/uploads/{upload_id}/files/a.bin", content=b"x" * 1000, headers=_bearer(token)
    )
    assert small.status_code == 200, small.text
    wrong = client.post(
        "/authentication-service/api/v1/sessions", json={"email": "a@example.org", "password": "x"}
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "unauthorized")
    assert client.get("/health").status_code == 200


def test_the_default_limits_are_checked_on_the_headers(tmp_path: Path) -> None:
    defaults = Settings.model_validate({"data_dir": tmp_path / "data", "storage": {"fsync": False}})
    app = create_app(defaults)
    create_user(app.state.application, "a@example.org", "pw", Role.ADMIN)
    headers = _bearer(create_token(app.state.application, "a@example.org"))
    with TestClient(app) as client:
        for url, limit in (
            ("/api/v1/uploads/x/files/a.dcm", defaults.uploads.max_file_bytes),
            ("/api/v1/projects", defaults.http.max_body_bytes),
        ):
            body = Body(1 << 20)
            response = client.put(
                url, content=iter(body), headers={**headers, "Content-Length": str(limit + 1)}
            )
            assert (response.status_code, body.pulled) == (413, 0), url
    assert defaults.uploads.max_file_bytes <= 2 * 1024**3 and defaults.http.max_body_bytes <= 1 << 20


# -- documentation ------------------------------------------------------------------------------------------

_URL = re.compile(
    r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']|(https?://[^\s"'<>)]+)"""
)


def test_the_docs_use_local_assets_only(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path / "data"))
    with TestClient(app) as client:
        for page in ("/docs", "/redoc"):
            response = client.get(page)
            assert response.status_code == 200, page
            referenced = [next(filter(None, groups)) for groups in _URL.findall(response.text)]
            external = [url for url in referenced if "//" in url]
            assert external == [], (page, external)
            assert len(referenced) >= 2, (page, referenced)
            for url in referenced:
                assert client.get(url).status_code == 200, (page, url)
        assert client.get("/openapi.json").json()["info"]["title"] == "dicomflow"


def test_the_docs_need_a_token_when_the_setting_says_so(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data").with_overrides(**{"http.public_docs": False})
    app = create_app(settings)
    create_user(app.state.application, "a@example.org", "pw", Role.VIEWER)
    token = create_token(app.state.application, "a@example.org")
    with TestClient(app) as client:
        for page in ("/docs", "/redoc", "/openapi.json"):
            refused = client.get(page)
            assert refused.status_code == 401, page
            assert_error_shape(refused)
            assert client.get(page, headers=_bearer(token)).status_code == 200, page
