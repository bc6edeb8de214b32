"""Grinders turn a chosen series into what a processor wants, as DicomNode's do, and combine.

``VolumeGrinder`` and ``NiftiGrinder`` sort by position along the slice normal (never by InstanceNumber)
and keep the geometry; ``TagGrinder`` keeps the tags the others throw away; ``ManyGrinder`` runs several
and returns a dict, so nothing is lost by choosing one format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.dataset import Dataset

from dicomflow.pipelines._series import SeriesData

if TYPE_CHECKING:
    import nibabel

    from dicomflow.dicom import Volume


class Grinder(Protocol):
    """A callable from a series to anything a processor wants.

    A grinder that stacks the series into one volume says so with a true ``stacks_volume`` attribute: the
    checks then make slices in several orientations an error before processing, not a warning.
    """

    def __call__(self, series: SeriesData) -> Any: ...


def _order(ds: Dataset) -> tuple[float, int]:
    number = ds.get("InstanceNumber")
    position = ds.get("ImagePositionPatient")
    orientation = ds.get("ImageOrientationPatient")
    if position is not None and orientation is not None and len(orientation) == 6:
        row, col = [float(v) for v in orientation[:3]], [float(v) for v in orientation[3:]]
        normal = (
            row[1] * col[2] - row[2] * col[1],
            row[2] * col[0] - row[0] * col[2],
            row[0] * col[1] - row[1] * col[0],
        )
        return sum(float(p) * n for p, n in zip(position, normal, strict=True)), int(number or 0)
    return float(number or 0), 0


def stacks_volume(grinder: Grinder) -> bool:
    """Whether ``grinder`` stacks its series into one volume (its ``stacks_volume`` attribute)."""
    return bool(getattr(grinder, "stacks_volume", False))


class DatasetsGrinder:
    """The full datasets, sorted along the slice normal (by InstanceNumber without geometry)."""

    def __call__(self, series: SeriesData) -> list[Dataset]:
        return sorted(series.datasets(), key=_order)


class PathsGrinder:
    """The files of the series, in the same order as :class:`DatasetsGrinder`."""

    def __call__(self, series: SeriesData) -> list[Path]:
        order = sorted(range(len(series.paths)), key=lambda i: _order(series.headers[i]))
        return [series.paths[i] for i in order]


class VolumeGrinder:
    """A :class:`dicomflow.dicom.Volume`: float32 array (z, y, x) in real units with its affine."""

    stacks_volume = True

    def __call__(self, series: SeriesData) -> Volume:
        from dicomflow.dicom import load_volume

        return load_volume(series.datasets())


class NiftiGrinder:
    """A nibabel ``Nifti1Image`` in RAS orientation (via :class:`VolumeGrinder`)."""

    stacks_volume = True

    def __call__(self, series: SeriesData) -> nibabel.Nifti1Image:
        from dicomflow.dicom import volume_to_nifti

        return volume_to_nifti(VolumeGrinder()(series))


class TagGrinder:
    """Tag values (by keyword) from the first instance; a missing tag raises unless ``optional``."""

    def __init__(self, keywords: Sequence[str], *, optional: bool = False) -> None:
        self.keywords = tuple(keywords)
        self.optional = optional

    def __call__(self, series: SeriesData) -> dict[str, Any]:
        first = series.headers[0]
        missing = [k for k in self.keywords if k not in first]
        if missing and not self.optional:
            raise KeyError(f"{series.label()} lacks {', '.join(missing)}")
        return {k: first.get(k) for k in self.keywords}


class ManyGrinder:
    """Several grinders at once: ``ManyGrinder(volume=VolumeGrinder(), tags=TagGrinder([...]))``."""

    def __init__(self, **grinders: Grinder) -> None:
        self.grinders = grinders
        self.stacks_volume = any(stacks_volume(grinder) for grinder in grinders.values())

    def __call__(self, series: SeriesData) -> dict[str, Any]:
        return {name: grinder(series) for name, grinder in self.grinders.items()}
