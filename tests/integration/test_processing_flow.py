"""The processing flow on a real index, blob store and worker processes: request → checks → jobs → stage,
retries, review, reprocessing, project rules and new versions (toy report types from tests/plugins)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select

from dicomflow.config import Settings
from dicomflow.errors import InvalidState, UnknownReportType
from dicomflow.index import Acquisition, Instance, Project, migrate, reading, writing
from dicomflow.index.jobs import job_row
from dicomflow.index.outbox import list_outbox
from dicomflow.index.results import results_of_study
from dicomflow.index.rules import add_rule
from dicomflow.index.studies import (
    StudyInfo,
    find_study,
    list_studies,
    session_blob_keys,
    session_of_acquisition,
)
from dicomflow.ingest import Source, open_ingestor
from dicomflow.jobs import ProcessingEngine, job_workdir
from dicomflow.storage import BlobStore
from factories import create_project, make_study, to_bytes
from waiting import wait_until

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

PLUGIN = str(Path(__file__).parents[1] / "plugins" / "toy_report_types.py")
IMPORT = Source("import", "test", called_ae="kp-proj")


class Installation:
    """A data directory with project ``proj``, an ingestor and a processing engine on it."""

    def __init__(self, tmp_path: Path, **processing: Any) -> None:
        overrides = {f"processing.{k}": v for k, v in processing.items()}
        self.settings = Settings().with_overrides(  # type: ignore[call-arg]  # data_dir comes from with_overrides
            data_dir=tmp_path,
            **{
                "storage.fsync": False,
                "processing.plugins": [PLUGIN],
                "processing.poll_interval": 0.05,
                "processing.retry_delay": 0.05,
                "processing.settle_time": 0.0,
                **overrides,
            },
        )
        self.ingestor = open_ingestor(self.settings)
        migrate(self.ingestor.engine)
        create_project(self.ingestor.engine, "proj")
        self.processing = ProcessingEngine(self.settings, self.ingestor.engine)
        self.flow = self.processing.flow

    def ingest(self, datasets: Sequence[Dataset], source: Source = IMPORT) -> list[int]:
        """Ingest; returns the session ids touched."""
        acquisitions = {self.ingestor.ingest_bytes([to_bytes(ds)], source).acquisition_id for ds in datasets}
        with reading(self.ingestor.engine) as conn:
            return sorted({session_of_acquisition(conn, a) for a in acquisitions})

    def run(self, datasets: Sequence[Dataset], *report_types: str) -> StudyInfo:
        """Ingest, request, and drive the flow until the study rests; returns it."""
        study_ids = self.flow.request(self.ingest(datasets), report_types, actor="test")
        (study,) = self.processing.run_until_settled(study_ids, timeout=120)
        return self.study(study.study_instance_uid)

    def study(self, uid: str) -> StudyInfo:
        with reading(self.ingestor.engine) as conn:
            return find_study(conn, uid)

    def results(self, study: StudyInfo) -> dict[str, StoredResult]:
        """The study's result files by name, as kept in the shared blob store."""
        with reading(self.ingestor.engine) as conn:
            found = results_of_study(conn, study.id)
        return {r.name: StoredResult(self.flow.store, r.path) for r in found}

    def close(self) -> None:
        self.processing.stop()
        self.ingestor.close()


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Installation]:
    installation = Installation(tmp_path, max_attempts=2, options={})
    yield installation
    installation.close()


@dataclass(frozen=True)
class StoredResult:
    """A result file in the blob store."""

    store: BlobStore
    key: str

    def read_text(self) -> str:
        return self.store.get(self.key).decode()


def _make(tmp_path: Path, **processing: Any) -> Installation:
    return Installation(tmp_path, **processing)


def test_a_study_is_checked_processed_and_finished_with_results(install: Installation) -> None:
    study = install.run(make_study(series=1, instances=5), "toy_count")

    assert study.stage == "Finished"
    assert [h.stage for h in study.history] == ["Importing", "Processing", "Finished"]
    assert [(j.report_type, j.state, j.attempts) for j in study.jobs] == [("toy_count", "succeeded", 1)]
    results = install.results(study)
    assert results["count.csv"].read_text().splitlines()[1].endswith(",5")
    body = json.loads(results["results.json"].read_text())
    assert body["measurements"]["instances"] == 5
    assert body["measurements"]["Modality"] == "CT"
    assert body["inputs"]["image"][0]["instances"] == 5


def test_a_raising_processor_fails_the_study_with_its_traceback_then_reprocessing_works(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "fail"
    marker.touch()
    install = _make(tmp_path / "data", max_attempts=2, options={"toy_flaky": {"fail_marker": str(marker)}})
    try:
        datasets = make_study(series=1, instances=3)
        study = install.run(datasets, "toy_flaky")

        assert study.stage == "Failed"
        assert "RuntimeError: the toy processor was told to fail" in study.reason
        (job,) = study.jobs
        assert (job.state, job.attempts) == ("failed", 2)
        log = (job_workdir(install.settings, job.id, 2) / "job.log").read_text()
        assert "Traceback" in log and "the toy processor was told to fail" in log
        traceback = json.loads((job_workdir(install.settings, job.id, 1) / "error.json").read_text())[
            "traceback"
        ]
        assert "raise RuntimeError" in traceback
        assert install.ingestor.engine  # the input is kept: every instance still indexed
        with reading(install.ingestor.engine) as conn:
            assert len(session_blob_keys(conn, install.ingest(datasets[:1])[0])) == 3

        marker.unlink()
        install.flow.reprocess(study.study_instance_uid, actor="test")
        (again,) = install.processing.run_until_settled([study.id], timeout=120)
        assert again.stage == "Finished"
        assert install.study(study.study_instance_uid).jobs[0].attempts == 1
    finally:
        install.close()


def test_quality_control_approve_reject_and_rerun(install: Installation) -> None:
    approved = install.run(make_study(series=1, instances=2), "toy_qc")
    assert approved.stage == "QualityControl"
    install.flow.review(approved.study_instance_uid, approve=True, reviewer="rev@example.org", comment="fine")
    study = install.study(approved.study_instance_uid)
    assert (study.stage, study.history[-1].actor, study.reason) == ("Finished", "rev@example.org", "fine")

    rejected = install.run(make_study(series=1, instances=2), "toy_qc")
    install.flow.review(
        rejected.study_instance_uid, approve=False, reviewer="rev@example.org", comment="bad mask"
    )
    assert install.study(rejected.study_instance_uid).stage == "Failed"
    assert "bad mask" in install.study(rejected.study_instance_uid).reason

    rerun = install.run(make_study(series=1, instances=2), "toy_qc")
    install.flow.review(
        rerun.study_instance_uid, approve=False, reviewer="r@x.org", comment="again", rerun=True
    )
    (again,) = install.processing.run_until_settled([rerun.id], timeout=120)
    assert again.stage == "QualityControl"
    with pytest.raises(InvalidState):
        install.flow.review(approved.study_instance_uid, approve=True, reviewer="r@x.org")


def _without_middle_slice() -> list[Dataset]:
    study = make_study(series=1, instances=9)
    return [ds for ds in study if ds.InstanceNumber != 5]


def _uneven_spacing() -> list[Dataset]:
    study = make_study(series=1, instances=8)
    for ds in study:  # 1 mm apart, but the last three shifted by 0.4 mm
        if ds.InstanceNumber >= 6:
            ds.ImagePositionPatient = [-4, -4, ds.InstanceNumber - 1 + 0.4]
    return study


@pytest.mark.parametrize(
    ("datasets", "code", "words"),
    [
        (_without_middle_slice, "missing-slice", "slice 5 of 9 missing"),
        (_uneven_spacing, "uneven-spacing", "uneven slice spacing"),
        (lambda: make_study(series=1, instances=4, modality="PT"), "required-series-missing", "image"),
        (
            lambda: make_study(
                series=1, instances=3, ImagePositionPatient=None, ImageOrientationPatient=None
            ),
            "missing-tag",
            "ImagePositionPatient missing in 3 of 3 instances",
        ),
    ],
    ids=["missing-slice", "uneven-spacing", "no-matching-series", "missing-geometry"],
)
def test_a_failed_check_fails_the_study_with_its_finding_and_runs_nothing(
    install: Installation, datasets: Any, code: str, words: str
) -> None:
    study = install.run(datasets(), "toy_count")

    assert study.stage == "Failed"
    assert words in study.reason
    assert code in [f.code for f in study.findings]
    assert study.jobs == []


def test_a_missing_required_tag_is_a_finding(install: Installation) -> None:
    datasets = make_study(series=1, instances=3)
    del datasets[1].ImagePositionPatient  # the required tag of the toy input, absent in one instance
    study = install.run(datasets, "toy_count")

    assert study.stage == "Failed"
    assert "missing-tag" in [f.code for f in study.findings]
    assert "ImagePositionPatient" in study.reason


def test_unknown_report_type_is_refused_before_anything_is_written(install: Installation) -> None:
    sessions = install.ingest(make_study(series=1, instances=1))
    with pytest.raises(UnknownReportType, match="no_such_report"):
        install.flow.request(sessions, ["no_such_report"], actor="test")
    with reading(install.ingestor.engine) as conn:
        assert list_studies(conn) == []


def test_a_project_rule_runs_on_settled_dicom_arrivals_and_new_data_opens_a_version(
    install: Installation,
) -> None:
    with writing(install.ingestor.engine) as conn:
        project_id = conn.execute(select(Project.id).where(Project.label == "proj")).scalar_one()
        add_rule(conn, int(project_id), "toy_count", {"Modality": "^CT$"})
        add_rule(conn, int(project_id), "toy_qc", {"Modality": "^MR$"})
    dimse = Source("dimse", "storescu@127.0.0.1", calling_ae="SCU", called_ae="kp-proj")
    datasets = make_study(series=1, instances=4)
    install.ingest(datasets[:3], dimse)

    assert install.flow.track() == 1
    uid = datasets[0].StudyInstanceUID
    assert (install.study(uid).stage, install.study(uid).report_types) == ("Importing", ["toy_count"])
    install.flow.promote_settled()
    (done,) = install.processing.run_until_settled([install.study(uid).id], timeout=120)
    assert (done.stage, done.version) == ("Finished", 1)

    install.ingest(datasets[3:], dimse)  # a late instance: the finished version stays, a new one opens
    install.flow.track()
    assert (install.study(uid).version, install.study(uid).stage) == (2, "Importing")
    install.flow.promote_settled()
    (second,) = install.processing.run_until_settled([install.study(uid).id], timeout=120)
    assert second.stage == "Finished"
    assert json.loads(install.results(second)["results.json"].read_text())["measurements"]["instances"] == 4


def test_instances_of_an_import_that_runs_the_flow_itself_are_left_to_it(install: Installation) -> None:
    datasets = make_study(series=1, instances=2)
    sessions = install.ingest(datasets, Source("import-flow", "cli", called_ae="kp-proj"))

    assert install.flow.track() == 0  # a server's tracker opens no version of its own meanwhile
    (study_id,) = install.flow.request(sessions, ["toy_count"], actor="cli import")
    (done,) = install.processing.run_until_settled([study_id], timeout=120)
    assert (done.stage, done.version) == ("Finished", 1)


def test_derived_series_are_filed_in_the_study_without_opening_a_version(tmp_path: Path) -> None:
    install = _make(tmp_path, nodes={"archive": {"host": "127.0.0.1", "port": 9, "ae_title": "NOWHERE"}})
    try:
        datasets = make_study(series=1, instances=2)
        study = install.run(datasets, "toy_capture")
        assert study.stage == "Finished"
        assert (
            install.run(make_study(series=1, instances=2), "toy_capture").stage == "Finished"
        )  # ingest reused
        install.flow.track()
        assert install.study(study.study_instance_uid).version == 1
        with reading(install.ingestor.engine) as conn:
            rows = conn.execute(
                select(Instance.source, Acquisition.series_description).join(
                    Acquisition, Acquisition.id == Instance.acquisition_id
                )
            ).all()
        sources = sorted((r.source.split(":")[0], r.series_description) for r in rows)
        assert ("pipeline", "toy capture") in sources
        with reading(install.ingestor.engine) as conn:
            items = list_outbox(conn)
        assert [(item.node, item.state) for item in items] == [("archive", "pending")] * 2
    finally:
        install.close()


def test_a_job_over_its_timeout_is_killed_and_fails(tmp_path: Path) -> None:
    options = {"toy_slow": {"started_marker": str(tmp_path / "started"), "seconds": 30}}
    install = _make(tmp_path / "data", timeout=1.0, max_attempts=1, options=options)
    try:
        study = install.run(make_study(series=1, instances=2), "toy_slow")  # how soon: bench/timings.py
        assert (study.stage, study.jobs[0].error) == ("Failed", "timed out and was stopped")
    finally:
        install.close()


def _localizer() -> list[Dataset]:
    """One CT series whose slices lie in three orientations (a three-plane localizer)."""
    planes = [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1]]
    datasets = make_study(series=1, instances=3)
    for ds, plane in zip(datasets, planes, strict=True):
        ds.ImageOrientationPatient = plane
    return datasets


def test_mixed_orientation_fails_a_volume_input_in_the_checks_and_runs_nothing(install: Installation) -> None:
    study = install.run(_localizer(), "ct_volumetry")

    assert study.stage == "Failed"
    assert [(f.code, f.severity) for f in study.findings] == [("mixed-orientation", "error")]
    assert "slices in 3 orientations cannot be stacked into one volume" in study.reason
    assert study.jobs == []


def test_a_deterministic_processing_error_fails_the_job_at_once_with_its_reason(
    install: Installation,
) -> None:
    datasets = make_study(series=1, instances=4)
    datasets[2].PixelSpacing = [0.6, 0.6]  # the checks pass; the volume cannot be stacked
    study = install.run(datasets, "ct_volumetry")

    assert study.stage == "Failed"
    (job,) = study.jobs
    assert (job.state, job.attempts) == ("failed", 1)  # max_attempts is 2: not retried
    assert job.error.startswith("mixed PixelSpacing")
    assert "ct_volumetry: mixed PixelSpacing" in study.reason


def test_nifti_export_that_exports_nothing_fails_with_the_reason(install: Installation) -> None:
    study = install.run(_localizer(), "nifti_export")

    assert study.stage == "Failed"
    assert [(f.code, f.severity) for f in study.findings] == [("mixed-orientation", "warning")]
    (job,) = study.jobs
    assert (job.state, job.attempts) == ("failed", 1)
    assert "no image series could be exported to NIfTI" in study.reason
    assert "series 1 (CT series 1): mixed ImageOrientationPatient" in study.reason
    assert "all report types succeeded" not in study.reason


def test_an_instance_number_gap_with_complete_positions_only_warns(install: Installation) -> None:
    datasets = make_study(series=1, instances=5)
    for ds in datasets[2:]:  # numbers 1, 2, 4, 5, 6 at positions 0-4 mm: no slice is missing
        ds.InstanceNumber += 1
    study = install.run(datasets, "toy_count")

    assert study.stage == "Finished"
    assert [(f.code, f.severity) for f in study.findings] == [("instance-number-gap", "warning")]
    assert "instance numbers 3 missing" in study.findings[0].message


def test_reprocessing_another_report_type_on_a_failed_study_follows_the_new_run(tmp_path: Path) -> None:
    marker = tmp_path / "fail"
    marker.touch()
    install = _make(tmp_path / "data", max_attempts=1, options={"toy_flaky": {"fail_marker": str(marker)}})
    try:
        failed = install.run(make_study(series=1, instances=3), "toy_flaky")
        assert failed.stage == "Failed"

        install.flow.reprocess(failed.study_instance_uid, ["toy_count"], actor="test")
        (again,) = install.processing.run_until_settled([failed.id], timeout=120)

        assert (again.stage, again.reason) == ("Finished", "all report types succeeded")
        study = install.study(failed.study_instance_uid)
        assert {(j.report_type, j.state) for j in study.jobs} == {
            ("toy_flaky", "failed"),  # the old run's job keeps its outcome
            ("toy_count", "succeeded"),
        }
        assert [h.stage for h in study.history][-2:] == ["Processing", "Finished"]

        install.flow.reprocess(failed.study_instance_uid, ["toy_flaky"], actor="test")  # still failing
        (third,) = install.processing.run_until_settled([failed.id], timeout=120)
        assert third.stage == "Failed"
        assert third.reason.startswith("toy_flaky: RuntimeError")
    finally:
        install.close()


def test_reprocessing_that_the_checks_block_fails_the_study_with_the_new_reason(
    install: Installation,
) -> None:
    finished = install.run(_localizer(), "toy_count")  # mixed orientation only warns toy_count
    assert finished.stage == "Finished"

    install.flow.reprocess(finished.study_instance_uid, ["ct_volumetry"], actor="test")
    blocked = install.study(finished.study_instance_uid)
    assert blocked.stage == "Failed"
    assert "cannot be stacked into one volume" in blocked.reason
    assert [h.stage for h in blocked.history][-2:] == ["Processing", "Failed"]

    install.flow.reprocess(finished.study_instance_uid, ["toy_count"], actor="test")
    (again,) = install.processing.run_until_settled([finished.id], timeout=120)
    assert (again.stage, again.reason) == ("Finished", "all report types succeeded")


def test_the_periodic_job_recovery_leaves_a_job_of_this_node_running(tmp_path: Path) -> None:
    """Job recovery runs now and then (under its lease), not only at start: a job this engine runs right now
    stays running (before, the first periodic round put it back in the queue while its process ran on)."""
    marker = tmp_path / "started"
    options = {"toy_slow": {"started_marker": str(marker), "seconds": 4}}
    install = _make(tmp_path / "data", max_attempts=3, heartbeat=0.2, stale_after=1.5, options=options)
    try:
        sessions = install.ingest(make_study(series=1, instances=2))
        study_ids = install.flow.request(sessions, ["toy_slow"], actor="test")

        def started() -> bool:
            install.processing.step()
            return marker.exists()

        wait_until(started, timeout=60)
        rounds_until = time.monotonic() + 2.0  # more than the recovery interval (stale_after / 3)
        while time.monotonic() < rounds_until:
            install.processing.step()
            time.sleep(0.05)
        with reading(install.ingestor.engine) as conn:
            assert job_row(conn, 1).state == "running"
        (study,) = install.processing.run_until_settled(study_ids, timeout=120)
        assert (study.stage, study.jobs[0].attempts) == ("Finished", 1)
        assert len(marker.read_text().split()) == 1  # it ran once
    finally:
        install.close()
