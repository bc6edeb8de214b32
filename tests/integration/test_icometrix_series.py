"""The icometrix API's series: their header fields are kept in the index when a series is placed (or by
migration 0006, or once when first listed), so that listing a study's series opens no file."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import inspect, select, update

from apihelpers import TestClient, api_settings
from dicomflow import index
from dicomflow.api import create_app
from dicomflow.config import Settings
from dicomflow.index import Acquisition, create_index_engine, migrate
from dicomflow.ingest import Source, open_ingestor
from dicomflow.storage import FileSystemBlobStore
from dicomflow.usecases.accounts import Role, create_token, create_user

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

MR_ATTRIBUTES: dict[str, Any] = {
    "EchoTime": "2.46",
    "FlipAngle": "9",
    "RepetitionTime": "2300.0",
    "ScanningSequence": ["GR", "IR"],
    "MagneticFieldStrength": "3",
    "PixelSpacing": ["0.9765625", "1.00"],
    "ImagesInAcquisition": "176",
    "SpacingBetweenSlices": "1.20",
    "SliceThickness": "1",
    "ImageOrientationPatient": ["0", "1", "0", "0", "0", "-1"],
    "SeriesNumber": 5,
    "SeriesDescription": "T1 MPRAGE",
}
EXPECTED = {
    "echo_time": "2.46",
    "flip_angle": "9",
    "repetition_time": "2300.0",
    "scanning_sequence": "GR\\IR",
    "magnetic_field_strength": "3",
    "pixel_spacing": "0.9765625\\1.00",
    "expected_images_in_acquisition": "176",
    "series_number": "5",
    "slice_orientation": "sagittal",
    "slice_thickness": 1.0,
    "maximum_slice_increment": 1.2,
    "image_size": [4, 6, 3],
    "voxel_size": [0.9765625, 1.0, 1.0],
    "images_in_acquisition": 3,
}


def _mr(study: str, series: str, number: int) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName, ds.Modality = "fw://neuro/Brain", "Doe^Jane", "MR"
    ds.InstanceNumber, ds.Rows, ds.Columns = number, 4, 6
    for keyword, value in MR_ATTRIBUTES.items():
        setattr(ds, keyword, value)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(24, dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """An installation with one MR series of three instances, received as the receiver would."""
    settings = api_settings(tmp_path)
    engine = create_index_engine(settings.index_url)
    migrate(engine)
    engine.dispose()
    ingestor = open_ingestor(settings)
    study, series = generate_uid(), generate_uid()
    try:
        for number in (1, 2, 3):
            ingestor.ingest_bytes([_mr(study, series, number)], Source("import", "test"))
    finally:
        ingestor.close()
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        application = client.app.state.application  # type: ignore[attr-defined]  # a FastAPI app
        create_user(application, "a@example.org", "pw", Role.ADMIN)
        key = create_token(application, "a@example.org")
        client.post("/authentication-service/api/v1/token-sessions", json={"key": key}).raise_for_status()
        yield client


def _series(client: TestClient) -> list[dict[str, Any]]:
    [project] = client.get("/storage-service/api/v2/projects").json()["results"]
    [patient] = client.get(f"{project['uri']}/patients").json()["results"]
    [study] = client.get(f"{patient['uri']}/patients").json()["results"]
    response = client.get(f"{study['uri']}/series")
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _headers(settings: Settings) -> list[str | None]:
    engine = create_index_engine(settings.index_url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(Acquisition.series_header)))
    finally:
        engine.dispose()


def test_series_fields_are_kept_at_ingest_and_listed_without_opening_a_file(
    settings: Settings, client: TestClient
) -> None:
    assert all(_headers(settings))  # written with the acquisition row
    shutil.rmtree(settings.blob_root / "objects")  # listing series must not need the files
    [series] = _series(client)
    assert {key: series[key] for key in EXPECTED} == EXPECTED


def _forget_headers(settings: Settings) -> None:
    engine = create_index_engine(settings.index_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(Acquisition).values(series_header=None))
    finally:
        engine.dispose()


def test_a_series_placed_before_headers_were_kept_is_read_once_then_kept(
    settings: Settings, client: TestClient
) -> None:
    _forget_headers(settings)
    [first] = _series(client)  # read from its first file this once
    assert all(_headers(settings))
    shutil.rmtree(settings.blob_root / "objects")
    assert _series(client) == [first]
    assert {key: first[key] for key in EXPECTED} == EXPECTED


def test_migration_0006_fills_the_headers_of_existing_series(settings: Settings) -> None:
    engine = create_index_engine(settings.index_url)
    config = Config()
    config.set_main_option("script_location", str(Path(index.__file__).with_name("migrations")))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0005")  # as an installation of the previous release
        assert "series_header" not in _columns(settings)
        migrate(engine, blob_read=FileSystemBlobStore(settings.blob_root, fsync=False).get)
    finally:
        engine.dispose()
    headers = _headers(settings)
    assert headers and all(header and '"EchoTime":["2.46"]' in header for header in headers)


def _columns(settings: Settings) -> set[str]:
    engine = create_index_engine(settings.index_url)
    try:
        with engine.connect() as conn:
            return {column["name"] for column in inspect(conn).get_columns("acquisitions")}
    finally:
        engine.dispose()
