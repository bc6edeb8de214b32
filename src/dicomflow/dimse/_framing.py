"""The bound on the PDUs the receiver accepts, and that bound on pynetdicom's own reading.

:class:`PduBound` is the rule (``dimse.max_pdu_size`` for a P-DATA-TF, at most that or 1 MiB for any other
PDU, known PDU types only); the fast path (``_pdata.py``) applies it to each header it reads.

With fast paths off, pynetdicom reads the PDUs: it reads a 6-byte header, then as many bytes as the header
declares, whatever that is (a peer declaring a 4 GiB P-DATA-TF keeps a thread reading, and a buffer
growing, for as long as it sends). There the receiver's server hands pynetdicom each accepted connection
as a :class:`BoundedSocket` (from ``get_request``, as pynetdicom's own TLS support hands it an
``ssl.SSLSocket``). Its reads follow the PDU framing of the byte stream; at a header the rule refuses it
logs the reason, sends an A-ABORT (service provider, reason not specified: what pynetdicom sends for a PDU
it cannot decode) and ends the stream there: the header's bytes and everything after them are never
passed on. pynetdicom reads the end of the stream as the connection closed by the peer (Evt17): it closes
the socket and ends the association at once (AA-4, AA-5), so the receiver's thread is free and other
associations are served as before. Nothing of pynetdicom's is touched, only the socket it reads from.

Writing the A-ABORT from a read is safe: pynetdicom reads and writes a connection in one thread, the DUL's.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Any

LOGGER = logging.getLogger(__name__)
P_DATA_TF = 0x04
_KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))
_CONTROL_PDU_LIMIT = 1 << 20  # PDUs other than P-DATA-TF may be this large even with a smaller max_pdu_size
_HEADER_SIZE = 6
_HEADER = struct.Struct(">BBL")  # PDU type, reserved, length
_A_ABORT = _HEADER.pack(0x07, 0, 4) + bytes((0, 0, 0x02, 0x00))  # source: service provider; no reason
_MSG_PEEK = int(socket.MSG_PEEK)
_RECV = socket.socket.recv  # the plain reads, without super()'s cost on each of pynetdicom's 4 KiB reads
_RECV_INTO = socket.socket.recv_into


@dataclass(frozen=True, slots=True)
class PduBound:
    """The largest PDUs the receiver accepts.

    Parameters
    ----------
    max_pdu_size
        ``dimse.max_pdu_size``: the largest P-DATA-TF (its length field); 0 = no limit.
    """

    max_pdu_size: int

    def refusal(self, pdu_type: int, length: int) -> str | None:
        """Why a PDU with this header is refused, or ``None`` if it is not."""
        if pdu_type not in _KNOWN_PDU_TYPES:
            return f"unknown PDU type 0x{pdu_type:02X}"
        if pdu_type == P_DATA_TF:
            if self.max_pdu_size and length > self.max_pdu_size:
                return f"P-DATA-TF PDU of {length} bytes, more than the {self.max_pdu_size} accepted"
            return None
        control_limit = max(self.max_pdu_size, _CONTROL_PDU_LIMIT)
        if length > control_limit:
            return f"PDU 0x{pdu_type:02X} of {length} bytes, more than the {control_limit}"
        return None


class BoundedSocket(socket.socket):
    """An accepted connection whose reads pass on only PDUs that :class:`PduBound` accepts (see the module
    docstring); make one with :meth:`wrap`."""

    _bound: PduBound
    _peer: str
    _header: bytearray  # the part of the next PDU header read so far
    _body_left: int  # bytes of the current PDU's body still to come
    _refused: bool

    @classmethod
    def wrap(cls, sock: socket.socket, bound: PduBound, peer: str) -> BoundedSocket:
        """``sock`` (which must not be used after) as a bounded socket; ``peer`` names it in the log."""
        timeout = sock.gettimeout()
        bounded = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        bounded.settimeout(timeout)
        bounded._bound = bound
        bounded._peer = peer
        bounded._header = bytearray()
        bounded._body_left = 0
        bounded._refused = False
        return bounded

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._refused:
            return b""
        data = _RECV(self, bufsize, flags)
        if len(data) <= self._body_left and not flags:  # the common case: more of a PDU's body
            self._body_left -= len(data)
            return data
        if flags & _MSG_PEEK:
            return data
        accepted = self._follow(data)
        return data if accepted == len(data) else data[:accepted]

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._refused:
            return 0
        received = _RECV_INTO(self, buffer, nbytes, flags)
        if flags & _MSG_PEEK:
            return received
        with memoryview(buffer) as view:
            return self._follow(view.cast("B")[:received])

    def _follow(self, data: bytes | memoryview) -> int:
        """Follow the PDU framing over ``data``, just received: how many of its bytes may be passed on
        (all of them, unless a header in it is refused)."""
        size = len(data)
        position = 0
        while position < size:
            if self._body_left:
                step = min(self._body_left, size - position)
                self._body_left -= step
                position += step
                continue
            start = position - len(self._header)  # may be < 0: the header began in an earlier read
            take = min(_HEADER_SIZE - len(self._header), size - position)
            self._header += data[position : position + take]
            position += take
            if len(self._header) < _HEADER_SIZE:
                break
            pdu_type, _, length = _HEADER.unpack(self._header)
            self._header.clear()
            refusal = self._bound.refusal(pdu_type, length)
            if refusal is not None:
                self._refuse(refusal)
                return max(start, 0)
            self._body_left = length
        return size

    def _refuse(self, reason: str) -> None:
        LOGGER.error("invalid PDU from %s: %s; aborting", self._peer, reason)
        self._refused = True
        with contextlib.suppress(OSError):  # the peer is gone already: nothing to tell it
            self.sendall(_A_ABORT)
