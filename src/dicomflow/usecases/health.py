"""Health: is this process alive (``GET /health``), and can it serve (``GET /ready``)?

Readiness asks each part the server needs, in :data:`PROBES`: the index (a fresh connection reads the
schema's revision), the blob store, and the broker when jobs go through one (``jobs.executor = celery``).
A part is one entry there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from dicomflow.config import JobExecutor, Settings
from dicomflow.errors import NotReady
from dicomflow.index import reading
from dicomflow.index.health import ping

if TYPE_CHECKING:
    from dicomflow.runtime import Application

Probe = Callable[["Application"], None]
"""Raises (any exception) if its part cannot be reached; its message says why."""


def _index(app: Application) -> None:
    with reading(app.engine) as conn:
        try:
            ping(conn)
        finally:
            conn.invalidate()  # the next probe opens a new connection: a pooled one may outlive the database


def _store(app: Application) -> None:
    root = app.store.root  # the filesystem store; an object store would list one prefix instead
    if not (root.is_dir() and os.access(root, os.R_OK | os.W_OK | os.X_OK)):
        raise OSError(f"blob store {root} is not a writable directory")


def _broker(app: Application) -> None:
    import redis  # only where jobs go through the broker

    client = redis.Redis.from_url(app.settings.jobs.broker_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _always(_settings: Settings) -> bool:
    return True


PROBES: tuple[tuple[str, Callable[[Settings], bool], Probe], ...] = (
    ("index", _always, _index),
    ("store", _always, _store),
    ("broker", lambda settings: settings.jobs.executor is JobExecutor.CELERY, _broker),
)
"""The parts ``/ready`` asks: name, whether the settings use it, and the probe."""


def readiness(app: Application) -> dict[str, str]:
    """Ask every part in :data:`PROBES`; each answers ``ok``.

    Raises
    ------
    NotReady
        If any part failed; ``details`` maps each part to ``ok`` or what failed.
    """
    answers = {}
    for name, used, probe in PROBES:
        if not used(app.settings):
            continue
        try:
            probe(app)
            answers[name] = "ok"
        except Exception as exc:
            answers[name] = f"{type(exc).__name__}: {exc}"
    failed = [name for name, answer in answers.items() if answer != "ok"]
    if failed:
        raise NotReady(f"not ready: {', '.join(failed)} unreachable", answers)
    return answers
