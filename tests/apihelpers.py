"""Helpers of the API, query and admin CLI tests: a small generated index with real blobs.

The ``api`` fixture (``tests/integration/conftest.py``) yields :func:`running_api`; the tree written by
:func:`seed_index` is, by group:

* ``neuro`` / project ``Brain``: subject ``P001`` with study A (series A1: 3 CT instances, instance numbers
  3, 1, 2; series A2: 2 CT instances, one without an instance number) and subject ``P002`` with study B
  (series B1: 1 MR instance); dataset ``cohort`` holds A1; three events;
* ``unknown`` / project ``Unsorted``: empty.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import Engine, insert, select

from dicomflow.api import create_app
from dicomflow.config import Settings
from dicomflow.errors import ERRORS_BY_CODE
from dicomflow.index import Acquisition, DatasetSeries, Event, Group, Instance, Project, Session, Subject
from dicomflow.index import Dataset as DatasetRow
from dicomflow.storage import FileSystemBlobStore
from dicomflow.usecases.accounts import Role, create_token, create_user, grant

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 when the test client runs on httpx
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

__all__ = [
    "ApiContext",
    "IndexWriter",
    "Seeded",
    "StoredInstance",
    "TestClient",
    "api_settings",
    "assert_error_shape",
    "make_part10",
    "running_api",
    "seed_index",
]

PLACEMENT_REASON = "PatientID 'fw://neuro/Brain' names group 'neuro' and project 'Brain'"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class StoredInstance:
    """An instance written to the blob store and the index."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    instance_number: int | None
    data: bytes


@dataclass
class Seeded:
    """What :func:`seed_index` wrote."""

    project_id: int = 0
    study_a: str = ""
    study_b: str = ""
    series: dict[str, str] = field(default_factory=dict)
    """Series Instance UID by name (``A1``, ``A2``, ``B1``)."""
    instances: dict[str, list[StoredInstance]] = field(default_factory=dict)
    """Instances by series name, in the order written."""

    def all_instances(self) -> list[StoredInstance]:
        return [item for items in self.instances.values() for item in items]


def api_settings(data_dir: Path) -> Settings:
    """Settings of a throw-away installation in ``data_dir`` (no fsync, SQLite index in the directory, or
    the PostgreSQL database of the ``index_url`` fixture, which sets ``DICOMFLOW_INDEX__URL``)."""
    url = os.environ.get("DICOMFLOW_INDEX__URL", "")
    values = {"data_dir": data_dir, "index": {"url": url}, "storage": {"root": None, "fsync": False}}
    return Settings.model_validate(values)


def make_part10(
    study_uid: str,
    series_uid: str,
    instance_number: int | None,
    *,
    modality: str = "CT",
    patient_id: str = "P001",
) -> tuple[str, bytes]:
    """A small, valid Part 10 file (4x4 pixels); returns its SOP Instance UID and bytes."""
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientID, ds.PatientName, ds.Modality = "P001", "Doe^Jane", modality
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(16, dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        sop_class,
        ds.SOPInstanceUID,
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return ds.SOPInstanceUID, buffer.getvalue()


class IndexWriter:
    """Writes hierarchy rows with SQLAlchemy Core and blobs through the store, as ingest would."""

    def __init__(self, engine: Engine, store: FileSystemBlobStore) -> None:
        self.engine, self.store = engine, store

    def insert(self, table: type, **values: object) -> Any:
        with self.engine.begin() as conn:
            key = conn.execute(insert(table).values(**values)).inserted_primary_key
        return None if key is None else key[0]

    def session(self, project_id: int, subject: str, study_uid: str) -> int:
        subject_id = self.insert(Subject, project_id=project_id, label=subject)
        return int(
            self.insert(
                Session,
                project_id=project_id,
                subject_id=subject_id,
                study_instance_uid=study_uid,
                label=f"{subject} study",
                timestamp=datetime(2024, 5, 1, 10, 20, tzinfo=UTC),
                timezone="UTC",
                placement_rule="routing-string",
                placement_reason=PLACEMENT_REASON,
            )
        )

    def series(
        self, session_id: int, study_uid: str, numbers: list[int | None], modality: str = "CT"
    ) -> tuple[str, int, list[StoredInstance]]:
        series_uid = generate_uid()
        acquisition_id = self.insert(
            Acquisition,
            session_id=session_id,
            acquisition_uid=series_uid,
            series_instance_uid=series_uid,
            label=f"{modality} series",
            modality=modality,
            series_number=1,
            series_description=f"{modality} test",
        )
        stored = [self.instance(acquisition_id, study_uid, series_uid, n, modality) for n in numbers]
        return series_uid, acquisition_id, stored

    def instance(
        self, acquisition_id: int, study_uid: str, series_uid: str, number: int | None, modality: str
    ) -> StoredInstance:
        sop_uid, data = make_part10(study_uid, series_uid, number, modality=modality)
        key = f"{study_uid}/{series_uid}/{sop_uid}.dcm"
        staged = self.store.stage([data])
        self.store.publish(staged, key)
        self.store.release(staged)
        self.insert(
            Instance,
            acquisition_id=acquisition_id,
            sop_instance_uid=sop_uid,
            sop_class_uid=CTImageStorage if modality == "CT" else MRImageStorage,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            study_instance_uid=study_uid,
            series_instance_uid=series_uid,
            instance_number=number,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            blob_key=key,
            source="test",
        )
        return StoredInstance(sop_uid, series_uid, study_uid, number, data)


def seed_index(engine: Engine, store: FileSystemBlobStore) -> Seeded:
    """Write the tree described in the module docstring."""
    writer, seeded = IndexWriter(engine, store), Seeded()
    writer.insert(Group, id="neuro", label="Neuro")
    writer.insert(Group, id="unknown", label="Unknown")
    seeded.project_id = writer.insert(Project, group_id="neuro", label="Brain", label_key="brain")
    writer.insert(Project, group_id="unknown", label="Unsorted", label_key="unsorted")
    seeded.study_a, seeded.study_b = generate_uid(), generate_uid()
    session_a = writer.session(seeded.project_id, "P001", seeded.study_a)
    session_b = writer.session(seeded.project_id, "P002", seeded.study_b)
    layout: list[tuple[str, int, str, list[int | None], str]] = [
        ("A1", session_a, seeded.study_a, [3, 1, 2], "CT"),
        ("A2", session_a, seeded.study_a, [None, 1], "CT"),
        ("B1", session_b, seeded.study_b, [1], "MR"),
    ]
    for name, session, study, numbers, modality in layout:
        series_uid, acquisition_id, stored = writer.series(session, study, numbers, modality)
        seeded.series[name], seeded.instances[name] = series_uid, stored
        if name == "A1":
            dataset_id = writer.insert(DatasetRow, name="cohort")
            writer.insert(DatasetSeries, dataset_id=dataset_id, acquisition_id=acquisition_id)
    for kind, uid in (("placed", seeded.study_a), ("placed", seeded.study_b), ("stored", seeded.study_a)):
        writer.insert(Event, kind=kind, actor="test", object_uid=uid, outcome="ok", reason=f"{kind} {uid}")
    return seeded


@dataclass(frozen=True)
class ApiContext:
    """A running test client on a seeded installation, and a token per role."""

    client: TestClient
    seeded: Seeded
    tokens: dict[Role, str]
    store: FileSystemBlobStore

    def headers(self, role: Role = Role.VIEWER) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def running_api(tmp_path: Path) -> Iterator[ApiContext]:
    """The API of a seeded installation, with one user and token per role (for a fixture to yield from)."""
    app = create_app(api_settings(tmp_path))
    engine, store = app.state.engine, app.state.store
    seeded = seed_index(engine, store)
    tokens = {}
    with engine.connect() as conn:
        project_ids = list(conn.scalars(select(Project.id)))
    for role in Role:
        create_user(app.state.application, f"{role.value}@example.org", PASSWORD, role)
        tokens[role] = create_token(app.state.application, f"{role.value}@example.org")
        for project_id in project_ids:  # every seeded project, with the user's role in it
            grant(app.state.application, f"{role.value}@example.org", project_id, role)
    with TestClient(app) as client:
        yield ApiContext(client, seeded, tokens, store)


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    """The error of a 4xx/5xx response, after checking the one error shape (and its status, for our codes)."""
    assert response.status_code >= 400, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if error["code"] in ERRORS_BY_CODE:
        assert response.status_code == ERRORS_BY_CODE[error["code"]].http_status
    return error
