"""Background singletons over several nodes: a duty runs only on the node holding its lease in the index.

Every ``dicomflow serve`` runs the same loops; each round, a :class:`LeasedDuty` asks its :class:`Lease`
whether this node holds it, and runs only if so. The holder renews the lease every third of
``cluster.lease_seconds``; a node that stops cleanly releases it; a node that dies (kill -9, power cut)
simply stops renewing, and another node takes the lease over once it has expired.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine

from dicomflow.config import Settings
from dicomflow.index import utcnow, writing
from dicomflow.index.leases import acquire_lease, release_lease

LOGGER = logging.getLogger(__name__)

TRACKER = "tracker"
"""The arrival tracker and study promotion."""
OUTBOX = "outbox"
"""Delivery of exports."""
JOB_RECOVERY = "job-recovery"
"""Requeueing jobs whose worker stopped."""
UPLOAD_EXPIRY = "upload-expiry"
"""Expiring abandoned uploads."""


class Lease:
    """This node's view of one named lease in the index.

    :meth:`held` asks the index at most every third of the lease's length (taking or renewing it) and in
    between answers from memory. It counts itself holder only until two thirds of the lease have passed
    since the last successful renewal began, so that it stops before the index lets another node in, even
    if the index cannot be reached to renew.

    Parameters
    ----------
    engine
        The index.
    name
        The duty (:data:`TRACKER`, :data:`OUTBOX`, ...).
    node_id
        This node (``cluster.node_id``): the holder written in the index.
    seconds
        The lease's length (``cluster.lease_seconds``).
    """

    def __init__(self, engine: Engine, name: str, node_id: str, seconds: float) -> None:
        self.engine = engine
        self.name = name
        self.node_id = node_id
        self.seconds = seconds
        self._held_until = 0.0  # monotonic
        self._next_ask = 0.0

    @classmethod
    def of(cls, settings: Settings, engine: Engine, name: str, holder: str | None = None) -> Lease:
        """Lease ``name`` of this node (``settings.cluster``), or of ``holder`` (a process of its own)."""
        return cls(engine, name, holder or settings.cluster.node_id, settings.cluster.lease_seconds)

    def held(self) -> bool:
        """Whether this node holds the lease now (taking or renewing it when due); never raises."""
        now = time.monotonic()
        if now < self._next_ask:
            return now < self._held_until
        was_held = now < self._held_until
        try:
            with writing(self.engine) as conn:
                got = acquire_lease(conn, self.name, self.node_id, utcnow(), self.seconds)
        except Exception:
            LOGGER.exception("cannot take or renew the lease %r", self.name)
            got = False
        self._next_ask = now + self.seconds / 3
        self._held_until = now + self.seconds * 2 / 3 if got else 0.0
        if got and not was_held:
            LOGGER.info("node %s runs %s (lease taken)", self.node_id, self.name)
        elif was_held and not got:
            LOGGER.warning("node %s no longer runs %s (lease lost)", self.node_id, self.name)
        return got

    def release(self) -> None:
        """Give the lease up if held, so that another node takes it at once; never raises."""
        if time.monotonic() >= self._held_until:
            return
        self._held_until = self._next_ask = 0.0
        try:
            with writing(self.engine) as conn:
                release_lease(conn, self.name, self.node_id)
        except Exception:
            LOGGER.exception("cannot release the lease %r (it expires by itself)", self.name)


class LeasedDuty:
    """Duties run by the node holding one lease: ``run()`` calls each if this node holds it.

    A connector poller, for instance, is ``LeasedDuty(Lease.of(settings, engine, "poll-pacs"), poll)``
    added to the processing engine (:meth:`~dicomflow.jobs.ProcessingEngine.add_duty`).

    Parameters
    ----------
    lease
        The lease.
    duties
        What to run, in order, each round the lease is held; an error is logged and the next duty runs.
    every
        Run at most this often (seconds), 0 = every round.
    """

    def __init__(self, lease: Lease, *duties: Callable[[], object], every: float = 0.0) -> None:
        self.lease = lease
        self.duties = duties
        self.every = every
        self._next_run = 0.0

    def run(self) -> bool:
        """Run the duties if this node holds the lease (and they are due); whether they ran."""
        if not self.lease.held() or time.monotonic() < self._next_run:  # held() renews it meanwhile
            return False
        self._next_run = time.monotonic() + self.every
        for duty in self.duties:
            try:
                duty()
            except Exception:
                LOGGER.exception("%s: %s failed", self.lease.name, getattr(duty, "__qualname__", duty))
        return True

    def release(self) -> None:
        """Give the lease up (at a clean stop)."""
        self.lease.release()
