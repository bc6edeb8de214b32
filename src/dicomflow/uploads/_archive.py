"""Safe extraction of uploaded zips: no member escapes the target, and no bomb fills the disk.

Refused, each with its own reason (the rest of the archive is still extracted): absolute names, ``..``
parts, drive letters and backslash tricks; symlinks and other special files; encrypted members; nested zips
(reported, not opened: one level of archive is what uploads need). Bounds: the member count, the total and
per-member size *as actually read* (a forged header that claims less than the data holds is caught), and
the compression ratio of each member.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipLimits:
    """Bounds of one archive."""

    max_members: int = 100_000
    max_total_bytes: int = 20 * 1024**3
    max_member_bytes: int = 2 * 1024**3
    max_ratio: float = 200.0  # uncompressed / compressed of one member (DICOM rarely exceeds ~20)


@dataclass
class Extracted:
    """What an archive gave: files written (with their names in the archive) and members refused."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


class ArchiveRefused(ValueError):
    """The archive as a whole is refused (unreadable, or over its bounds)."""


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
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > limits.max_members:
                raise ArchiveRefused(
                    f"zip holds {len(members)} files; at most {limits.max_members} are taken"
                )
            budget = limits.max_total_bytes
            for index, member in enumerate(members):
                reason = _unsafe(member)
                if reason:
                    out.refused.append((member.filename, reason))
                    continue
                dest = target / f"{index:07d}_{_safe_name(member.filename)}"
                try:
                    budget -= _copy(zf, member, dest, limits, budget)
                except ArchiveRefused as exc:
                    dest.unlink(missing_ok=True)
                    if budget <= 0 or "total" in str(exc):
                        raise
                    out.refused.append((member.filename, str(exc)))
                    continue
                out.files.append((member.filename, dest))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from exc
    return out


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


def _copy(zf: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path, limits: ZipLimits, budget: int) -> int:
    """Copy one member, counting the bytes really produced; returns them."""
    allowed = min(limits.max_member_bytes, budget)
    ratio_cap = max(member.compress_size, 1) * limits.max_ratio + CHUNK
    written = 0
    with zf.open(member) as src, dest.open("wb") as dst:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise ArchiveRefused("zip expands beyond the total size allowed (zip bomb?)")
            if written > allowed:
                raise ArchiveRefused("zip member larger than allowed when extracted")
            if written > ratio_cap:
                raise ArchiveRefused(f"compression ratio above {limits.max_ratio:g}:1 (zip bomb?)")
            dst.write(chunk)
    return written


def _safe_name(name: str) -> str:
    from dicomflow.uploads._names import sanitize

    return sanitize(PurePosixPath(name.replace("\\", "/")).name)
