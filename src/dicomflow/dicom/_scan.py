"""A scanner for the common case of :func:`read_header`: a Part 10 file in memory, little endian.

pydicom builds a ``Dataset`` of every element up to the pixel data and reads the file through a file
object; for the receiver, which runs this for every instance, that is the largest cost after the network.
This scanner walks the element headers of a buffer and keeps the raw values of the top-level tags asked
for, nothing else. It handles what scanners send nearly always: preamble and ``DICM``, Implicit or
Explicit VR Little Endian data sets (native or encapsulated pixel data), sequences of defined or undefined
length. For anything else (no preamble, big endian, deflated, an unknown transfer syntax or VR, undefined
length outside a sequence) it raises :class:`Unsupported` and the caller uses pydicom, so results never
depend on which path ran (the tests compare both).

Truncation is refused the way ``_header._check_complete`` refuses it after pydicom: an element, the file
meta or native pixel data that extends past the end of the buffer, or encapsulated pixel data with no
sequence delimiter.
"""

from __future__ import annotations

import struct
from collections.abc import Collection

from dicomflow.errors import InvalidInstance

_UNPACK_TAG_SHORT = struct.Struct("<HH2sH").unpack_from  # group, element, VR, 16-bit length
_UNPACK_LONG = struct.Struct("<I").unpack_from
_UNPACK_IMPLICIT = struct.Struct("<HHI").unpack_from
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_SHORT_VRS = frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
        b"SH", b"SL", b"SS", b"ST", b"SV", b"TM", b"UI", b"UL", b"US", b"UV",
    }
)  # fmt: skip
_IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_LITTLE_ENDIAN_EXPLICIT = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}  # deflated, big endian
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xE000, 0xE00D, 0xE0DD
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PIXEL_DATA_ELEMENTS = (0x0008, 0x0009, 0x0010)  # Float, Double Float and Pixel Data (group 7FE0)
_TRUNCATED = "the data set is truncated: the file ends inside an element"


class Unsupported(Exception):
    """The buffer is outside what the scanner handles: parse it with pydicom instead."""


def scan(data: memoryview, wanted: Collection[int]) -> tuple[str, dict[int, bytes]]:
    """Transfer syntax and raw values of the ``wanted`` top-level tags (``group << 16 | element``).

    Raises
    ------
    Unsupported
        If the buffer needs pydicom (see the module docstring).
    InvalidInstance
        If the buffer ends inside the file meta, an element or the pixel data.
    """
    if len(data) < 144 or bytes(data[128:132]) != b"DICM":
        raise Unsupported
    transfer_syntax, position = _file_meta(data)
    if transfer_syntax == _IMPLICIT_LE:
        implicit = True
    elif transfer_syntax.startswith("1.2.840.10008.1.2.") and transfer_syntax not in (
        _NOT_LITTLE_ENDIAN_EXPLICIT
    ):
        implicit = False  # explicit VR little endian and every encapsulated syntax of the standard
    else:
        raise Unsupported
    values: dict[int, bytes] = {}
    position = _elements(data, position, implicit, wanted, values, top=True)
    _check_pixel_data(data, position, implicit)
    return transfer_syntax, values


def _file_meta(data: memoryview) -> tuple[str, int]:
    """Transfer syntax and end of the group 0002 elements (always explicit VR little endian)."""
    size = len(data)
    group, element, vr, length = _UNPACK_TAG_SHORT(data, 132)
    if (group, element, vr) != (0x0002, 0x0000, b"UL") or length != 4:
        raise Unsupported  # no group length: pydicom copes with such files
    (group_length,) = _UNPACK_LONG(data, 140)
    if 144 + group_length > size:
        raise InvalidInstance(_TRUNCATED)
    position, transfer_syntax = 144, None
    while position + 8 <= size:
        group, element, vr, length = _UNPACK_TAG_SHORT(data, position)
        if group != 0x0002:
            break
        if vr in _LONG_VRS:
            (length,) = _UNPACK_LONG(data, position + 8)
            start = position + 12
        elif vr in _SHORT_VRS:
            start = position + 8
        else:
            raise Unsupported
        if length == _UNDEFINED or start + length > size:
            raise InvalidInstance(_TRUNCATED)
        if element == 0x0010:
            try:
                transfer_syntax = bytes(data[start : start + length]).decode("ascii").strip(" \x00")
            except UnicodeDecodeError:
                raise Unsupported from None
        position = start + length
    if transfer_syntax is None:
        raise Unsupported
    return transfer_syntax, position


def _elements(
    data: memoryview,
    position: int,
    implicit: bool,
    wanted: Collection[int],
    values: dict[int, bytes],
    *,
    top: bool = False,
) -> int:
    """Walk the elements from ``position``; return where the walk stopped.

    At the top level it stops before the pixel data or the end; inside an item of undefined length, just
    after the item delimiter.
    """
    size = len(data)
    while position + 8 <= size:
        if implicit:
            group, element, length = _UNPACK_IMPLICIT(data, position)
            start, vr = position + 8, None
        else:
            group, element, vr, length = _UNPACK_TAG_SHORT(data, position)
            start = position + 8
            if vr in _LONG_VRS:
                if start + 4 > size:
                    raise InvalidInstance(_TRUNCATED)
                (length,) = _UNPACK_LONG(data, start)
                start += 4
            elif group == 0xFFFE or vr not in _SHORT_VRS:
                if group == 0xFFFE and element == _ITEM_END and not top:
                    return position + 8
                raise Unsupported
        if group == 0xFFFE and element == _ITEM_END and not top:
            return start
        if top and group == 0x7FE0 and element in _PIXEL_DATA_ELEMENTS:
            return position
        if length == _UNDEFINED:
            if (not implicit and vr != b"SQ") or group == 0xFFFE or (group << 16 | element) in wanted:
                raise Unsupported  # UN of undefined length, or an item outside a sequence
            position = _undefined_sequence(data, start, implicit)
            continue
        if start + length > size:
            raise InvalidInstance(_TRUNCATED)
        if top and (group << 16 | element) in wanted:
            values[group << 16 | element] = bytes(data[start : start + length])
        position = start + length
    if not top:
        raise InvalidInstance(_TRUNCATED)  # an item of undefined length with no delimiter
    return position  # fewer than 8 bytes left: pydicom ends the data set there too


def _undefined_sequence(data: memoryview, position: int, implicit: bool) -> int:
    """Skip the items of a sequence of undefined length; return the position after its delimiter."""
    size = len(data)
    while position + 8 <= size:
        group, element, length = _UNPACK_IMPLICIT(data, position)  # item tags are implicit in any syntax
        if group != 0xFFFE:
            raise Unsupported
        position += 8
        if element == _SEQUENCE_END:
            return position
        if element != _ITEM:
            raise Unsupported
        if length == _UNDEFINED:
            position = _elements(data, position, implicit, (), {})
        elif position + length > size:
            raise InvalidInstance(_TRUNCATED)
        else:
            position += length
    raise InvalidInstance(_TRUNCATED)


def _check_pixel_data(data: memoryview, position: int, implicit: bool) -> None:
    """Refuse pixel data cut short, as ``_header._check_complete`` does after pydicom."""
    size = len(data)
    if size - position < 12 or bytes(data[position : position + 4]) != b"\xe0\x7f\x10\x00":
        return  # no (integer) pixel data
    if implicit:
        (length,) = _UNPACK_LONG(data, position + 4)
        header = 8
    elif bytes(data[position + 4 : position + 6]) in _LONG_VRS:
        (length,) = _UNPACK_LONG(data, position + 8)
        header = 12
    else:
        (length,) = struct.unpack_from("<H", data, position + 6)
        header = 12
    if length == _UNDEFINED:
        if bytes(data[size - 8 :]) != _SEQUENCE_DELIMITER and _SEQUENCE_DELIMITER not in bytes(
            data[position:]
        ):
            raise InvalidInstance("the data set is truncated: encapsulated pixel data has no end")
    elif position + header + length > size:
        raise InvalidInstance("the data set is truncated: the file ends inside the pixel data")
