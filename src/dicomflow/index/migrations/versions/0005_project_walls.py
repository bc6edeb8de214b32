"""project walls: the same instance may be kept in two projects, sharing one blob

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-03 08:00:00.000000

Blob keys name their content (UIDs and a content hash), so identical bytes sent into two projects are one
blob with one instance row per project: the unique constraint on ``instances.blob_key`` becomes an index.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_instances_blob_key"), type_="unique")
        batch_op.create_index(batch_op.f("ix_instances_blob_key"), ["blob_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instances_blob_key"))
        batch_op.create_unique_constraint(batch_op.f("uq_instances_blob_key"), ["blob_key"])
