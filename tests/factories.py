"""Generated DICOM test data: instances with real geometry and tiny pixel arrays, studies, and files in
any transfer syntax the receiver accepts.

* :func:`make_instance` builds one image (32x32, file meta, fresh UIDs); keyword arguments set or, with
  ``None``, delete any attribute by keyword;
* :func:`make_study` builds a study of several consistent series;
* :func:`make_series` builds one series stacked along any orientation, at any spacing;
* :func:`make_tilted_ct` builds a gantry-tilted CT (sheared voxels) of a sphere of known volume;
* :func:`write_files` writes them as Part 10 files in a transfer syntax: pydicom for the native and the
  RLE / JPEG 2000 syntaxes, DCMTK (``dcmconv``, ``dcmcjpeg``, ``dcmcjpls``) for the others.

``DataDir`` reads a data directory (index rows, blob and staging files); ``DicomflowServer`` runs
``dicomflow serve`` in its own process group (the ``server`` and ``make_server`` fixtures build on it).

The lossy JPEG processes need narrow samples: baseline wants ``bits=8``, extended and JPEG-LS near-lossless
``bits=12`` or less (unsigned); :func:`bits_for` tells the widest for a syntax.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

SIZE = 32
"""Rows and columns of every generated image."""

SOP_CLASSES: dict[str, str] = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "PT": PositronEmissionTomographyImageStorage,
}

# Transfer syntax -> (DCMTK command converting an explicit VR little endian file, largest BitsStored).
_DCMTK: dict[str, tuple[list[str], int]] = {
    ExplicitVRBigEndian: (["dcmconv", "+tb"], 16),
    JPEGBaseline8Bit: (["dcmcjpeg", "+eb", "+un"], 8),
    JPEGExtended12Bit: (["dcmcjpeg", "+ee", "+un"], 12),
    JPEGLossless: (["dcmcjpeg", "+el", "+un"], 16),
    JPEGLosslessSV1: (["dcmcjpeg", "+e1", "+un"], 16),
    JPEGLSLossless: (["dcmcjpls", "+el", "+un"], 16),
    JPEGLSNearLossless: (["dcmcjpls", "+en", "+un"], 12),  # signed samples are refused
}
_PYDICOM_COMPRESSED: dict[str, dict[str, Any]] = {
    RLELossless: {},
    JPEG2000Lossless: {},
    JPEG2000: {"j2k_cr": [4]},
}
_NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}

TRANSFER_SYNTAXES: tuple[str, ...] = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)
"""Every transfer syntax :func:`write_files` can produce (and the receiver accepts)."""


def bits_for(transfer_syntax: str) -> int:
    """The widest ``bits`` of :func:`make_instance` that ``transfer_syntax`` can encode."""
    return _DCMTK[transfer_syntax][1] if transfer_syntax in _DCMTK else 16


def pixels(bits: int, seed: int) -> np.ndarray[Any, Any]:
    """A 32x32 image with structure (gradient, ring, noise), so that every codec has work to do.

    ``bits`` 16 gives signed CT-like values (int16), 12 and 8 unsigned values within that many bits.
    """
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    ring = ((x - 15.5) ** 2 + (y - 15.5) ** 2 < 100).astype(np.int64)
    noise = np.random.default_rng(seed).integers(0, 16, size=(SIZE, SIZE))
    image: np.ndarray[Any, Any]
    if bits == 16:
        image = (-1000 + 20 * x + 12 * y + 900 * ring + noise).astype(np.int16)
    else:
        top = (1 << bits) - 1
        image = np.clip(4 * x + 3 * y + top // 3 * ring + noise, 0, top).astype(
            np.uint8 if bits == 8 else np.uint16
        )
    return image


def make_instance(modality: str = "CT", *, bits: int = 16, **attrs: Any) -> Dataset:
    """One image instance with file meta, fresh UIDs, real geometry and a 32x32 pixel array.

    Parameters
    ----------
    modality
        Modality; CT, MR and PT get their own SOP Class, anything else is Secondary Capture.
    bits
        16 (signed int16, the default), 12 or 8 (unsigned) bits stored.
    attrs
        Attributes by keyword, set after the defaults; ``None`` deletes the attribute. Unless
        ``ImagePositionPatient`` is given, the position follows ``InstanceNumber`` (1 mm slices along z).
    """
    if bits not in (8, 12, 16):
        raise ValueError(f"bits {bits!r} is not 8, 12 or 16")
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PAT001"
    ds.PatientSex = "F"
    ds.PatientBirthDate = "19700101"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240501"
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = "102000"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC001"
    ds.StudyDescription = "Test study"
    ds.SeriesDescription = f"{modality} test series"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = modality
    ds.Manufacturer = "dicomflow tests"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if bits == 16 else 0
    if modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    for keyword, value in attrs.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if "ImagePositionPatient" not in attrs:
        z = float(ds.get("InstanceNumber") or 1) - 1
        ds.ImagePositionPatient = [-4, -4, z]
        ds.SliceLocation = z
    if "PixelData" not in attrs:
        ds.PixelData = pixels(bits, seed=int(ds.get("InstanceNumber") or 0)).tobytes()
    ds.file_meta = FileMetaDataset()
    if "SOPClassUID" in ds:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def make_conflicting_pair() -> tuple[Dataset, Dataset]:
    """Two different objects (SeriesDescription differs) under one SOP Instance UID, study and series."""
    first = make_instance(SeriesDescription="first")
    second = make_instance(
        SeriesDescription="second",
        SOPInstanceUID=first.SOPInstanceUID,
        StudyInstanceUID=first.StudyInstanceUID,
        SeriesInstanceUID=first.SeriesInstanceUID,
    )
    return first, second


def make_study(series: int = 2, instances: int = 3, modality: str = "CT", **attrs: Any) -> list[Dataset]:
    """``series`` x ``instances`` instances of one study and patient, series by series.

    Each series has its own Series Instance UID, Frame of Reference and SeriesNumber (1, 2, …); instances
    are numbered 1, 2, … with positions 1 mm apart. ``attrs`` apply to every instance (and may override
    the shared UIDs).
    """
    study_uid = generate_uid()
    out = []
    for s in range(series):
        series_attrs = {
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": generate_uid(),
            "FrameOfReferenceUID": generate_uid(),
            "SeriesNumber": s + 1,
            "SeriesDescription": f"{modality} series {s + 1}",
        }
        for i in range(instances):
            out.append(make_instance(modality, **{**series_attrs, "InstanceNumber": i + 1, **attrs}))
    return out


def make_series(
    slices: int = 10,
    modality: str = "CT",
    *,
    spacing: float = 1.0,
    first: float = 0.0,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    **attrs: Any,
) -> list[Dataset]:
    """One series of ``slices`` single-frame instances stacked along the slice normal (row x column).

    Instance n (1, 2, …) lies ``first + (n - 1) * spacing`` mm along the normal of ``orientation``, its
    corner 4 mm back along the row and column directions; all instances share the study, series and frame
    of reference UIDs. ``attrs`` apply to every instance (``None`` deletes, as in :func:`make_instance`).
    """
    row, column = np.array(orientation[:3], dtype=float), np.array(orientation[3:], dtype=float)
    normal = np.cross(row, column)
    shared = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "ImageOrientationPatient": [float(v) for v in orientation],
    }
    out = []
    for n in range(1, slices + 1):
        along = first + (n - 1) * spacing
        corner = along * normal - 4 * row - 4 * column
        geometry = {
            "InstanceNumber": n,
            "ImagePositionPatient": [round(float(v), 4) for v in corner],
            "SliceLocation": round(along, 4),
        }
        out.append(make_instance(modality, **{**shared, **geometry, **attrs}))
    return out


def make_tilted_ct(
    tilt: float = 15.0,
    *,
    radius: float = 20.0,
    step: float = 1.0,
    pixel_spacing: float = 1.0,
    size: int = 64,
    slices: int = 48,
) -> list[Dataset]:
    """A gantry-tilted CT of a water sphere (0 HU, ``radius`` mm) in air (-1000 HU), one series.

    The gantry is tilted by ``tilt`` degrees about the patient's x axis: the columns of every image run along
    ``(0, cos tilt, sin tilt)``, so the slice normal is ``(0, -sin tilt, cos tilt)``, while the table moves
    ``step`` mm along patient z from one slice to the next. Neighbouring slices are thus ``step * cos tilt``
    apart along their normal, and the voxels are sheared. Each voxel centre is painted by whether it lies in
    the sphere (centred in the middle of the stack), so its volume is ``4/3 pi radius**3`` up to sampling.
    """
    angle = np.radians(tilt)
    row, column = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(angle), np.sin(angle)])
    half = (size - 1) / 2 * pixel_spacing
    centre = np.zeros(3)
    shared: dict[str, Any] = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "ImageOrientationPatient": [float(v) for v in (*row, *column)],
        "PixelSpacing": [pixel_spacing, pixel_spacing],
        "SliceThickness": step,
        "Rows": size,
        "Columns": size,
        "RescaleIntercept": -1024,
        "SeriesDescription": f"tilted {tilt:g} deg",
    }
    j, i = np.mgrid[0:size, 0:size] * pixel_spacing
    out = []
    for n in range(slices):
        corner = np.array([0.0, 0.0, (n - (slices - 1) / 2) * step]) - half * row - half * column
        points = corner + i[..., None] * row + j[..., None] * column
        inside = np.linalg.norm(points - centre, axis=-1) <= radius
        stored = np.where(inside, 1024, 24).astype(np.int16)  # 0 HU and -1000 HU after the intercept
        geometry: dict[str, Any] = {
            "InstanceNumber": n + 1,
            "ImagePositionPatient": [round(float(v), 6) for v in corner],
            "PixelData": stored.tobytes(),
        }
        out.append(make_instance("CT", **{**shared, **geometry}))
    return out


def write_files(
    datasets: Sequence[Dataset], folder: Path, transfer_syntax: str = ExplicitVRLittleEndian
) -> list[Path]:
    """Write ``datasets`` as Part 10 files named ``<n>-<SOP Instance UID>.dcm`` in ``transfer_syntax``.

    The datasets themselves are not changed. DCMTK keeps the SOP Instance UIDs even for lossy syntaxes
    (``+un``), so every file keeps the identity of its dataset.

    Raises
    ------
    ValueError
        If the transfer syntax is not supported here, or the samples are too wide for a lossy JPEG process.
    subprocess.CalledProcessError
        If a DCMTK tool fails.
    """
    folder.mkdir(parents=True, exist_ok=True)
    transfer_syntax = UID(transfer_syntax)
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"cannot write {transfer_syntax!r}")
    paths = []
    for n, original in enumerate(datasets):
        if int(original.get("BitsStored", 0)) > bits_for(transfer_syntax):
            raise ValueError(f"{transfer_syntax.name} needs bits <= {bits_for(transfer_syntax)}")
        path = folder / f"{n:04d}-{original.get('SOPInstanceUID', 'no-sop-uid')}.dcm"
        ds = copy.deepcopy(original)
        if transfer_syntax in _PYDICOM_COMPRESSED:
            ds.compress(transfer_syntax, generate_instance_uid=False, **_PYDICOM_COMPRESSED[transfer_syntax])
        else:
            ds.file_meta.TransferSyntaxUID = (
                transfer_syntax if transfer_syntax in _NATIVE else ExplicitVRLittleEndian
            )
        ds.save_as(path, enforce_file_format=True)
        if transfer_syntax in _DCMTK:
            command = _DCMTK[transfer_syntax][0]
            converted = path.with_suffix(".tmp")
            done = subprocess.run([*command, str(path), str(converted)], timeout=60, capture_output=True)
            if done.returncode:
                raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
            converted.replace(path)
        paths.append(path)
    return paths


@contextmanager
def invalid_values_allowed() -> Iterator[None]:
    """Let pydicom set and write invalid values (a UID with letters, say) without raising or warning."""
    previous = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        config.settings.writing_validation_mode = previous


def encode_dataset(ds: Dataset, implicit_vr: bool = False) -> bytes:
    """The data set alone (no preamble, no file meta), little endian, as a C-STORE carries it."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit_vr
    write_dataset(buffer, ds)
    return buffer.getvalue()


def to_bytes(ds: Dataset) -> bytes:
    """``ds`` as Part 10 bytes (its file meta decides the encoding)."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dataset_offset(data: bytes) -> int:
    """Where the data set starts in Part 10 bytes: after preamble, ``DICM`` and the group 0002 elements."""
    if data[128:132] != b"DICM":
        raise ValueError("not a Part 10 file (no DICM prefix)")
    offset = 132
    while data[offset : offset + 2] == b"\x02\x00":
        vr = data[offset + 4 : offset + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = int.from_bytes(data[offset + 8 : offset + 12], "little")
            offset += 12 + length
        else:
            length = int.from_bytes(data[offset + 6 : offset + 8], "little")
            offset += 8 + length
    return offset


def dataset_bytes(data: bytes) -> bytes:
    """The data set part of Part 10 bytes (what travels in a C-STORE), file meta cut off."""
    return data[dataset_offset(data) :]


# -- a running server ---------------------------------------------------------------------------------------

SERVE_TIMEOUT = 60.0
"""Seconds a server may take to answer C-ECHO and ``/health``."""
ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "correct horse battery staple"


def server_env(**extra: str) -> dict[str, str]:
    """The environment of a server or CLI subprocess: ours without any ``DICOMFLOW_*``, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DICOMFLOW_")}
    env["DICOMFLOW_DIMSE__WORKERS"] = "2"
    env.update(extra)
    return env


def dicomflow(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``dicomflow`` command line (``python -m dicomflow``) and return what it did (no check)."""
    return subprocess.run(
        [sys.executable, "-m", "dicomflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or server_env(),
        check=False,
    )


class DataDir:
    """Read access to a data directory: the index (read-only queries) and the blob store's files.

    ``index_url`` is the index's SQLAlchemy URL when it is not the data directory's SQLite file (a
    PostgreSQL database, see ``tests/pg.py``; by default ``DICOMFLOW_INDEX__URL``, as ``Settings()``);
    queries are written with ``?`` placeholders for both.
    """

    def __init__(self, data_dir: Path, index_url: str = "") -> None:
        self.data_dir = data_dir
        found = index_url or os.environ.get("DICOMFLOW_INDEX__URL", "")  # as Settings() finds it
        self.index_url = found or f"sqlite:///{self.index_path}"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.sqlite3"

    def rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the index (SQLite in WAL mode, so safe while the server runs)."""
        if self.index_url.startswith("postgresql"):
            return _postgres_rows(self.index_url, sql, params)
        if not self.index_path.exists():
            raise FileNotFoundError(self.index_path)
        conn = sqlite3.connect(self.index_path, timeout=30)
        try:
            return list(conn.execute(sql, params).fetchall())
        finally:
            conn.close()

    def scalar(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any:
        """The first column of the first row of a query (``None`` when there is no row)."""
        found = self.rows(sql, params)
        return found[0][0] if found else None

    def instance_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM instances"))

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "blobs" / "objects"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "blobs" / "staging"

    def staged_files(self, settle: float = 3.0) -> list[Path]:
        """Files left in staging once released blobs had ``settle`` seconds to be synced and dropped.

        A stored instance keeps its staged name until a background sync of its directory (a fraction of a
        second); anything still there after that is a leftover.
        """
        deadline = time.monotonic() + settle
        while (found := self.staged_now()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return found

    def staged_now(self) -> list[Path]:
        """Staged instances and holds of every process (each stages in a folder of its own)."""
        return sorted(p for p in self.staging_dir.rglob("*") if p.suffix in (".part", ".dcm"))

    def blob_files(self) -> list[Path]:
        """Every published blob file."""
        return sorted(p for p in self.objects_dir.rglob("*") if p.is_file())


def _postgres_rows(url: str, sql: str, params: tuple[Any, ...] | dict[str, Any]) -> list[tuple[Any, ...]]:
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    if isinstance(params, dict):  # sqlite3's :name placeholders
        for name in params:
            sql = sql.replace(f":{name}", f"%({name})s")
    else:
        sql = sql.replace("?", "%s")
    with psycopg.connect(conninfo) as conn:
        return list(conn.execute(sql.encode(), params).fetchall())


class DicomflowServer(DataDir):
    """``dicomflow serve`` in its own process group, on loopback ports, with an admin token.

    Parameters
    ----------
    data_dir
        Data directory (index, blobs); kept across :meth:`stop` / :meth:`start`.
    dimse_port, http_port
        The ports; kept across restarts.
    env
        Extra environment variables (``DICOMFLOW_…`` settings).
    """

    ae_title = "DICOMFLOW"

    def __init__(
        self, data_dir: Path, dimse_port: int, http_port: int, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            data_dir, (env or {}).get("DICOMFLOW_INDEX__URL", f"sqlite:///{data_dir}/index.sqlite3")
        )
        self.dimse_port = dimse_port
        self.http_port = http_port
        self.env = server_env(**(env or {}))
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""
        self._http: httpx.Client | None = None

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers C-ECHO and ``/health``; create the admin token once."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dicomflow",
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--dimse-port",
                    str(self.dimse_port),
                    "--http-port",
                    str(self.http_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self._wait_until_ready()
        if not self.token:
            self.token = self._create_admin()

    def _create_admin(self) -> str:
        """The admin user and its token, written to the index in-process: two CLI processes fewer per server
        (``dicomflow users create`` and ``tokens create`` have tests of their own)."""
        from dicomflow.index import accounts, create_index_engine, tokens, utcnow, writing

        engine = create_index_engine(self.index_url)
        email, password_hash = accounts.normalized_email(ADMIN_EMAIL), accounts.hash_password(ADMIN_PASSWORD)
        try:
            with writing(engine) as conn:  # the repositories, as a use case would call them
                user = accounts.insert_user(conn, email, password_hash, accounts.Role.ADMIN, utcnow())
                token = tokens.new_token()
                tokens.insert_token(conn, user.id, token, tokens.TokenKind.API, utcnow(), None)
            return token
        finally:
            engine.dispose()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + SERVE_TIMEOUT
        echoed = healthy = False
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"dicomflow serve exited early:\n{self.log()}")
            echoed = echoed or self.echo()
            healthy = healthy or self._healthy()
            if echoed and healthy:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dicomflow serve not ready after {SERVE_TIMEOUT} s:\n{self.log()}")

    def echo(self) -> bool:
        """Whether the receiver answers ``echoscu``."""
        done = subprocess.run(
            ["echoscu", "-to", "2", "-aec", self.ae_title, "127.0.0.1", str(self.dimse_port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def _healthy(self) -> bool:
        try:
            return httpx.get(
                f"http://127.0.0.1:{self.http_port}/health", timeout=2, trust_env=False
            ).is_success
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the process group, then SIGKILL if it has not ended within ``timeout`` seconds."""
        self._signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(10)
        self._wait_group_gone(timeout=10)
        self._close_http()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a power cut, as far as the processes can tell)."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)
        self._wait_group_gone(timeout=10)
        self._close_http()

    def _signal(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def _wait_group_gone(self, timeout: float) -> None:
        """Wait until no process of the group is left (forked receivers end shortly after the supervisor)."""
        if self.process is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        self._signal(signal.SIGKILL)

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- clients ------------------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        """An HTTP client on ``/api/v1`` with the admin's bearer token."""
        if self._http is None:
            self._http = httpx.Client(
                base_url=f"http://127.0.0.1:{self.http_port}/api/v1",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=30,
                trust_env=False,
            )
        return self._http

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def get_json(self, path: str, **params: Any) -> Any:
        """``GET /api/v1<path>`` with the token; raises unless 2xx."""
        response = self.http.get(path, params={k: v for k, v in params.items() if v is not None})
        response.raise_for_status()
        return response.json()

    def events(self, kind: str | None = None, object_uid: str | None = None) -> list[dict[str, Any]]:
        """The event log through the API, newest first."""
        found: list[dict[str, Any]] = self.get_json("/events", kind=kind, object_uid=object_uid, limit=1000)
        return found

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``dicomflow <args> --data-dir <data_dir>``; raises on a non-zero exit when ``check``."""
        done = dicomflow(*args, "--data-dir", str(self.data_dir), env=self.env)
        if check and done.returncode != 0:
            raise AssertionError(
                f"dicomflow {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """The ``Error`` and the ``Warning`` lines of dicom3tools' ``dciodvfy`` on one Part 10 file."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")], [
        line for line in lines if line.startswith("Warning")
    ]


def nested_sequences(ds: Dataset, depth: int) -> bytes:
    """``ds`` as Part 10 bytes (explicit VR little endian) with a Content Sequence nested ``depth`` deep,
    each level one item of undefined length, inserted before the pixel data."""
    data = to_bytes(ds)
    at = data.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data: the nesting sorts before it
    sequence = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    ends = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return data[:at] + (sequence + item) * depth + ends * depth + data[at:]


def create_project(engine: Any, label: str, group: str = "default") -> Any:
    """Create a project in the index of ``engine`` in one transaction (a test's set-up); its ProjectInfo."""
    from dicomflow.index import catalog, writing

    with writing(engine) as conn:
        return catalog.create_project(conn, label, group)
