"""Review in QualityControl: the queue of studies waiting, approve (→ Finished), reject (→ Failed, or run
again). Reviewers and admins of a study's project decide; the history and the event log name them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomflow import schemas
from dicomflow.errors import InvalidState
from dicomflow.flow import Stage
from dicomflow.index import reading
from dicomflow.index.studies import list_studies, study_by_id
from dicomflow.usecases import _schemas
from dicomflow.usecases.access import REVIEW, Access
from dicomflow.usecases.studies import actor_of, walled_study

if TYPE_CHECKING:
    from dicomflow.runtime import Application


def waiting_for_review(app: Application, caller: Access | None) -> list[schemas.Study]:
    """Studies in QualityControl (each one's newest version), of the caller's projects."""
    with reading(app.engine) as conn:
        waiting = list_studies(conn, stage=Stage.QUALITY_CONTROL)
    return _schemas.studies(waiting if caller is None else caller.visible(waiting))


def approve(
    app: Application, caller: Access | None, study_instance_uid: str, *, comment: str = "", actor: str = ""
) -> schemas.Study:
    """Approve a study's results: QualityControl → Finished.

    Parameters
    ----------
    caller
        The reviewer (None: the local operator, named by ``actor``).
    comment
        The reviewer's note (the reason in the history; "approved" without one).

    Raises
    ------
    NotFound
        No such study in the caller's projects.
    PermissionDenied
        The caller is neither a reviewer nor an admin of its project.
    InvalidState
        The study is not in QualityControl.
    """
    return _review(app, caller, study_instance_uid, approve=True, comment=comment, actor=actor)


def reject(
    app: Application,
    caller: Access | None,
    study_instance_uid: str,
    *,
    comment: str,
    rerun: bool = False,
    actor: str = "",
) -> schemas.Study:
    """Reject a study's results: QualityControl → Failed (or → Processing, running its jobs again, with
    ``rerun``). The comment is the reason users see.

    Raises
    ------
    InvalidState
        The comment is blank, or the study is not in QualityControl.
    NotFound, PermissionDenied
        As for :func:`approve`.
    """
    if not comment.strip():
        raise InvalidState("a rejection needs a comment saying why")
    return _review(app, caller, study_instance_uid, approve=False, comment=comment, rerun=rerun, actor=actor)


def _review(
    app: Application,
    caller: Access | None,
    study_instance_uid: str,
    *,
    approve: bool,
    comment: str,
    actor: str,
    rerun: bool = False,
) -> schemas.Study:
    where = None
    if caller is not None:
        with reading(app.engine) as conn:
            study = walled_study(conn, caller, study_instance_uid, None, REVIEW, "review")
        where = (study.group, study.project)
    study_id = app.flow.review(
        study_instance_uid,
        approve=approve,
        reviewer=actor_of(caller, actor),
        comment=comment,
        rerun=rerun,
        project=where,
    )
    with reading(app.engine) as conn:
        return _schemas.study(study_by_id(conn, study_id))
