"""Repository of project rules: report types to run on new studies whose tags match.

Each function runs inside the caller's connection (``reading`` / ``writing``) and returns frozen dataclasses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select

from dicomflow.errors import NotFound
from dicomflow.index._models import Project, ProjectRule, utcnow


@dataclass(frozen=True)
class RuleInfo:
    """A project rule: run ``report_type`` on new studies whose tags match ``match`` (keyword → regex)."""

    id: int
    project: str
    report_type: str
    match: dict[str, str]


def add_rule(conn: Connection, project_id: int, report_type: str, match: dict[str, str]) -> int:
    """Add a project rule; returns its id."""
    return int(
        conn.execute(
            insert(ProjectRule)
            .values(
                project_id=project_id, report_type=report_type, match=json.dumps(match), created_at=utcnow()
            )
            .returning(ProjectRule.id)
        ).scalar_one()
    )


def delete_rule(conn: Connection, rule_id: int) -> None:
    """Remove a project rule."""
    if conn.execute(delete(ProjectRule).where(ProjectRule.id == rule_id)).rowcount == 0:
        raise NotFound(f"no project rule with id {rule_id}")


def list_rules(conn: Connection, project_id: int | None = None) -> list[RuleInfo]:
    """Project rules, of one project or all."""
    query = (
        select(*ProjectRule.__table__.c, Project.label)
        .join(Project, Project.id == ProjectRule.project_id)
        .order_by(ProjectRule.id)
    )
    if project_id is not None:
        query = query.where(ProjectRule.project_id == project_id)
    return [RuleInfo(r.id, r.label, r.report_type, json.loads(r.match)) for r in conn.execute(query).all()]
