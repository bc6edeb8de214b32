"""A synthetic brain MR study: a T1 and a FLAIR series of one head, with bright lesions on FLAIR only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage, generate_uid
from scipy import ndimage

from dicomflow.demo._datasets import Grid, SeriesInfo, ellipsoid, image_datasets, patient_attributes

# Tissue labels and their (T1, FLAIR) signal; noise SD is added on top (magnitude images).
_BACKGROUND, _SCALP, _SKULL, _CSF, _GREY, _WHITE, _LESION = range(7)
_T1 = np.array([0.0, 750.0, 60.0, 150.0, 500.0, 700.0, 700.0])
_FLAIR = np.array([0.0, 500.0, 40.0, 60.0, 420.0, 350.0, 800.0])
_NOISE_SD = (15.0, 12.0)
_HEAD_SEMI_AXES = (0.36, 0.44, 0.43)  # of the field of view (x, y) and z extent
_MAX_TRIES = 10_000


@dataclass(frozen=True)
class LesionTruth:
    """One painted lesion: its voxel count, volume and centre of mass in patient LPS mm."""

    voxels: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class MsStudy:
    """A generated MR study (T1 and FLAIR series sharing study, frame of reference and grid) and its truth.

    Attributes
    ----------
    t1, flair
        MR Image Storage data sets, one per slice, InstanceNumber 1 at the top.
    lesion_count
        Number of painted lesions (separate connected components).
    lesion_volume_ml
        Their total volume (exact voxel count).
    brain_volume_ml
        Volume of the brain (grey and white matter, ventricles and lesions), exact voxel count.
    lesions
        Each lesion's truth.
    truth
        Ground-truth masks ``brain`` and ``lesion`` (z, y, x), slices ascending in z.
    """

    t1: tuple[Dataset, ...]
    flair: tuple[Dataset, ...]
    lesion_count: int
    lesion_volume_ml: float
    brain_volume_ml: float
    lesions: tuple[LesionTruth, ...]
    truth: dict[str, NDArray[np.bool_]] = field(repr=False)


def make_ms_study(
    *,
    slices: int = 40,
    rows: int = 96,
    cols: int = 96,
    pixel_spacing: float = 2.0,
    slice_thickness: float = 3.0,
    lesions: int = 5,
    patient_id: str = "DEMO001",
    seed: int = 0,
) -> MsStudy:
    """A synthetic brain MR study with ``lesions`` FLAIR-hyperintense white-matter lesions.

    The head is a set of nested ellipsoids (semi-axes 0.36 x 0.44 of the field of view in-plane and 0.43
    of the z extent): scalp (outer 7 % of the radius), skull, CSF, grey matter (a rim) and white matter
    (inside 72 %), with two CSF ventricles. Lesions are ellipsoids of 2.5 to 5 mm semi-axes in white
    matter, at least two voxels apart and away from the ventricles, bright on FLAIR and invisible on T1.

    Both series share the StudyInstanceUID, FrameOfReferenceUID and grid; the T1 series (number 2) is
    ``T1 MPRAGE``, the FLAIR (number 3) ``FLAIR``, with plausible 3 T acquisition attributes.

    Parameters
    ----------
    slices, rows, cols
        Grid size.
    pixel_spacing, slice_thickness
        Voxel size in mm.
    lesions
        Number of lesions to paint.
    patient_id
        PatientID.
    seed
        Seed of the lesion placement and the noise.

    Returns
    -------
    MsStudy
        Both series and the truth: lesion count, volumes and masks.

    Raises
    ------
    ValueError
        If ``lesions`` lesions do not fit in the white matter.
    """
    grid = Grid(slices, rows, cols, pixel_spacing, slice_thickness)
    rng = np.random.default_rng(seed)
    labels = _head_labels(grid)
    painted = _paint_lesions(labels, grid, lesions, rng)
    study = patient_attributes(patient_id, "MR")
    t1 = _series(labels, _T1, _NOISE_SD[0], rng, grid, study, 2, _t1_attributes())
    flair = _series(labels, _FLAIR, _NOISE_SD[1], rng, grid, study, 3, _flair_attributes())
    lesion_mask = labels == _LESION
    brain = np.isin(labels, [_GREY, _WHITE, _LESION]) | _ventricles(grid)
    return MsStudy(
        t1=t1,
        flair=flair,
        lesion_count=len(painted),
        lesion_volume_ml=float(lesion_mask.sum()) * grid.voxel_ml,
        brain_volume_ml=float(brain.sum()) * grid.voxel_ml,
        lesions=tuple(painted),
        truth={"brain": brain, "lesion": lesion_mask},
    )


def _head_semi_axes(grid: Grid) -> tuple[float, float, float]:
    fx, fy, fz = _HEAD_SEMI_AXES
    return (
        fx * grid.cols * grid.pixel_spacing,
        fy * grid.rows * grid.pixel_spacing,
        fz * grid.slices * grid.slice_thickness,
    )


def _ventricles(grid: Grid) -> NDArray[np.bool_]:
    centres = grid.centres()
    a, b, c = _head_semi_axes(grid)
    shape = (grid.slices, grid.rows, grid.cols)
    found = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        radius = ellipsoid(centres, (side * 0.12 * a, -0.05 * b, 0.1 * c), (0.08 * a, 0.25 * b, 0.2 * c))
        found |= np.broadcast_to(radius < 1.0, shape)
    return found


def _head_labels(grid: Grid) -> NDArray[np.intp]:
    """Tissue labels (z, y, x) of the head without lesions."""
    radius = np.broadcast_to(
        ellipsoid(grid.centres(), (0, 0, 0), _head_semi_axes(grid)), (grid.slices, grid.rows, grid.cols)
    )
    labels = np.full(radius.shape, _BACKGROUND, dtype=np.intp)
    for limit, label in ((1.0, _SCALP), (0.93, _SKULL), (0.86, _CSF), (0.80, _GREY), (0.72, _WHITE)):
        labels[radius < limit] = label
    labels[_ventricles(grid)] = _CSF
    return labels


def _paint_lesions(
    labels: NDArray[np.intp], grid: Grid, count: int, rng: np.random.Generator
) -> list[LesionTruth]:
    """Paint ``count`` separate lesions into deep white matter (``labels`` changes in place)."""
    z, y, x = (axis.ravel() for axis in grid.centres())
    deep_white = ndimage.binary_erosion(labels == _WHITE, iterations=2)
    candidates = np.argwhere(deep_white)
    free = deep_white.copy()  # no lesion yet within two voxels
    painted: list[LesionTruth] = []
    reach = (
        int(np.ceil(6.0 / grid.slice_thickness)) + 3,
        int(np.ceil(5.0 / grid.pixel_spacing)) + 3,
        int(np.ceil(5.0 / grid.pixel_spacing)) + 3,
    )
    for _ in range(_MAX_TRIES):
        if len(painted) == count or not len(candidates):
            break
        centre = candidates[rng.integers(len(candidates))]
        box = tuple(
            slice(max(0, int(c) - r), min(n, int(c) + r + 1))
            for c, r, n in zip(centre, reach, labels.shape, strict=True)
        )
        semi_axes = (float(rng.uniform(2.5, 5.0)), float(rng.uniform(2.5, 5.0)), float(rng.uniform(3.0, 6.0)))
        local = (z[box[0], None, None], y[None, box[1], None], x[None, None, box[2]])
        k, j, i = centre
        lesion = ellipsoid(local, (x[i], y[j], z[k]), semi_axes) < 1.0
        if lesion.sum() < 4 or np.any(lesion & ~free[box]):
            continue
        labels[box][lesion] = _LESION
        free[box] &= ~ndimage.binary_dilation(lesion, structure=np.ones((3, 3, 3)), iterations=2)
        painted.append(_lesion_truth(lesion, box, grid, (z, y, x)))
    if len(painted) < count:
        raise ValueError(f"cannot place {count} separate lesions in the white matter of this grid")
    return painted


def _lesion_truth(
    lesion: NDArray[np.bool_],
    box: tuple[slice, ...],
    grid: Grid,
    axes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
) -> LesionTruth:
    kji = np.argwhere(lesion).mean(axis=0) + [b.start for b in box]
    z, y, x = (
        float(np.interp(index, np.arange(len(axis)), axis)) for index, axis in zip(kji, axes, strict=True)
    )
    voxels = int(lesion.sum())
    return LesionTruth(voxels, voxels * grid.voxel_ml, (x, y, z))


def _series(
    labels: NDArray[np.intp],
    signal: NDArray[np.float64],
    noise_sd: float,
    rng: np.random.Generator,
    grid: Grid,
    study: dict[str, Any],
    series_number: int,
    attributes: dict[str, Any],
) -> tuple[Dataset, ...]:
    magnitude = np.abs(signal[labels] + rng.normal(size=labels.shape) * noise_sd)
    pixels = np.clip(np.rint(magnitude), 0, 4095).astype(np.uint16)
    description, protocol = attributes.pop("SeriesDescription"), attributes.pop("ProtocolName")
    info = SeriesInfo(study, generate_uid(), series_number, description, protocol, attributes)
    return image_datasets(pixels, grid, info, MRImageStorage, "MR")


def _mr_common() -> dict[str, Any]:
    return {
        "BitsAllocated": 16,
        "BitsStored": 12,
        "HighBit": 11,
        "PixelRepresentation": 0,
        "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"],
        "MagneticFieldStrength": 3,
        "ImagedNucleus": "1H",
        "ImagingFrequency": 123.25,
        "AngioFlag": "N",
        "NumberOfAverages": 1,
        "PercentSampling": 100,
        "PercentPhaseFieldOfView": 100,
        "ReceiveCoilName": "Head_32",
        "TransmitCoilName": "Body",
        "PatientWeight": 70,
    }


def _t1_attributes() -> dict[str, Any]:
    return {
        **_mr_common(),
        "SeriesDescription": "T1 MPRAGE",
        "ProtocolName": "t1_mprage_tra",
        "ScanningSequence": ["GR", "IR"],
        "SequenceVariant": ["SK", "SP", "MP"],
        "ScanOptions": "",
        "MRAcquisitionType": "3D",
        "SequenceName": "*tfl3d1",
        "RepetitionTime": 2300,
        "EchoTime": 2.98,
        "InversionTime": 900,
        "FlipAngle": 9,
        "EchoTrainLength": 1,
        "WindowCenter": 450,
        "WindowWidth": 900,
    }


def _flair_attributes() -> dict[str, Any]:
    return {
        **_mr_common(),
        "SeriesDescription": "FLAIR",
        "ProtocolName": "t2_flair_tra",
        "ScanningSequence": ["SE", "IR"],
        "SequenceVariant": ["SK", "SP", "MP"],
        "ScanOptions": "SP",
        "MRAcquisitionType": "2D",
        "SequenceName": "*tir2d1_16",
        "RepetitionTime": 9000,
        "EchoTime": 81,
        "InversionTime": 2500,
        "FlipAngle": 150,
        "EchoTrainLength": 16,
        "WindowCenter": 450,
        "WindowWidth": 900,
    }
