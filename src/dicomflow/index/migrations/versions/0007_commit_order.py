"""commit order: on PostgreSQL each instance row records the transaction that wrote it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:00:00.000000

The arrival tracker must find new instances in commit order, not by id: on PostgreSQL a transaction that took
id 10 may commit after one that took id 11 was read. ``instances.xid`` (PostgreSQL only, ``xid8``, default
``pg_current_xact_id()``) lets the tracker read only rows of transactions that have ended (see
``index/arrivals.py``). Rows that exist already get xid 1, below every real transaction id, and a cursor
without a stored xid starts at 1, so what was tracked before stays tracked. ``cursors.position`` becomes
64-bit, since it now holds transaction ids. SQLite needs none of it: its writers are serialised, so id order
is commit order there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column("cursors", "position", type_=sa.BigInteger(), existing_type=sa.Integer())
    # a constant default fills existing rows without rewriting them; new rows take their writer's xid
    op.execute("ALTER TABLE instances ADD COLUMN xid xid8 NOT NULL DEFAULT '1'")
    op.execute("ALTER TABLE instances ALTER COLUMN xid SET DEFAULT pg_current_xact_id()")
    op.execute("CREATE INDEX ix_instances_xid_id ON instances (xid, id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_instances_xid_id")
    op.execute("ALTER TABLE instances DROP COLUMN xid")
    op.alter_column("cursors", "position", type_=sa.Integer(), existing_type=sa.BigInteger())
