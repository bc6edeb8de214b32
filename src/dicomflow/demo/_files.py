"""Write demo studies as Part 10 files, one folder per study."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset

from dicomflow.demo._ct import make_ct_phantom
from dicomflow.demo._mr import make_ms_study


class DemoKind(StrEnum):
    """Which demo studies to write."""

    CT = "ct"
    MR = "mr"
    ALL = "all"


CT_SLICES = 60  # one CT series
MR_SLICES = 40  # each of the two MR series (T1 and FLAIR)


def demo_file_count(kind: Literal["ct", "mr", "all"] | DemoKind, patients: int = 1) -> int:
    """How many files :func:`write_demo_data` writes for ``kind`` and ``patients``."""
    kind = DemoKind(kind)
    per_patient = (CT_SLICES if kind != DemoKind.MR else 0) + (2 * MR_SLICES if kind != DemoKind.CT else 0)
    return patients * per_patient


def write_demo_data(
    out_dir: Path,
    *,
    kind: Literal["ct", "mr", "all"] | DemoKind,
    patients: int = 1,
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write synthetic studies as Part 10 files (explicit VR little endian).

    Patient ``n`` (1, 2, …) is ``DEMO00n``; its CT phantom goes to ``<out_dir>/DEMO00n_CT/`` and its MR
    study (T1 and FLAIR) to ``<out_dir>/DEMO00n_MR/``, files named ``<series>-<instance>.dcm``. Each
    patient gets its own noise and, for MR, ``3 + n % 4`` lesions at other places.

    Parameters
    ----------
    out_dir
        Where to write (created if needed).
    kind
        ``ct``, ``mr`` or ``all``.
    patients
        How many patients.
    progress
        Called with each file written.

    Returns
    -------
    list[Path]
        The files written.

    Raises
    ------
    ValueError
        If ``kind`` is unknown or ``patients`` is below 1.
    """
    kind = DemoKind(kind)
    if patients < 1:
        raise ValueError(f"patients must be at least 1, not {patients}")
    written: list[Path] = []
    for n in range(1, patients + 1):
        patient_id = f"DEMO{n:03d}"
        if kind in (DemoKind.CT, DemoKind.ALL):
            phantom = make_ct_phantom(patient_id=patient_id, seed=n, slices=CT_SLICES)
            written += _write_study(phantom.datasets, out_dir / f"{patient_id}_CT", progress)
        if kind in (DemoKind.MR, DemoKind.ALL):
            study = make_ms_study(patient_id=patient_id, seed=n, lesions=3 + n % 4, slices=MR_SLICES)
            written += _write_study((*study.t1, *study.flair), out_dir / f"{patient_id}_MR", progress)
    return written


def _write_study(
    datasets: Iterable[Dataset], folder: Path, progress: Callable[[Path], None] | None
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{int(ds.SeriesNumber):03d}-{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        if progress is not None:
            progress(path)
        paths.append(path)
    return paths
