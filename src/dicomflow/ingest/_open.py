"""The ingest stack of one process: its own index engine (with the ingest's synchronous setting) and store."""

from __future__ import annotations

from dicomflow.config import Settings
from dicomflow.index import create_index_engine
from dicomflow.ingest._ingest import Ingestor
from dicomflow.storage import open_blob_store


def open_ingestor(settings: Settings) -> Ingestor:
    """Engine, blob store and ingestor of one process (every receive path opens its ingest this way).

    The engine is the ingestor's own: with ``index.sqlite_synchronous = NORMAL`` its commits are made
    durable in batches by the blob store (one WAL fsync per batch), not one fsync per commit as on the
    API's engine. :meth:`Ingestor.close` disposes of it. With ``performance.fast_paths`` on, the
    per-instance statements go to the ``sqlite3`` driver directly (``index/_rows.py``).
    """
    engine = create_index_engine(
        settings.index_url,
        sqlite_synchronous=settings.index.sqlite_synchronous,
        direct_sqlite=settings.performance.fast_paths,
    )
    store = open_blob_store(settings)
    return Ingestor(settings, engine, store)
