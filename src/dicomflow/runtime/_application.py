"""The application object: what one dicomflow process works with, built once from the settings."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from dicomflow.config import Settings
from dicomflow.index import create_index_engine, migrate
from dicomflow.ingest import Ingestor, open_ingestor
from dicomflow.storage import FileSystemBlobStore

if TYPE_CHECKING:  # imported on first use: a receiving process needs neither report types nor the flow
    from dicomflow.jobs import Flow
    from dicomflow.pipelines import ReportTypes
    from dicomflow.usecases.uploads import Uploads

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Application:
    """The settings and the services built from them, shared by the adapters of one process.

    Adapters (HTTP, DIMSE, CLI) keep one and hand it to the use cases; nothing else builds an engine, a
    blob store or a flow. The report types, the flow, the upload service and the receive path's ingest are
    made on first use (a receiving process of ``dicomflow serve`` uses only the ingest, and so never imports
    the pipelines: about 3 MiB). :meth:`close` releases them (the engine is disposed of last).
    """

    settings: Settings
    engine: Engine
    store: FileSystemBlobStore
    preloaded_registry: ReportTypes | None = field(default=None, repr=False)

    @cached_property
    def registry(self) -> ReportTypes:
        """The report types ``settings.processing`` names (or those given to :func:`open_application`)."""
        return self.preloaded_registry or load_report_types_of(self.settings)

    @cached_property
    def flow(self) -> Flow:
        """The processing flow over this application's engine, store and report types."""
        from dicomflow.jobs import Flow

        return Flow(self.settings, self.engine, self.store, self.registry)

    @cached_property
    def uploads(self) -> Uploads:
        """The upload service (its import hands studies to the flow)."""
        from dicomflow.usecases.uploads import Uploads

        return Uploads(self.settings, self.engine, self.flow)

    @cached_property
    def ingestor(self) -> Ingestor:
        """The receive path's ingest, opened on first use (its own engine: commits synced in batches)."""
        return open_ingestor(self.settings)

    def sweep_uploads(self, stop: threading.Event) -> None:
        """Resume interrupted upload imports once, then expire abandoned uploads now and then, until ``stop``.

        Once per node: ``dicomflow serve`` runs it in its supervisor, an app built by
        ``create_app(settings)`` in its own lifespan. Of several nodes on one index, only the one holding
        the ``upload-expiry`` lease expires uploads; the lease is renewed between sweeps and released at
        ``stop``.
        """
        from dicomflow.jobs import UPLOAD_EXPIRY, Lease, LeasedDuty

        resumed = self.uploads.resume()
        if resumed:
            LOGGER.warning("resuming the import of %d upload(s)", resumed)
        expiry = LeasedDuty(
            Lease.of(self.settings, self.engine, UPLOAD_EXPIRY),
            self.uploads.expire,
            every=self.settings.uploads.sweep_interval,
        )
        wake = min(self.settings.uploads.sweep_interval, self.settings.cluster.lease_seconds / 3)
        while not stop.wait(wake):
            expiry.run()
        expiry.release()

    def close(self) -> None:
        """Release the upload service, the flow's ingest, the receive ingest, the blob store and the index
        engine (last)."""
        if "uploads" in self.__dict__:  # each only if made
            self.uploads.close()
        if "flow" in self.__dict__:
            self.flow.close()
        if "ingestor" in self.__dict__:
            self.ingestor.close()
        self.store.close()
        self.engine.dispose()


def open_application(
    settings: Settings, *, migrate_index: bool = True, registry: ReportTypes | None = None
) -> Application:
    """Build the application of ``settings``: the index engine (migrated), blob store, report types, flow.

    Parameters
    ----------
    settings
        The installation's settings.
    migrate_index
        Bring the index to the newest schema first (entry points do; ``dicomflow serve``'s worker processes
        do not, their supervisor did before forking them; tests of migrations do not).
    registry
        The report types, loaded already; by default loaded from ``settings.processing`` on first use.
    """
    engine = create_index_engine(settings.index_url)  # FULL: every commit durable (ingest syncs its own)
    store = FileSystemBlobStore(settings.blob_root, fsync=settings.storage.fsync)
    if migrate_index:
        migrate(engine, blob_path=store.path_of)  # 0006 reads the series headers of existing rows
    return Application(settings, engine, store, registry)


def load_report_types_of(settings: Settings) -> ReportTypes:
    """The report types that ``settings.processing`` names (plugins, aliases, options)."""
    from dicomflow.pipelines import load_report_types

    processing = settings.processing
    return load_report_types(processing.plugins, processing.aliases, processing.options)
