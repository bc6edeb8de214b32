"""The application object: what one dicomflow process works with, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from dicomflow.config import Settings
from dicomflow.index import create_index_engine, migrate
from dicomflow.jobs import Flow
from dicomflow.pipelines import ReportTypes, load_report_types
from dicomflow.storage import FileSystemBlobStore
from dicomflow.usecases.uploads import Uploads


@dataclass(frozen=True, eq=False)
class Application:
    """The settings and the services built from them, shared by the adapters of one process.

    Adapters (HTTP, DIMSE, CLI) keep one and hand it to the use cases; nothing else builds an engine, a
    blob store or a flow. :meth:`close` releases them (the engine is disposed of last).
    """

    settings: Settings
    engine: Engine
    store: FileSystemBlobStore
    registry: ReportTypes
    flow: Flow
    uploads: Uploads

    def close(self) -> None:
        """Release the upload service, the flow's ingest and the index engine."""
        self.uploads.close()
        self.flow.close()
        self.engine.dispose()


def open_application(settings: Settings, *, migrate_index: bool = True) -> Application:
    """Build the application of ``settings``: the index engine (migrated), blob store, report types, flow.

    Parameters
    ----------
    settings
        The installation's settings.
    migrate_index
        Bring the index to the newest schema first (every entry point does; tests of migrations do not).
    """
    engine = create_index_engine(settings.index_url)  # FULL: every commit durable (ingest syncs its own)
    if migrate_index:
        migrate(engine)
    store = FileSystemBlobStore(settings.blob_root, fsync=settings.storage.fsync)
    processing = settings.processing
    registry = load_report_types(processing.plugins, processing.aliases, processing.options)
    flow = Flow(settings, engine, store, registry)
    uploads = Uploads(settings, engine, flow)
    return Application(settings, engine, store, registry, flow, uploads)
