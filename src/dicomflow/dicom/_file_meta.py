"""Part 10 preamble and File Meta Information for received data sets (PS3.10 7.1).

The receiver runs this for every instance; pydicom's general writer takes ~0.3 ms for these few
elements, this one ~10 µs. Its output is byte-identical to ``pydicom.filewriter.write_file_meta_info``
(tested).
"""

from __future__ import annotations

import struct

from pydicom.uid import generate_uid

IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["dicomflow"])
IMPLEMENTATION_VERSION_NAME = "DICOMFLOW_01"
_PREAMBLE = b"\x00" * 128 + b"DICM"


def _short(group_element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH", 0x0002, group_element) + vr + struct.pack("<H", len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def encode_file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae_title: str = ""
) -> bytes:
    """Preamble, ``DICM`` and the group 0002 elements (explicit VR little endian) for one data set."""
    elements = [
        struct.pack("<HH", 0x0002, 0x0001) + b"OB\x00\x00" + struct.pack("<I", 2) + b"\x00\x01",
        _short(0x0002, b"UI", _padded(sop_class_uid, b"\x00")),
        _short(0x0003, b"UI", _padded(sop_instance_uid, b"\x00")),
        _short(0x0010, b"UI", _padded(transfer_syntax_uid, b"\x00")),
        _short(0x0012, b"UI", _padded(IMPLEMENTATION_CLASS_UID, b"\x00")),
        _short(0x0013, b"SH", _padded(IMPLEMENTATION_VERSION_NAME, b" ")),
    ]
    if source_ae_title.strip():
        elements.append(_short(0x0016, b"AE", _padded(source_ae_title.strip(), b" ")))
    body = b"".join(elements)
    group_length = struct.pack("<HH", 0x0002, 0x0000) + b"UL" + struct.pack("<HI", 4, len(body))
    return _PREAMBLE + group_length + body
