"""The use cases of uploads and the catalogue, called as every adapter calls them: with the application and
the caller (``None``: the local operator), over a real index and blob store."""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from apihelpers import api_settings, make_part10
from dicomflow import schemas
from dicomflow.errors import NotFound, PermissionDenied
from dicomflow.index import Role, UserInfo, reading
from dicomflow.index import uploads as upload_rows
from dicomflow.runtime import Application, open_application
from dicomflow.usecases import catalog, uploads
from dicomflow.usecases.access import Access

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

SRC = Path(__file__).parents[2] / "src" / "dicomflow"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    application = open_application(api_settings(tmp_path))
    yield application
    application.close()


def _member_of(project: str, role: Role) -> Access:
    user = UserInfo(id=7, email="member@example.org", role=Role.VIEWER, created_at=datetime.now(UTC))
    return Access(user, {(catalog.DEFAULT_GROUP, project): role})


def _imported(app: Application, upload_id: str) -> schemas.Upload:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        upload = uploads.get(app, None, upload_id)
        if upload.has_ended:
            return upload
        time.sleep(0.05)
    raise AssertionError(f"upload {upload_id} still importing")


def test_an_upload_from_start_to_imported_as_schemas(app: Application) -> None:
    catalog.create_project(app, None, "A")
    started = uploads.start(app, None, "A", None)
    assert isinstance(started, schemas.Upload)
    assert (started.state, started.created_by) == (schemas.UploadState.UPLOADING, "cli")
    study, series = generate_uid(), generate_uid()
    sop, data = make_part10(study, series, 1)
    received = uploads.add_bytes(app, None, started.id, f"{sop}.dcm", data)
    assert received.size == len(data) and received.name.endswith(f"{sop}.dcm")
    assert uploads.received_files(app, None, started.id) == [received.name]
    uploads.complete(app, None, started.id)
    done = _imported(app, started.id)
    assert (done.state, done.instances_imported, done.files_received) == (schemas.UploadState.IMPORTED, 1, 1)
    assert done.study_instance_uids == [study]
    assert [u.id for u in uploads.list_uploads(app, None, "A")] == [started.id]
    with reading(app.engine) as conn:
        record = upload_rows.find(conn, started.id)
    assert record is not None and record.state is schemas.UploadState.IMPORTED  # one enum, row to route
    assert catalog.series(app, None, series).instance_count == 1


def test_an_upload_is_not_found_by_a_caller_outside_its_project(app: Application) -> None:
    catalog.create_project(app, None, "A")
    catalog.create_project(app, None, "B")
    started = uploads.start(app, None, "A", None)
    outsider, viewer = _member_of("B", Role.ADMIN), _member_of("A", Role.VIEWER)
    with pytest.raises(NotFound, match="no upload"):
        uploads.get(app, outsider, started.id)
    assert uploads.list_uploads(app, outsider) == []
    assert uploads.get(app, viewer, started.id).id == started.id
    with pytest.raises(PermissionDenied):
        uploads.complete(app, viewer, started.id)
    with pytest.raises(NotFound):
        uploads.start(app, outsider, "A", None)


def test_the_catalogue_shows_only_the_callers_projects(app: Application) -> None:
    catalog.create_project(app, None, "A")
    catalog.create_project(app, None, "B")
    member = _member_of("B", Role.VIEWER)
    assert [p.label for p in catalog.list_projects(app, None)] == ["A", "B"]
    assert [p.label for p in catalog.list_projects(app, member)] == ["B"]
    (group,) = catalog.hierarchy(app, member)
    assert [p.label for p in group.projects] == ["B"] and group.counts.projects == 1
    with pytest.raises(PermissionDenied):
        catalog.events(app, member)
    with pytest.raises(PermissionDenied):
        catalog.create_project(app, member, "C")
    assert catalog.events(app, None) == []


# the adapters this slice cleaned: they reach the index only through use cases
_ADAPTERS = ["api/_uploads.py", "api/_instances.py", "api/_catalog.py", "api/_archive.py", "uploads"]


@pytest.mark.parametrize("adapter", _ADAPTERS)
def test_adapters_import_no_index_and_no_sqlalchemy(adapter: str) -> None:
    path = SRC / adapter
    for module in [path] if path.is_file() else sorted(path.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith(("sqlalchemy", "dicomflow.index", "dicomflow.ingest")), (
                    f"{module.relative_to(SRC)} imports {name}"
                )
