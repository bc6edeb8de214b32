"""The duties run once per node, in ``dicomflow serve``'s supervisor: the processing engine (tracks
arrivals, runs jobs, delivers exports) and the upload janitor (resumes interrupted imports, expires
abandoned uploads). Of several nodes on one index, each background singleton among them runs on the node
holding its lease (:mod:`dicomflow.jobs`)."""

from __future__ import annotations

import threading

from dicomflow.jobs import ProcessingEngine
from dicomflow.runtime import Application


class Janitors:
    """The processing engine and the upload janitor over the supervisor's application.

    Parameters
    ----------
    application
        The supervisor's application (its engine, flow and uploads); its owner closes it after :meth:`stop`.
    """

    def __init__(self, application: Application) -> None:
        self.processing = ProcessingEngine(application.settings, application.engine, flow=application.flow)
        self._stop = threading.Event()
        self._sweeper = threading.Thread(
            target=application.sweep_uploads, args=(self._stop,), name="upload-janitor", daemon=True
        )

    def start(self) -> None:
        """Resume lost jobs and start the processing loop, then the upload janitor (both on threads)."""
        self.processing.start()
        self._sweeper.start()

    def stop(self) -> None:
        """Stop the upload janitor's sweeps and the processing loop (running attempts resume at the next
        start)."""
        self._stop.set()
        self.processing.stop()
