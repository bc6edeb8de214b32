"""The processing use cases on a real index and blob store: the project wall lives in the use case (a
caller sees and acts in their projects only; ``None``, the local operator, sees every project), and what they
return are ``dicomflow.schemas`` models whose stages and states are the ``dicomflow.flow`` enums."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dicomflow import schemas
from dicomflow.config import Settings
from dicomflow.errors import InvalidState, NotFound, PermissionDenied, UnknownProject
from dicomflow.flow import JobState, Stage
from dicomflow.index import Role, UserInfo, reading
from dicomflow.index.studies import session_of_acquisition, study_by_id
from dicomflow.ingest import Source, open_ingestor
from dicomflow.runtime import Application, open_application
from dicomflow.usecases import jobs, reprocess, review, rules, studies
from dicomflow.usecases.access import Access
from factories import create_project, make_study, to_bytes

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)


@dataclass
class Flowing:
    app: Application
    uid: str
    study_id: int

    def caller(self, role: Role | None) -> Access:
        """A user with ``role`` in project ``proj`` (None: a member of no project)."""
        user = UserInfo(1, "someone@example.org", Role.VIEWER, datetime.now(UTC))
        return Access(user, {} if role is None else {("default", "proj"): role})


@pytest.fixture
def flowing(tmp_path: Path) -> Iterator[Flowing]:
    """A study of project ``proj`` that went through the flow with no report type (→ Finished)."""
    settings = Settings().with_overrides(data_dir=tmp_path, **{"storage.fsync": False})  # type: ignore[call-arg]  # dotted keys are not parameter names mypy knows
    app = open_application(settings)
    create_project(app.engine, "proj")
    ingestor = open_ingestor(settings)
    try:
        datasets = make_study(series=1, instances=2)
        source = Source("import", "test", called_ae="kp-proj")
        acquisition = ingestor.ingest_bytes([to_bytes(ds) for ds in datasets], source).acquisition_id
    finally:
        ingestor.close()
    with reading(app.engine) as conn:
        session_id = session_of_acquisition(conn, acquisition)
    (study_id,) = app.flow.request([session_id], [], actor="test")
    try:
        yield Flowing(app, str(datasets[0].StudyInstanceUID), study_id)
    finally:
        app.close()


def test_the_repository_and_the_use_case_carry_the_flows_enums(flowing: Flowing) -> None:
    with reading(flowing.app.engine) as conn:
        stored = study_by_id(conn, flowing.study_id)
    assert stored.stage is Stage.FINISHED and all(isinstance(h.stage, Stage) for h in stored.history)

    study = studies.get_study(flowing.app, None, flowing.uid)

    assert isinstance(study, schemas.Study) and study.stage is Stage.FINISHED
    assert [h.stage for h in study.history] == [Stage.IMPORTING, Stage.FINISHED]
    assert study.model_dump(mode="json")["stage"] == "Finished"
    assert jobs.list_jobs(flowing.app, None, JobState.QUEUED) == []


def test_a_caller_sees_their_projects_and_the_operator_sees_every_one(flowing: Flowing) -> None:
    app, uid = flowing.app, flowing.uid

    assert [s.study_instance_uid for s in studies.list_studies(app, None)] == [uid]
    assert [s.study_instance_uid for s in studies.list_studies(app, flowing.caller(Role.VIEWER))] == [uid]
    assert studies.list_studies(app, flowing.caller(None)) == []
    with pytest.raises(NotFound) as hidden:
        studies.get_study(app, flowing.caller(None), uid)
    assert uid not in hidden.value.message  # as for a UID that does not exist
    with pytest.raises(NotFound, match="1.2.3"):  # the operator is told which UID is unknown
        studies.get_study(app, None, "1.2.3")


def test_an_unknown_project_is_an_error_for_the_operator_only(flowing: Flowing) -> None:
    with pytest.raises(UnknownProject):
        studies.list_studies(flowing.app, None, project="nosuch")
    assert studies.list_studies(flowing.app, flowing.caller(None), project="nosuch") == []
    with pytest.raises(NotFound):
        rules.list_rules(flowing.app, flowing.caller(Role.VIEWER), "nosuch")


def test_roles_decide_who_reviews_and_reprocesses(flowing: Flowing) -> None:
    app, uid = flowing.app, flowing.uid

    with pytest.raises(PermissionDenied, match="cannot review"):
        review.approve(app, flowing.caller(Role.VIEWER), uid)
    with pytest.raises(PermissionDenied, match="cannot reprocess"):
        reprocess.reprocess(app, flowing.caller(Role.VIEWER), uid, ["anything"])
    with pytest.raises(InvalidState, match="not in QualityControl"):
        review.approve(app, flowing.caller(Role.REVIEWER), uid)
    with pytest.raises(InvalidState, match="needs a comment"):
        review.reject(app, None, uid, comment="  ", actor="operator")


def test_rules_are_added_listed_and_deleted(flowing: Flowing) -> None:
    app = flowing.app
    report_type = app.registry.names()[0]

    added = rules.add_rule(app, "proj", report_type, {"Modality": "CT"})

    assert added == schemas.Rule(
        id=added.id, project="proj", report_type=report_type, match={"Modality": "CT"}
    )
    assert rules.list_rules(app, flowing.caller(Role.VIEWER), "proj") == [added]
    rules.delete_rule(app, added.id)
    assert rules.list_rules(app, None) == []
    with pytest.raises(NotFound):
        rules.delete_rule(app, added.id)
