"""Hosts for the scale-out tests: network namespaces joined by a bridge, each with an address of its own.

:class:`Network` makes a "switch" namespace holding a bridge (``10.<n>.0.1/24``, where the shared services
listen: PostgreSQL, Redis, the S3 server) and, for each :meth:`Network.host`, a namespace joined to the bridge
by a veth pair (``10.<n>.0.2``, ``.3``…). Nothing of it is reachable from outside this machine, nor from the
machine's own loopback: every address is private to the namespaces, as a lab network of separate hosts.
Processes run in a namespace with :meth:`Namespace.popen`; removing the network kills every process left in
its namespaces first. Needs root (as the other end-to-end tests that use ``unshare --net``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Namespace:
    """One network namespace: a name, its address on the bridge, the processes started in it."""

    name: str
    address: str
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(
        self, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in this namespace, in a process group of its own, its output appended to ``log``."""
        with log.open("ab") as out:
            process = subprocess.Popen(
                self.command(argv), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.processes.append(process)
        return process

    def run(
        self, argv: Sequence[str], *, timeout: float = 120, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in this namespace to its end (output captured)."""
        return subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout, **kwargs)

    def pids(self) -> list[int]:
        """Every process in this namespace (``ip netns pids``)."""
        listed = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=30
        )
        return [int(pid) for pid in listed.stdout.split()]

    def kill_all(self) -> None:
        """SIGKILL every process in this namespace, as a host losing power."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


class Network:
    """A bridge namespace (the services' address) and host namespaces joined to it.

    Parameters
    ----------
    tag
        Makes the namespace names unique on this machine (e.g. the test process's pid).
    subnet
        The second octet of ``10.<subnet>.0.0/24``; one per concurrent network.
    """

    def __init__(self, tag: str, subnet: int) -> None:
        self._prefix = f"df{tag}"
        self._subnet = subnet
        self.switch = Namespace(f"{self._prefix}-sw", f"10.{subnet}.0.1")
        self.hosts: list[Namespace] = []
        self._root_link = ""
        _ip("netns", "add", self.switch.name)
        try:
            _ip("-n", self.switch.name, "link", "set", "lo", "up")
            _ip("-n", self.switch.name, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch.name, "addr", "add", f"{self.switch.address}/24", "dev", "br0")
            _ip("-n", self.switch.name, "link", "set", "br0", "up")
        except BaseException:
            self.remove()
            raise

    def host(self, name: str) -> Namespace:
        """A new host namespace on the bridge, with the next free address."""
        host = Namespace(f"{self._prefix}-{name}", f"10.{self._subnet}.0.{len(self.hosts) + 2}")
        self.hosts.append(host)
        outer, inner = f"v{self._subnet}-{len(self.hosts)}s", f"v{self._subnet}-{len(self.hosts)}h"  # <= 15
        _ip("netns", "add", host.name)
        _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        _ip("link", "set", inner, "netns", host.name)
        _ip("link", "set", outer, "netns", self.switch.name)
        _ip("-n", host.name, "link", "set", "lo", "up")
        _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", inner)
        _ip("-n", host.name, "link", "set", inner, "up")
        _ip("-n", self.switch.name, "link", "set", outer, "master", "br0")
        _ip("-n", self.switch.name, "link", "set", outer, "up")
        return host

    def attach_test_process(self) -> str:
        """Join this machine's own namespace (the test process) to the bridge, as one more host of the lab
        network (``10.<n>.0.254``), so the test talks to the servers directly; returns that address."""
        address = f"10.{self._subnet}.0.254"
        outer, inner = f"v{self._subnet}-ts", f"v{self._subnet}-th"
        _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        self._root_link = inner
        _ip("link", "set", outer, "netns", self.switch.name)
        _ip("addr", "add", f"{address}/24", "dev", inner)
        _ip("link", "set", inner, "up")
        _ip("-n", self.switch.name, "link", "set", outer, "master", "br0")
        _ip("-n", self.switch.name, "link", "set", outer, "up")
        return address

    def remove(self) -> None:
        """Kill every process in the namespaces, then delete them (their veth pairs go with them)."""
        for namespace in [*self.hosts, self.switch]:
            namespace.kill_all()
            subprocess.run(["ip", "netns", "del", namespace.name], capture_output=True, timeout=30)
        if self._root_link:  # its peer went with the switch namespace; this end goes with it, or here
            subprocess.run(["ip", "link", "del", self._root_link], capture_output=True, timeout=30)
