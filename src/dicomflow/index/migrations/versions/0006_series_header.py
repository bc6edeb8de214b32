"""series header: each acquisition keeps the attributes of its first instance the icometrix API describes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:00:00.000000

``acquisitions.series_header`` holds, as JSON, the ``dicom.SERIES_KEYWORDS`` of the series' first instance
(``{keyword: [values as text]}``), written when the series is first placed, so that listing a study's series
opens no file. Existing acquisitions are filled here from their first instance's blob when the caller names
the blob store (``migrate(engine, blob_read=store.get)``, as ``open_application`` and ``dicomflow serve``
do); any left empty are filled by the first request that lists them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op

from dicomflow.dicom import read_series_attributes

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("acquisitions", sa.Column("series_header", sa.Text(), nullable=True))
    blob_read: Callable[[str], bytes] | None = context.config.attributes.get("blob_read")
    if blob_read is not None:
        _fill(op.get_bind(), blob_read)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite >= 3.35 drops it in place (no copy of the table,
        op.execute("ALTER TABLE acquisitions DROP COLUMN series_header")  # which the foreign keys forbid)
    else:
        op.drop_column("acquisitions", "series_header")


def _fill(conn: sa.Connection, blob_read: Callable[[str], bytes]) -> None:
    first = sa.text(
        "SELECT a.id, (SELECT i.blob_key FROM instances i WHERE i.acquisition_id = a.id"
        " ORDER BY i.id LIMIT 1) FROM acquisitions a WHERE a.series_header IS NULL"
    )
    store = sa.text("UPDATE acquisitions SET series_header = :header WHERE id = :id")
    for acquisition_id, key in conn.execute(first).all():
        if key is None:
            continue  # no instance yet: the series is described when one arrives or is listed
        try:
            data = blob_read(key)
        except Exception:  # a missing or unreadable blob (StorageError), a malformed key (ValueError)
            continue
        header = json.dumps(read_series_attributes(data), separators=(",", ":"))
        conn.execute(store, {"header": header, "id": acquisition_id})
