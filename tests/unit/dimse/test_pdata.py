"""The C-STORE fast path's codec (``dimse/_pdata.py``) against pynetdicom's own encoding."""

from __future__ import annotations

import pytest
from pydicom.uid import CTImageStorage, generate_uid
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from dicomflow.dimse._pdata import PREFIX_ROOM, StoreRequest, decode_command, encode_store_response


def pynetdicom_command_set(primitive: C_STORE, message: type[C_STORE_RQ | C_STORE_RSP]) -> bytes:
    msg = message()
    msg.primitive_to_message(primitive)
    return bytes(encode(msg.command_set, True, True))  # type: ignore[arg-type]  # encode returns bytes | None; never None here


def request(uid: str = "1.2.3.4", message_id: int = 7) -> StoreRequest:
    return StoreRequest(1, message_id, CTImageStorage, uid, "1.2.840.10008.1.2.1", bytearray(PREFIX_ROOM), 0)


@pytest.mark.parametrize("uid", ["1.2.3.4", "1.2.3.45"], ids=["even", "odd"])
@pytest.mark.parametrize(
    ("status", "comment"),
    [(0x0000, None), (0xC000, "the data set is truncated"), (0x0111, "odd length!")],
)
def test_store_response_is_what_pynetdicom_sends(uid: str, status: int, comment: str | None) -> None:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = CTImageStorage
    rsp.AffectedSOPInstanceUID = uid
    rsp.Status = status
    if comment is not None:
        rsp.ErrorComment = comment  # type: ignore[assignment]  # typed None in pynetdicom

    assert encode_store_response(request(uid), status, comment) == pynetdicom_command_set(rsp, C_STORE_RSP)


@pytest.mark.parametrize("move_originator", [False, True])
def test_store_request_command_set_is_decoded(move_originator: bool) -> None:
    uid = generate_uid()
    rq = C_STORE()
    rq.MessageID = 12
    rq.AffectedSOPClassUID = CTImageStorage
    rq.AffectedSOPInstanceUID = uid
    rq.Priority = 2
    if move_originator:
        rq.MoveOriginatorApplicationEntityTitle = "MOVER"
        rq.MoveOriginatorMessageID = 3
    rq.DataSet = __import__("io").BytesIO(b"\x00" * 8)

    command = decode_command(pynetdicom_command_set(rq, C_STORE_RQ))

    assert command is not None
    assert (command["command_field"], command["message_id"], command["priority"]) == (1, 12, 2)
    assert (command["sop_class_uid"], command["sop_instance_uid"]) == (CTImageStorage, uid)
    assert command["data_set_type"] != 0x0101


def test_unknown_command_elements_are_left_to_pynetdicom() -> None:
    command_set = bytes.fromhex("0000 0109 0200 0000 0100".replace(" ", ""))  # (0000,0901) Offending Element

    assert decode_command(command_set) is None
    assert decode_command(b"\x00\x00\x00\x01\x02\x00\x00\x00") is None  # length past the end


def test_part10_puts_the_file_meta_in_front_without_copying() -> None:
    buffer = bytearray(PREFIX_ROOM + 16)
    buffer[PREFIX_ROOM:] = b"D" * 16
    req = StoreRequest(1, 1, CTImageStorage, "1.2", "1.2.840.10008.1.2.1", buffer, 16)

    assert bytes(req.part10(b"META")) == b"META" + b"D" * 16
    assert bytes(req.part10(b"M" * (PREFIX_ROOM + 1))) == b"M" * (PREFIX_ROOM + 1) + b"D" * 16
