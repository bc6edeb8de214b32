"""``dicomflow worker``: runs jobs of the Celery executor on this host."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from dicomflow.cli._options import DataDir, load_settings, require_index


def worker(
    data_dir: DataDir = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs run at once (default: processing.workers).")
    ] = None,
) -> None:
    """Run jobs announced on the broker (``jobs.broker_url``) until SIGTERM.

    Any host that reaches the index (``index.url``), the blob store and the broker can run one; the servers
    then run ``jobs.executor = "celery"``. Each job is claimed in the index, run in its own process, beaten
    and filed there, so a worker killed mid-job costs one attempt, which another worker runs again. On
    SIGTERM the running attempts stop and go back to the queue.
    """
    from dicomflow.runtime import open_application
    from dicomflow.usecases.jobs import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(data_dir, **{"processing.workers": concurrency})
    require_index(settings)
    application = open_application(settings, migrate_index=False)  # the servers migrate the index
    try:
        code = run_worker(application)
    finally:
        application.close()
    raise typer.Exit(code)
