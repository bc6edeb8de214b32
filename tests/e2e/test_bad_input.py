"""Bad C-STORE data sets against the running receiver: each is refused with 0xC000 and an ErrorComment
naming the problem, nothing is stored, the event log records the refusal, and the receiver carries on.

The SCU is pynetdicom in chunked mode, which sends a file's data set bytes exactly as they are (see
``scu.py``), so truncated and non-DICOM payloads reach the receiver unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from scu import crafted_file, store_file

from factories import DicomflowServer, encode_dataset, invalid_values_allowed, make_instance

pytestmark = pytest.mark.e2e

CANNOT_UNDERSTAND = 0xC000
SUCCESS = 0x0000


@dataclass(frozen=True)
class Payload:
    """What goes into the C-STORE request: the command's SOP Instance UID and the data set bytes."""

    command_uid: str
    dataset: bytes
    dataset_uid: str


def _cut(at: Callable[[bytes], int]) -> Callable[[], Payload]:
    def build() -> Payload:
        ds = make_instance()
        data = encode_dataset(ds)
        return Payload(ds.SOPInstanceUID, data[: at(data)], ds.SOPInstanceUID)

    return build


def _tag(group: int, element: int) -> Callable[[bytes], int]:
    """The offset of an element's tag in explicit VR little endian bytes."""
    needle = group.to_bytes(2, "little") + element.to_bytes(2, "little")
    return lambda data: data.index(needle)


def _not_dicom() -> Payload:
    uid = generate_uid()
    return Payload(uid, b"This is a plain text file, not a DICOM data set.\n" * 8, uid)


def _without_sop_instance_uid() -> Payload:
    ds = make_instance()
    del ds.SOPInstanceUID
    return Payload(generate_uid(), encode_dataset(ds), "")


def _with_uid(keyword: str) -> Callable[[], Payload]:
    def build() -> Payload:
        attrs: dict[str, Any] = {keyword: "1.2.abc"}
        with invalid_values_allowed():
            ds = make_instance(**attrs)
            return Payload(ds.SOPInstanceUID, encode_dataset(ds), ds.SOPInstanceUID)

    return build


def _other_uid_in_command() -> Payload:
    ds = make_instance()
    return Payload(generate_uid(), encode_dataset(ds), ds.SOPInstanceUID)


# name -> (payload, what the ErrorComment must contain, lower-cased)
CASES: dict[str, tuple[Callable[[], Payload], str]] = {
    "truncated-before-the-uids": (_cut(lambda d: _tag(0x0020, 0x000D)(d) + 20), "truncated"),
    "truncated-inside-a-header-value": (_cut(lambda d: _tag(0x0028, 0x0030)(d) + 10), "truncated"),
    "truncated-inside-the-pixel-data": (_cut(lambda d: _tag(0x7FE0, 0x0010)(d) + 500), "truncated"),
    "truncated-by-one-byte": (_cut(lambda d: len(d) - 1), "truncated"),
    "not-dicom": (_not_dicom, ""),
    "without-sop-instance-uid": (_without_sop_instance_uid, "sop instance uid is missing"),
    "sop-instance-uid-with-letters": (
        _with_uid("SOPInstanceUID"),
        "sop instance uid '1.2.abc' is not a valid uid",
    ),
    "study-instance-uid-with-letters": (
        _with_uid("StudyInstanceUID"),
        "study instance uid '1.2.abc' is not a valid uid",
    ),
    "sop-instance-uid-differs-from-command": (_other_uid_in_command, "sop instance uid"),
}


def send(server: DicomflowServer, folder: Path, payload: Payload) -> tuple[int, str]:
    with invalid_values_allowed():  # pynetdicom builds a pydicom UID from the file meta
        path = crafted_file(
            folder,
            "payload.dcm",
            CTImageStorage,
            payload.command_uid,
            ExplicitVRLittleEndian,
            payload.dataset,
        )
        status = store_file(server.dimse_port, path, CTImageStorage, ExplicitVRLittleEndian)
    return status.status, status.comment


def last_event_id(server: DicomflowServer) -> int:
    return int(server.scalar("SELECT coalesce(max(id), 0) FROM events"))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_set_is_refused_and_logged(server: DicomflowServer, tmp_path: Path, case: str) -> None:
    build, expected = CASES[case]
    payload = build()
    instances, blobs, since = server.instance_count(), len(server.blob_files()), last_event_id(server)

    status, comment = send(server, tmp_path, payload)

    assert status == CANNOT_UNDERSTAND, f"status 0x{status:04X} ({comment!r})"
    assert comment, "no ErrorComment"
    assert expected in comment.lower(), f"ErrorComment {comment!r} does not say {expected!r}"
    assert server.instance_count() == instances
    assert len(server.blob_files()) == blobs
    assert server.staged_files() == []
    for uid in {payload.command_uid, payload.dataset_uid} - {""}:
        assert server.http.get(f"/instances/{uid}").status_code == 404
    events = server.rows("SELECT kind, actor, outcome, reason FROM events WHERE id > ?", (since,))
    assert [(kind, outcome) for kind, _actor, outcome, _reason in events] == [("rejected", "failed")]
    _kind, actor, _outcome, reason = events[0]
    assert actor.startswith("E2E-SCU@")
    assert reason.startswith("invalid-instance: ")
    assert comment[:40] in reason


def test_refusal_event_names_the_sop_instance_uid_of_the_request(
    server: DicomflowServer, tmp_path: Path
) -> None:
    """``/events?object_uid=<uid>`` must answer "why was my instance refused?" even when its bytes were
    unreadable: the receiver knows the UID from the C-STORE request."""
    payload = _not_dicom()

    status, _comment = send(server, tmp_path, payload)

    assert status == CANNOT_UNDERSTAND
    assert server.events(kind="rejected", object_uid=payload.command_uid), (
        "no 'rejected' event carries the request's Affected SOP Instance UID"
    )


def test_receiver_still_stores_good_instances_after_bad_ones(server: DicomflowServer, tmp_path: Path) -> None:
    for build, _expected in CASES.values():  # the whole lot again, on one association after the other
        send(server, tmp_path, build())
    ds = make_instance()
    payload = Payload(ds.SOPInstanceUID, encode_dataset(ds), ds.SOPInstanceUID)

    status, comment = send(server, tmp_path, payload)

    assert (status, comment) == (SUCCESS, "")
    assert server.http.get(f"/instances/{ds.SOPInstanceUID}").status_code == 200
    assert server.echo()
