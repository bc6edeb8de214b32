"""The optional allow-list of peers (``dimse.allowed_peers``), as dcm4chee's and Orthanc's known modalities.

An entry is a calling AE title (``CT01``), an IP address or network (``10.1.2.3``, ``10.1.0.0/16``), or both
(``CT01@10.1.2.3``: that AE title from that address). An empty list allows everyone.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class _Peer:
    ae_title: str | None
    network: _Network | None

    def matches(self, ae_title: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if self.ae_title is not None and self.ae_title != ae_title:
            return False
        return self.network is None or (address is not None and address in self.network)


def _parse(entry: str) -> _Peer:
    title, at, rest = entry.strip().rpartition("@")
    try:
        network: _Network | None = ipaddress.ip_network(rest, strict=False)
    except ValueError:
        if at:
            raise ValueError(f"allowed peer {entry!r}: {rest!r} is no IP address or network") from None
        return _Peer(rest, None)
    return _Peer(title.strip() or None, network)


class AllowedPeers:
    """Whether a calling AE title from an address may associate.

    Parameters
    ----------
    entries
        The setting's entries (validated by the settings).
    """

    def __init__(self, entries: list[str]) -> None:
        self._peers = [_parse(entry) for entry in entries]

    def allows(self, ae_title: str, address: str) -> bool:
        """Whether ``ae_title`` (stripped) calling from ``address`` is allowed."""
        if not self._peers:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(peer.matches(ae_title, ip) for peer in self._peers)
