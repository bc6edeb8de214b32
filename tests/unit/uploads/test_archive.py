"""Zip extraction refuses an archive with too many entries from its end of central directory record alone,
before ``zipfile`` reads the central directory into memory (zip64 records too)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from dicomflow.uploads._archive import ArchiveRefused, ZipLimits, extract

LIMITS = ZipLimits(max_members=10)
WRITER = zipfile.ZipFile  # the tests' own, kept from the patch below


def _zip(path: Path, count: int) -> Path:
    with WRITER(path, "w") as archive:
        for index in range(count):
            archive.writestr(f"{index}.dcm", b"x")
    return path


def _forged_zip64(path: Path, entries: int, directory: int) -> Path:
    """A zip64 end of central directory claiming ``entries`` entries in ``directory`` bytes, and no more."""
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, directory, 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(zip64 + locator + eocd)
    return path


@pytest.fixture
def no_directory_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the central directory was read")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)  # the module _archive uses


@pytest.mark.usefixtures("no_directory_read")
def test_too_many_entries_are_refused_before_the_directory_is_read(tmp_path: Path) -> None:
    with pytest.raises(ArchiveRefused, match="11 entries; at most 10"):
        extract(_zip(tmp_path / "a.zip", 11), tmp_path / "out", LIMITS)


@pytest.mark.usefixtures("no_directory_read")
def test_a_zip64_record_is_read_too(tmp_path: Path) -> None:
    with pytest.raises(ArchiveRefused, match="4294967296 entries"):
        extract(_forged_zip64(tmp_path / "b.zip", 1 << 32, 1 << 40), tmp_path / "out", LIMITS)


@pytest.mark.usefixtures("no_directory_read")
def test_a_central_directory_too_large_for_its_entries_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveRefused, match="central directory of 1099511627776 bytes"):
        extract(_forged_zip64(tmp_path / "c.zip", 2, 1 << 40), tmp_path / "out", LIMITS)


def test_within_the_limit_every_member_is_extracted(tmp_path: Path) -> None:
    out = extract(_zip(tmp_path / "a.zip", 10), tmp_path / "out", LIMITS)
    assert len(out.files) == 10 and out.refused == []
    (tmp_path / "cut.zip").write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(ArchiveRefused, match="no end of central directory"):
        extract(tmp_path / "cut.zip", tmp_path / "o")


def test_members_past_the_total_are_refused_and_those_before_kept(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(4):
            archive.writestr(f"{index}.dcm", bytes(1000))
    (tmp_path / "t.zip").write_bytes(buffer.getvalue())
    out = extract(tmp_path / "t.zip", tmp_path / "out", ZipLimits(max_total_bytes=2500))
    assert [name for name, _ in out.files] == ["0.dcm", "1.dcm"]
    assert [(name, "total size" in reason) for name, reason in out.refused] == [
        ("2.dcm", True),
        ("3.dcm", True),
    ]
