"""Instances of one series that belong to different acquisitions are placed apart (Flywheel's rules)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dicomflow.config import Settings
from dicomflow.index import Acquisition, Instance, migrate
from dicomflow.ingest import Source, open_ingestor
from factories import make_instance, to_bytes

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

SOURCE = Source("import", "test")


def test_acquisition_numbers_of_one_series_become_separate_acquisitions(tmp_path: Path) -> None:
    settings = Settings().with_overrides(data_dir=tmp_path)  # type: ignore[call-arg]  # data_dir comes from with_overrides
    ingestor = open_ingestor(settings)
    migrate(ingestor.engine)
    first = make_instance(Manufacturer="GE MEDICAL SYSTEMS", AcquisitionNumber=2, InstanceNumber=1)
    shared = {"StudyInstanceUID": first.StudyInstanceUID, "SeriesInstanceUID": first.SeriesInstanceUID}
    second = make_instance(Manufacturer="GE MEDICAL SYSTEMS", AcquisitionNumber=3, InstanceNumber=2, **shared)
    try:
        for ds in (first, second):
            ingestor.ingest_bytes([to_bytes(ds)], SOURCE)
        with ingestor.engine.connect() as conn:
            placed = conn.execute(
                select(Instance.sop_instance_uid, Acquisition.acquisition_uid).join(
                    Acquisition, Acquisition.id == Instance.acquisition_id
                )
            ).all()
    finally:
        ingestor.close()
    series = first.SeriesInstanceUID
    assert dict(placed) == {first.SOPInstanceUID: f"{series}_2", second.SOPInstanceUID: f"{series}_3"}
