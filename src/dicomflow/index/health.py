"""Repository of health: whether the index answers (``GET /ready``)."""

from __future__ import annotations

from sqlalchemy import Connection, text


def ping(conn: Connection) -> None:
    """Read the schema's revision: the index answers and holds dicomflow's tables (raises if not)."""
    conn.execute(text("SELECT version_num FROM alembic_version")).all()
