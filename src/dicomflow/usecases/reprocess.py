"""Reprocessing: run a study's report types again (``force_reprocessing``), its checks first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dicomflow import schemas
from dicomflow.index import reading
from dicomflow.index.studies import study_by_id
from dicomflow.usecases import _schemas
from dicomflow.usecases.access import REVIEW, UPLOAD, Access
from dicomflow.usecases.studies import actor_of, walled_study

if TYPE_CHECKING:
    from dicomflow.runtime import Application


def reprocess(
    app: Application,
    caller: Access | None,
    study_instance_uid: str,
    report_types: Sequence[str] = (),
    *,
    actor: str = "cli",
) -> schemas.Study:
    """Check a study's newest version again and queue fresh jobs; returns the study as it is then (in
    Processing, or Failed when the new checks block it).

    Parameters
    ----------
    caller
        Who asks: an uploader, reviewer or admin of the study's project (None: the local operator, named
        by ``actor``).
    report_types
        The report types to run; by default those requested before.

    Raises
    ------
    NotFound
        No such study in the caller's projects.
    PermissionDenied
        The caller's role in its project does not allow reprocessing.
    InvalidState
        The study is still running, or has no report type to run.
    UnknownReportType
        A named report type is not installed.
    """
    where = None
    if caller is not None:
        with reading(app.engine) as conn:
            study = walled_study(conn, caller, study_instance_uid, None, UPLOAD | REVIEW, "reprocess")
        where = (study.group, study.project)
    study_id = app.flow.reprocess(
        study_instance_uid, report_types, actor=actor_of(caller, actor), project=where
    )
    with reading(app.engine) as conn:
        return _schemas.study(study_by_id(conn, study_id))
