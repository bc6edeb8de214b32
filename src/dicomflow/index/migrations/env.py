"""Alembic environment: runs on the connection handed over by ``dicomflow.index.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from dicomflow.index._models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # the alembic command line, for writing new revisions
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    connection = engine.connect()
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
