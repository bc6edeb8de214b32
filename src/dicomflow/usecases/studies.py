"""Studies in the processing flow: list them, read one; each caller sees the studies of their projects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection

from dicomflow import schemas
from dicomflow.flow import Stage
from dicomflow.index import Role, reading
from dicomflow.index import studies as repository
from dicomflow.index.studies import StudyInfo
from dicomflow.usecases import _schemas
from dicomflow.usecases.access import READ, Access

if TYPE_CHECKING:
    from dicomflow.runtime import Application


def list_studies(
    app: Application,
    caller: Access | None,
    *,
    project: str | None = None,
    stage: Stage | str | None = None,
    latest_only: bool = True,
) -> list[schemas.Study]:
    """Study versions (newest first; by default each study's newest) with stage, history, findings, jobs.

    Parameters
    ----------
    caller
        Who asks: only studies of their projects are listed (None: the local operator, who sees all).
    project, stage
        Only studies of this project label, in this stage.
    latest_only
        Each study's newest version only (else every version).

    Raises
    ------
    UnknownProject
        The local operator named a project that does not exist (a walled caller gets an empty list, which
        does not tell an unknown project from one they may not see).
    """
    with reading(app.engine) as conn:
        if project is not None and caller is None:
            repository.project_id_by_label(conn, project)
        found = repository.list_studies(conn, project=project, stage=stage, latest_only=latest_only)
    return _schemas.studies(found if caller is None else caller.visible(found))


def get_study(
    app: Application, caller: Access | None, study_instance_uid: str, version: int | None = None
) -> schemas.Study:
    """The newest (or a given) version of a study, with its stage, history, findings and jobs.

    Raises
    ------
    NotFound
        No version of the study in the caller's projects.
    """
    with reading(app.engine) as conn:
        return _schemas.study(walled_study(conn, caller, study_instance_uid, version, READ, "read it"))


def walled_study(
    conn: Connection,
    caller: Access | None,
    study_instance_uid: str,
    version: int | None,
    allowed: frozenset[Role],
    action: str,
) -> StudyInfo:
    """The study version in a project the caller sees, once their role there allows ``action``.

    Raises
    ------
    NotFound
        No such version in the caller's projects (another project's study looks like an unknown one).
    PermissionDenied
        The caller's role in the study's project does not allow ``action``.
    """
    sees = None if caller is None else caller.sees
    study = repository.find_study(conn, study_instance_uid, version, sees=sees)
    if caller is not None:
        caller.check(study.group, study.project, allowed, action)
    return study


def actor_of(caller: Access | None, operator: str) -> str:
    """Who the history and event log name: the caller's e-mail, or the local operator's given name."""
    return operator if caller is None else caller.user.email
