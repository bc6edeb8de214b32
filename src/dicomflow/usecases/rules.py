"""Project rules: run a report type on a project's new studies whose tags match. Admins add and remove
them (the adapters check that); a project's members read them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dicomflow import schemas
from dicomflow.index import reading, writing
from dicomflow.index import rules as repository
from dicomflow.index.studies import project_id_by_label
from dicomflow.usecases import _schemas
from dicomflow.usecases.access import READ, Access, project_of

if TYPE_CHECKING:
    from dicomflow.runtime import Application


def list_rules(app: Application, caller: Access | None, project: str | None = None) -> list[schemas.Rule]:
    """The rules of one project (by label), or of every project.

    Raises
    ------
    NotFound
        The caller is not a member of ``project`` (or it does not exist).
    UnknownProject
        The local operator or an admin named a project that does not exist.
    """
    project_id = None
    if project is not None and caller is not None:
        project_id = project_of(app.engine, caller, project, READ, "read its rules")
    with reading(app.engine) as conn:
        if project is not None and caller is None:
            project_id = project_id_by_label(conn, project)
        return [_schemas.rule(rule) for rule in repository.list_rules(conn, project_id)]


def add_rule(app: Application, project: str, report_type: str, match: Mapping[str, str]) -> schemas.Rule:
    """Run ``report_type`` on new studies of ``project`` (label) whose tags all match ``match`` (DICOM
    keyword → case-insensitive regex; empty: every new study).

    Raises
    ------
    UnknownReportType
        The report type is not installed (checked first).
    UnknownProject
        No project, or several, has that label.
    """
    app.registry.get(report_type)
    with writing(app.engine) as conn:
        project_id = project_id_by_label(conn, project)
        rule_id = repository.add_rule(conn, project_id, report_type, dict(match))
        return next(_schemas.rule(r) for r in repository.list_rules(conn, project_id) if r.id == rule_id)


def delete_rule(app: Application, rule_id: int) -> None:
    """Remove a project rule (studies already queued keep their jobs).

    Raises
    ------
    NotFound
        No rule with that id.
    """
    with writing(app.engine) as conn:
        repository.delete_rule(conn, rule_id)
