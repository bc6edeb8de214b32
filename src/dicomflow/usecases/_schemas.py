"""The one place where the index's dataclasses become :mod:`dicomflow.schemas` models (the API's JSON,
which the SDK parses). Field names are the same on both sides, so each is read by attribute."""

from __future__ import annotations

from collections.abc import Iterable

from dicomflow import schemas
from dicomflow.index.jobs import JobInfo
from dicomflow.index.results import ResultInfo
from dicomflow.index.rules import RuleInfo
from dicomflow.index.studies import StudyInfo


def study(info: StudyInfo) -> schemas.Study:
    """A study version with its history, findings and jobs."""
    return schemas.Study.model_validate(info, from_attributes=True)


def studies(infos: Iterable[StudyInfo]) -> list[schemas.Study]:
    """Each of ``infos`` as :func:`study`."""
    return [study(info) for info in infos]


def study_reports(info: StudyInfo, results: Iterable[ResultInfo]) -> schemas.StudyReports:
    """A study version with its result files."""
    return schemas.StudyReports(**dict(study(info)), results=[result(r) for r in results])


def job(info: JobInfo) -> schemas.Job:
    """A job as listed."""
    return schemas.Job.model_validate(info, from_attributes=True)


def result(info: ResultInfo) -> schemas.ResultFile:
    """A result file."""
    return schemas.ResultFile.model_validate(info, from_attributes=True)


def rule(info: RuleInfo) -> schemas.Rule:
    """A project rule."""
    return schemas.Rule.model_validate(info, from_attributes=True)
