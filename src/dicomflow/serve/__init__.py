"""Process start-up: ``dicomflow serve`` and ``dicomflow node``.

The supervisor binds the listening sockets, migrates the index and recovers unfinished writes once, forks
the receiver and HTTP worker processes (:class:`WorkerPool`, restarted when they die; each builds its own
:class:`~dicomflow.runtime.Application`), runs the janitors (processing engine, upload janitor) and stops
everything on SIGTERM or SIGINT. Importing this package is light; :func:`serve` imports the adapters.
"""

from dicomflow.serve._node import serve_node
from dicomflow.serve._serve import serve
from dicomflow.serve._signals import StopSignals
from dicomflow.serve._sockets import cannot_listen, listen, listen_http
from dicomflow.serve._supervisor import WorkerPool, die_with_parent

__all__ = [
    "StopSignals",
    "WorkerPool",
    "cannot_listen",
    "die_with_parent",
    "listen",
    "listen_http",
    "serve",
    "serve_node",
]
