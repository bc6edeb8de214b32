"""The listening sockets of ``dicomflow serve`` and ``dicomflow node``: bound once, shared by the workers."""

from __future__ import annotations

import errno
import socket

from dicomflow.config import Settings
from dicomflow.errors import ConfigError


def listen(settings: Settings, option: str = "--dimse-port") -> socket.socket:
    """Bind and listen on the receiver's address; non-blocking so that sibling workers can share it.

    Raises
    ------
    ConfigError
        If the address cannot be bound (the message names ``option``, the flag that changes the port).
    """
    address = (settings.dimse.host, settings.dimse.port)
    try:
        sock = socket.create_server(address, backlog=128)
    except OSError as exc:
        raise ConfigError(cannot_listen("DICOM", address, exc, f"{option} or DICOMFLOW_DIMSE__PORT")) from exc
    sock.setblocking(False)
    return sock


def listen_http(settings: Settings) -> socket.socket:
    """Bind and listen on the API's address (non-blocking, shared by the HTTP processes).

    Raises
    ------
    ConfigError
        If the address cannot be bound.
    """
    address = (settings.http.host, settings.http.port)
    try:
        sock = socket.create_server(address, backlog=256)
    except OSError as exc:
        raise ConfigError(cannot_listen("HTTP", address, exc, "--http-port or DICOMFLOW_HTTP__PORT")) from exc
    sock.setblocking(False)
    return sock


def cannot_listen(what: str, address: tuple[str, int], exc: OSError, change: str) -> str:
    """One line saying why a port cannot be bound and what to change."""
    host, port = address
    if exc.errno == errno.EADDRINUSE:
        reason = "the port is in use (another program listens on it)"
    elif exc.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges)"
    else:
        reason = exc.strerror or str(exc)
    return f"cannot listen for {what} on {host}:{port}: {reason}; choose another port with {change}"
