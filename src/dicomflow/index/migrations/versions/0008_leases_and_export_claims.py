"""leases and export claims: background duties run on one node at a time; each export is sent once

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 14:30:00.000000

``leases`` holds one row per background duty (the arrival tracker, the outbox, upload expiry, job recovery,
connector pollers): the node holding it and when the lease ends unless renewed. ``outbox.claimed_by`` and
``outbox.claimed_until`` mark an export being sent, so that no other sender takes it meanwhile; a crashed
sender's claim ends and the export is retried.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.add_column("outbox", sa.Column("claimed_by", sa.String(length=128), nullable=True))
    op.add_column("outbox", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite >= 3.35 drops them in place (no copy of the table)
        op.execute("ALTER TABLE outbox DROP COLUMN claimed_until")
        op.execute("ALTER TABLE outbox DROP COLUMN claimed_by")
    else:
        op.drop_column("outbox", "claimed_until")
        op.drop_column("outbox", "claimed_by")
    op.drop_table("leases")
