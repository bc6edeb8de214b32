"""Safe extraction of uploaded zips: no member escapes the target, and no bomb fills the disk.

Refused, each with its own reason (the rest of the archive is still extracted): absolute names, ``..``
parts, drive letters and backslash tricks; symlinks and other special files; encrypted members; nested zips
(reported, not opened: one level of archive is what uploads need); corrupt members (bad deflate or bzip2
data, a wrong CRC). Bounds: the entry count and the central directory's size, read from the end of central
directory record before the directory itself is read; the total and per-member size *as actually read* (a
forged header that claims less than the data holds is caught; members past the total are refused), and the
compression ratio of each member.
"""

from __future__ import annotations

import lzma
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipLimits:
    """Bounds of one archive."""

    max_members: int = 20_000
    max_total_bytes: int = 4 * 1024**3
    max_member_bytes: int = 1024**3
    max_ratio: float = 100.0  # uncompressed / compressed of one member (DICOM rarely exceeds ~20)


@dataclass
class Extracted:
    """What an archive gave: files written (with their names in the archive) and members refused."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


class ArchiveRefused(ValueError):
    """The archive as a whole is refused (unreadable, or over its bounds)."""


class _Corrupt(ArchiveRefused):
    """One member cannot be read (its data is corrupt, or its compression unknown)."""


DIRECTORY_BYTES_PER_ENTRY = 1024  # central directory bytes allowed per entry (46 + name + extra + comment)
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def is_zip(path: Path) -> bool:
    """Whether a file starts like a zip archive (local header, or an empty archive)."""
    with path.open("rb") as handle:
        return handle.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def extract(archive: Path, target: Path, limits: ZipLimits = ZipLimits()) -> Extracted:
    """Extract the regular members of ``archive`` into ``target`` under fresh names.

    Raises
    ------
    ArchiveRefused
        When the file is not a readable zip, or holds more members or bytes than ``limits`` allow.
    """
    out = Extracted()
    target.mkdir(parents=True, exist_ok=True)
    check_directory(archive, limits)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            budget = limits.max_total_bytes
            for index, member in enumerate(members):
                reason = _unsafe(member) or ("" if budget > 0 else _OVER_TOTAL)
                if reason:
                    out.refused.append((member.filename, reason))
                    continue
                dest = target / f"{index:07d}_{_safe_name(member.filename)}"
                try:
                    budget -= _copy(zf, member, dest, limits, budget)
                except ArchiveRefused as exc:
                    dest.unlink(missing_ok=True)
                    out.refused.append((member.filename, str(exc)))
                    budget = 0 if str(exc) == _OVER_TOTAL else budget  # the members after it too
                    continue
                out.files.append((member.filename, dest))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from exc
    return out


def check_directory(archive: Path, limits: ZipLimits) -> int:
    """The entry count of ``archive``, read from its end of central directory record (zip64 too) alone.

    Raises
    ------
    ArchiveRefused
        No such record, or more entries (or a larger central directory) than ``limits`` allow: the
        directory, which :class:`zipfile.ZipFile` reads whole on opening, is never read then.
    """
    with archive.open("rb") as handle:
        size = handle.seek(0, 2)
        tail_start = max(0, size - _EOCD.size - 0xFFFF - _ZIP64_LOCATOR.size)  # the comment is at most 64 KiB
        handle.seek(tail_start)
        tail = handle.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            raise ArchiveRefused("not a readable zip archive: no end of central directory record")
        _, _, _, _, entries, directory, _, _ = _EOCD.unpack_from(tail, at)
        if at >= _ZIP64_LOCATOR.size and tail[at - _ZIP64_LOCATOR.size : at].startswith(b"PK\x06\x07"):
            offset = _ZIP64_LOCATOR.unpack_from(tail, at - _ZIP64_LOCATOR.size)[2]
            handle.seek(offset)
            record = handle.read(_ZIP64_EOCD.size)
            if len(record) < _ZIP64_EOCD.size or not record.startswith(b"PK\x06\x06"):
                raise ArchiveRefused("not a readable zip archive: bad zip64 end of central directory")
            entries, directory = _ZIP64_EOCD.unpack(record)[7:9]
    if entries > limits.max_members:
        raise ArchiveRefused(f"zip holds {entries} entries; at most {limits.max_members} are taken")
    if directory > max(entries, 1) * DIRECTORY_BYTES_PER_ENTRY:
        raise ArchiveRefused(f"zip central directory of {directory} bytes for {entries} entries refused")
    return int(entries)


def _unsafe(member: zipfile.ZipInfo) -> str:
    name = member.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path in zip refused"
    if ".." in path.parts:
        return "path escaping the upload ('..') refused"
    mode = member.external_attr >> 16
    if mode and not (stat.S_ISREG(mode) or stat.S_IFMT(mode) == 0):
        return (
            "symbolic link or special file in zip refused" if stat.S_ISLNK(mode) else "special file refused"
        )
    if member.flag_bits & 0x1:
        return "encrypted zip member refused"
    if name.lower().endswith(".zip"):
        return "nested zip not imported (extract it, or upload it as its own file)"
    return ""


_OVER_TOTAL = "zip expands beyond the total size allowed (zip bomb?)"
_UNREADABLE = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError, OSError)


def _copy(zf: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path, limits: ZipLimits, budget: int) -> int:
    """Copy one member, counting the bytes really produced; returns them."""
    allowed = min(limits.max_member_bytes, budget)
    ratio_cap = max(member.compress_size, 1) * limits.max_ratio + CHUNK
    written = 0
    try:
        src = zf.open(member)
    except _UNREADABLE as exc:
        raise _Corrupt(f"corrupt or unreadable zip member: {exc}") from exc
    with src, dest.open("wb") as dst:
        while chunk := _read(src):
            written += len(chunk)
            if written > budget:
                raise ArchiveRefused(_OVER_TOTAL)
            if written > allowed:
                raise ArchiveRefused("zip member larger than allowed when extracted")
            if written > ratio_cap:
                raise ArchiveRefused(f"compression ratio above {limits.max_ratio:g}:1 (zip bomb?)")
            dst.write(chunk)
    return written


def _read(src: IO[bytes]) -> bytes:
    try:
        return src.read(CHUNK)
    except _UNREADABLE as exc:  # bad deflate or bzip2 data (zlib.error, OSError), a wrong CRC (BadZipFile)
        raise _Corrupt(f"corrupt zip member: {exc}") from exc


def _safe_name(name: str) -> str:
    from dicomflow.uploads._names import sanitize

    return sanitize(PurePosixPath(name.replace("\\", "/")).name)
