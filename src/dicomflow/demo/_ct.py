"""A synthetic chest CT: an elliptic body cylinder with fat, two air-filled lungs, a spine and ribs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from dicomflow.demo._datasets import Grid, SeriesInfo, ellipsoid, image_datasets, patient_attributes

# Hounsfield units (mean, noise SD) of each material.
_AIR = (-1000.0, 5.0)
_FAT = (-100.0, 12.0)
_SOFT_TISSUE = (40.0, 12.0)
_LUNG = (-850.0, 20.0)
_BONE = (700.0, 40.0)
_RESCALE_INTERCEPT = -1024


@dataclass(frozen=True, eq=False)
class Phantom:
    """A generated CT series and its ground truth.

    Attributes
    ----------
    datasets
        CT Image Storage data sets, one per slice, InstanceNumber 1 at the top (highest z).
    expected_volumes_ml
        Ground-truth volumes of ``body``, ``bone`` and ``air`` (inside-body air: the lungs), counted
        from the painted voxels.
    truth
        The ground-truth masks (z, y, x), slices ascending in z (the order of a loaded volume).
    """

    datasets: tuple[Dataset, ...]
    expected_volumes_ml: dict[str, float]
    truth: dict[str, NDArray[np.bool_]] = field(repr=False)


def make_ct_phantom(
    *,
    slices: int = 60,
    rows: int = 128,
    cols: int = 128,
    pixel_spacing: float = 1.5,
    slice_thickness: float = 2.5,
    patient_id: str = "DEMO001",
    seed: int = 0,
) -> Phantom:
    """A synthetic axial chest CT with known body, bone and air volumes.

    Shapes, scaled to the field of view (FOV = ``cols * pixel_spacing`` by ``rows * pixel_spacing``, and
    the z extent ``Z = slices * slice_thickness``), in patient LPS mm around the volume centre:

    * surrounding air, -1000 HU;
    * body: an elliptic cylinder along z through every slice, semi-axes ``a = 0.42 FOVx`` (left-right),
      ``b = 0.30 FOVy`` (anterior-posterior), soft tissue 40 HU with a fat rim (-100 HU) in its outer 8 %;
    * lungs: two ellipsoids, -850 HU, centred at ``(±0.45 a, -0.1 b, 0.15 Z)`` with semi-axes
      ``(0.3 a, 0.55 b, 0.35 Z)``;
    * bone, 700 HU: a spine cylinder (radius ``0.15 b`` at ``(0, 0.6 b)``) through every slice, and ribs:
      an elliptic shell (0.80 to 0.88 of the body ellipse, anterior and lateral, ``y < 0.3 b``) in 6 mm
      bands every 18 mm along the lungs.

    Every material has Gaussian noise (5 to 40 HU SD). Pixels are stored as int16 with RescaleIntercept
    -1024, RescaleSlope 1.

    Parameters
    ----------
    slices, rows, cols
        Grid size.
    pixel_spacing, slice_thickness
        Voxel size in mm (slices are contiguous).
    patient_id
        PatientID (PatientName is ``Demo^<patient_id>``).
    seed
        Seed of the noise.

    Returns
    -------
    Phantom
        The data sets and the expected volumes (exact voxel counts of the painted shapes).
    """
    grid = Grid(slices, rows, cols, pixel_spacing, slice_thickness)
    labels = _ct_labels(grid)
    materials = [_AIR, _FAT, _SOFT_TISSUE, _LUNG, _BONE]
    rng = np.random.default_rng(seed)
    means = np.array([m for m, _ in materials])[labels]
    sds = np.array([s for _, s in materials])[labels]
    hu = means + rng.normal(size=labels.shape) * sds
    stored = np.clip(np.rint(hu) - _RESCALE_INTERCEPT, -32768, 32767).astype(np.int16)
    truth = {
        "body": labels > 0,
        "bone": labels == 4,
        "air": labels == 3,
    }
    series = SeriesInfo(
        study=patient_attributes(patient_id, "CT"),
        series_instance_uid=generate_uid(),
        series_number=2,
        series_description="Thorax 2.5 mm",
        protocol_name="Chest phantom",
        attributes=_ct_attributes(grid),
    )
    datasets = image_datasets(stored, grid, series, CTImageStorage, "CT")
    expected = {name: float(mask.sum()) * grid.voxel_ml for name, mask in truth.items()}
    return Phantom(datasets=datasets, expected_volumes_ml=expected, truth=truth)


def _ct_labels(grid: Grid) -> NDArray[np.intp]:
    """Material labels (0 air, 1 fat, 2 soft tissue, 3 lung, 4 bone) of every voxel, (z, y, x)."""
    centres = grid.centres()
    z = centres[0]
    a, b = 0.42 * grid.cols * grid.pixel_spacing, 0.30 * grid.rows * grid.pixel_spacing
    z_extent = grid.slices * grid.slice_thickness
    shape = (grid.slices, grid.rows, grid.cols)
    body_radius = np.broadcast_to(ellipsoid(centres, (0, 0, 0), (a, b, np.inf)), shape)
    labels = np.zeros(shape, dtype=np.intp)
    labels[body_radius < 1.0] = 1
    labels[body_radius < 0.92] = 2
    for side in (-1, 1):
        lung = ellipsoid(
            centres, (side * 0.45 * a, -0.1 * b, 0.15 * z_extent), (0.3 * a, 0.55 * b, 0.35 * z_extent)
        )
        labels[np.broadcast_to(lung < 1.0, shape)] = 3
    spine = ellipsoid(centres, (0, 0.6 * b, 0), (0.15 * b, 0.15 * b, np.inf))
    labels[np.broadcast_to(spine < 1.0, shape)] = 4
    y = centres[1]
    lung_bottom, lung_top = 0.15 * z_extent - 0.35 * z_extent, 0.15 * z_extent + 0.35 * z_extent
    in_band = ((z - lung_bottom) % 18.0 < 6.0) & (z > lung_bottom) & (z < lung_top)
    ribs = (body_radius >= 0.80) & (body_radius < 0.88) & (y < 0.3 * b) & in_band
    labels[ribs] = 4
    return labels


def _ct_attributes(grid: Grid) -> dict[str, object]:
    return {
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 1,
        "RescaleIntercept": _RESCALE_INTERCEPT,
        "RescaleSlope": 1,
        "RescaleType": "HU",
        "WindowCenter": 40,
        "WindowWidth": 400,
        "KVP": 120,
        "XRayTubeCurrent": 200,
        "ExposureTime": 500,
        "ConvolutionKernel": "STANDARD",
        "ReconstructionDiameter": round(grid.cols * grid.pixel_spacing, 2),
        "ScanOptions": "HELICAL MODE",
    }
