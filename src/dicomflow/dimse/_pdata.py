"""C-STORE requests received and answered in the DUL thread, without pynetdicom's per-message machinery.

For every P-DATA-TF PDU, pynetdicom reads the socket 4 KiB at a time, copies the PDU three times, builds
PDU, PDV and primitive objects, runs the state machine, appends each fragment to a ``BytesIO``, decodes
the command set with pydicom, hands the message to the association's thread, and answers through the
same layers in reverse (the response's command set encoded by pydicom). For a 0.5 MB CT slice that costs
more CPU than storing and indexing it.

:class:`FastStore` replaces the DUL's ``_read_pdu_data`` for one association. In state Sta6 (association
established, where a P-DATA-TF only ever hands its data to DIMSE: action DT-2) it reads each PDV straight
into the buffer of the message, and when a C-STORE request (command set and data set) is complete it calls
the receiver's store function right there and sends the C-STORE response PDU itself. Everything else goes
the way pynetdicom goes:

- other PDUs (release, abort, ...) and PDUs in any other state: decoded and queued for the state machine;
- any other message (C-ECHO, ...), a C-STORE whose command set is unusual (split over several fragments,
  an unknown element, no data set, a rejected presentation context or one accepted for another SOP
  Class, which the receiver refuses there): its PDVs are passed to
  ``DIMSEServiceProvider.receive_primitive``, as DT-2 does.

Every read is bounded: a PDU that declares more than the largest we accept (``dimse.max_pdu_size`` for a
P-DATA-TF, at most that or 1 MiB for any other: ``_framing.PduBound``, the rule pynetdicom's own reading
is held to with fast paths off), an unknown PDU type or a malformed P-DATA-TF is answered
with an A-ABORT (Evt19, as pynetdicom does for what it cannot decode), and its bytes are then never read
as PDUs again: what follows is dropped until the peer closes or the ARTIM timer ends the connection.
Buffers grow as bytes arrive, never from a declared length, so memory follows what was really received.

Sending from this thread is safe: the DUL thread is the only one that writes to the socket, and sending a
P-DATA-TF in Sta6 (DT-1) does not change the state. A sender gets its response only when the store
function returns, which is only once the instance is durable and indexed. The events pynetdicom would
have triggered on the way (``EVT_PDU_RECV``, ``EVT_DIMSE_RECV``, ``EVT_C_STORE``...) are not triggered for
these messages; the receiver binds none of them but ``EVT_C_STORE``, whose handler shares the store
function.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from dicomflow.dimse._framing import PduBound

LOGGER = logging.getLogger(__name__)
_P_DATA_TF = 0x04
_HEADER = struct.Struct(">BBL")  # PDU type, reserved, length
_PDV_HEADER = struct.Struct(">LBB")  # item length, presentation context ID, message control header
_ELEMENT = struct.Struct("<HHL")  # implicit VR little endian: group, element, length
_C_STORE_RQ, _C_STORE_RSP, _NO_DATA_SET = 0x0001, 0x8001, 0x0101
PREFIX_ROOM = 1024  # free bytes kept before each data set, so that file meta can be put in front of it
_INITIAL_BUFFER = PREFIX_ROOM + (1 << 20)  # grows to the largest message of the association...
_KEPT_BUFFER = 64 << 20  # ...up to this; a larger one is dropped after its message
_CHUNK = 64 << 10  # the most read at once into a growing buffer
_COMMAND_KEYWORDS = {
    0x0000: "group_length",
    0x0002: "sop_class_uid",
    0x0100: "command_field",
    0x0110: "message_id",
    0x0700: "priority",
    0x0800: "data_set_type",
    0x1000: "sop_instance_uid",
    0x1030: "move_originator_ae_title",
    0x1031: "move_originator_message_id",
}
_UID_ELEMENTS = {0x0002, 0x1000}


@dataclass(slots=True)
class StoreRequest:
    """One complete C-STORE request: what the store function gets."""

    context_id: int
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    _buffer: bytearray
    _size: int

    def part10(self, file_meta: bytes) -> memoryview:
        """``file_meta`` followed by the data set, without copying the data set."""
        if len(file_meta) > PREFIX_ROOM:
            return memoryview(file_meta + self._buffer[PREFIX_ROOM : PREFIX_ROOM + self._size])
        start = PREFIX_ROOM - len(file_meta)
        self._buffer[start:PREFIX_ROOM] = file_meta
        return memoryview(self._buffer)[start : PREFIX_ROOM + self._size]


StoreFunction = Callable[[StoreRequest], tuple[int, str | None]]  # -> status, error comment


class _Closed(Exception):
    """The peer closed the connection in the middle of a PDU."""


class FastStore:
    """The P-DATA reader of one association (see the module docstring).

    Parameters
    ----------
    assoc
        The association (on ``EVT_CONN_OPEN``, before any PDU is read).
    store
        Stores one request; returns the status and error comment of the response.
    max_pdu_size
        The largest P-DATA-TF PDU accepted (its length field); 0 = no limit.
    """

    def __init__(self, assoc: Any, store: StoreFunction, max_pdu_size: int = 0) -> None:
        self.assoc = assoc
        self.dul = assoc.dul
        self.store = store
        self._bound = PduBound(max_pdu_size)
        self._aborting = False  # an invalid PDU was answered with A-ABORT: the stream is not read as PDUs
        self._original = self.dul._read_pdu_data
        self._buffer = bytearray()  # allocated by the first C-STORE: a connection alone costs no buffer
        self._request: StoreRequest | None = None  # a C-STORE whose data set is being received
        self._header = bytearray(6)

    def install(self) -> None:
        """Take over the DUL's PDU reading."""
        self.dul._read_pdu_data = self.read_pdu

    def read_pdu(self) -> None:
        """Read one PDU: P-DATA-TF in Sta6 here, anything else as pynetdicom does."""
        sock = self.dul.socket.socket
        try:
            if self._aborting:
                if not sock.recv(_CHUNK):  # drop what follows an invalid PDU until the peer closes
                    self.dul.event_queue.put("Evt17")
                return
            if not sock.recv_into(self._header, 1):
                self.dul.event_queue.put("Evt17")  # closed between PDUs: the normal end
                return
            _read_exactly(sock, memoryview(self._header)[1:])
            pdu_type, _, length = _HEADER.unpack(self._header)
            refusal = self._bound.refusal(pdu_type, length)
            if refusal is not None:
                self._abort(refusal)
            elif pdu_type != _P_DATA_TF or self.dul.state_machine.current_state != "Sta6":
                self._hand_over(bytes(self._header) + _read_growing(sock, length))
            else:
                self._read_p_data(sock, length)
        except (_Closed, OSError):  # OSError includes a read that timed out (network_timeout)
            LOGGER.error("Connection closed before the entire PDU was received")
            self.dul.event_queue.put("Evt17")  # transport connection closed

    def _abort(self, reason: str) -> None:
        """Answer an invalid PDU with an A-ABORT (Evt19: AA-1 before association, AA-8 after it)."""
        LOGGER.error("invalid PDU from %s: %s; aborting", self.assoc.requestor.address, reason)
        self._aborting = True
        self.dul.event_queue.put("Evt19")

    def _hand_over(self, pdu: bytes) -> None:
        """What pynetdicom's ``_read_pdu_data`` does with a PDU once read."""
        try:
            decoded, event = self.dul._decode_pdu(pdu)
        except Exception:
            LOGGER.exception("Unable to decode the received PDU data")
            self.dul.event_queue.put("Evt19")
            return
        self.dul.event_queue.put(event)
        self.dul._recv_pdu.put(decoded)

    def _read_p_data(self, sock: Any, length: int) -> None:
        header = bytearray(6)
        while length > 0:
            if length < 6:
                raise _Closed  # a PDV item header cannot fit: treat as a broken PDU
            _read_exactly(sock, memoryview(header))
            item_length, context_id, control = _PDV_HEADER.unpack(header)
            if item_length < 2 or item_length + 4 > length:
                self._abort(f"PDV item of {item_length} bytes in a P-DATA-TF PDU of {length} bytes")
                return
            length -= 4 + item_length
            self._pdv(sock, context_id, control & 0x03, item_length - 2)
            if self._aborting:
                return

    def _pdv(self, sock: Any, context_id: int, control: int, size: int) -> None:
        request = self._request
        if request is not None:
            if control & 1 or context_id != request.context_id:
                self._abort("P-DATA of another message in the middle of a C-STORE data set")
                return
            self._receive_into_data_set(sock, request, size)
            if control & 2:
                self._request = None
                self._answer(request)
                if len(self._buffer) > _KEPT_BUFFER:  # a huge instance: do not hold its memory for good
                    self._buffer = bytearray(_INITIAL_BUFFER)
            return
        fragment = _read_growing(sock, size)
        if control == 0x03 and self.assoc.dimse.message is None:
            request = self._start(context_id, fragment)
            if request is not None:
                self._request = request
                return
        primitive = P_DATA()
        # pynetdicom checks for lists at run time (its annotation says tuples)
        primitive.presentation_data_value_list = [[context_id, bytes((control,)) + fragment]]  # type: ignore[list-item]  # pynetdicom wants lists here
        self.assoc.dimse.receive_primitive(primitive)  # as DT-2 does

    def _start(self, context_id: int, command_set: bytes) -> StoreRequest | None:
        """A request to receive here, from a complete command set; ``None`` to leave it to pynetdicom."""
        command = decode_command(command_set)
        context = self.assoc._accepted_cx.get(context_id)
        if (
            command is None
            or command.get("command_field") != _C_STORE_RQ
            or command.get("data_set_type") in (None, _NO_DATA_SET)
            or not {"message_id", "sop_class_uid", "sop_instance_uid"} <= command.keys()
            or context is None
            or context.abstract_syntax != command["sop_class_uid"]  # refused on pynetdicom's path (0x0122)
            or not _is_storage(str(command["sop_class_uid"]))
            or self.assoc._sent_release
        ):
            return None
        if not self._buffer:
            self._buffer = bytearray(_INITIAL_BUFFER)
        return StoreRequest(
            context_id,
            int(command["message_id"]),
            str(command["sop_class_uid"]),
            str(command["sop_instance_uid"]),
            str(context.transfer_syntax[0]),
            self._buffer,
            0,
        )

    def _receive_into_data_set(self, sock: Any, request: StoreRequest, size: int) -> None:
        """Read ``size`` bytes of the data set; the buffer doubles whenever what arrived fills it."""
        position = PREFIX_ROOM + request._size
        end = position + size
        while position < end:
            if position == len(self._buffer):
                grown = bytearray(2 * len(self._buffer))
                grown[:position] = memoryview(self._buffer)[:position]
                self._buffer = request._buffer = grown
            received = sock.recv_into(memoryview(self._buffer)[position : min(end, len(self._buffer))])
            if not received:
                raise _Closed
            position += received
        request._size += size

    def _answer(self, request: StoreRequest) -> None:
        status, comment = self.store(request)
        pdu = _p_data_tf(request.context_id, encode_store_response(request, status, comment))
        peer_maximum = self.assoc.dimse.maximum_pdu_size
        if peer_maximum and len(pdu) > peer_maximum:  # too long for one PDU: pynetdicom splits it
            self.assoc.dimse.send_msg(_response_primitive(request, status, comment), request.context_id)
        else:
            self.dul.socket.send(pdu)


def _response_primitive(request: StoreRequest, status: int, comment: str | None) -> C_STORE:
    response = C_STORE()
    response.MessageIDBeingRespondedTo = request.message_id
    response.AffectedSOPClassUID = request.sop_class_uid
    response.AffectedSOPInstanceUID = request.sop_instance_uid
    response.Status = status
    if comment:
        response.ErrorComment = comment  # type: ignore[assignment]  # typed None in pynetdicom
    return response


def _p_data_tf(context_id: int, command_set: bytes) -> bytes:
    item = _PDV_HEADER.pack(len(command_set) + 2, context_id, 0x03) + command_set
    return _HEADER.pack(_P_DATA_TF, 0, len(item)) + item


def _read_exactly(sock: Any, view: memoryview) -> None:
    while view:
        received = sock.recv_into(view)
        if not received:
            raise _Closed
        view = view[received:]


def _read_growing(sock: Any, size: int) -> bytes:
    """``size`` bytes, in a buffer that grows as they arrive (a declared size allocates nothing)."""
    if size <= _CHUNK:
        buffer = bytearray(size)
        _read_exactly(sock, memoryview(buffer))
        return bytes(buffer)
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), _CHUNK))
        if not chunk:
            raise _Closed
        data += chunk
    return bytes(data)


@lru_cache(maxsize=256)
def _is_storage(sop_class_uid: str) -> bool:
    return uid_to_service_class(sop_class_uid) is StorageServiceClass


def decode_command(data: bytes) -> dict[str, int | str] | None:
    """The elements of a C-STORE request command set, or ``None`` if it has any other element."""
    command: dict[str, int | str] = {}
    position = 0
    while position + 8 <= len(data):
        group, element, length = _ELEMENT.unpack_from(data, position)
        position += 8
        keyword = _COMMAND_KEYWORDS.get(element)
        if group != 0x0000 or keyword is None or position + length > len(data):
            return None
        value = data[position : position + length]
        position += length
        if element in _UID_ELEMENTS or element == 0x1030:
            try:
                command[keyword] = value.decode("ascii").strip(" \x00")
            except UnicodeDecodeError:
                return None
        elif length in (2, 4):
            command[keyword] = int.from_bytes(value, "little")
        else:
            return None
    return command if position == len(data) else None


def encode_store_response(request: StoreRequest, status: int, comment: str | None) -> bytes:
    """The C-STORE response command set (implicit VR little endian), as pynetdicom encodes it."""
    body = b"".join(
        [
            _element(0x0002, _even(request.sop_class_uid.encode("ascii"), b"\x00")),
            _element(0x0100, struct.pack("<H", _C_STORE_RSP)),
            _element(0x0120, struct.pack("<H", request.message_id)),
            _element(0x0800, struct.pack("<H", _NO_DATA_SET)),
            _element(0x0900, struct.pack("<H", status)),
            _element(0x0902, _even(comment.encode("latin-1", "replace"), b" ")) if comment else b"",
            _element(0x1000, _even(request.sop_instance_uid.encode("ascii"), b"\x00")),
        ]
    )
    return _element(0x0000, struct.pack("<L", len(body))) + body


def _element(element: int, value: bytes) -> bytes:
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def _even(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value
