"""MS lesions: a brain mask from T1, FLAIR-hyperintense lesions inside it, counted and measured.

Method (no registration; T1 and FLAIR must share the frame of reference):

1. Brain mask on T1: Otsu's threshold over the whole volume separates bright tissue (grey and white
   matter, scalp fat) from dark (background, skull, CSF). A one-voxel opening cuts thin bridges, the
   largest component is the brain, one dilation restores the eroded rim (within the bright voxels), and
   holes are filled in 3-D (ventricles). This is demo-grade skull stripping (it relies on a dark CSF and
   skull ring around the brain), not a replacement for BET or SynthStrip on real data. If the grids
   differ, the mask is resampled onto the FLAIR grid through both affines (nearest neighbour).
2. Lesions on FLAIR: voxels inside the brain above ``median + k * 1.4826 * MAD`` of the brain's FLAIR
   values (a robust mean + k SD: CSF in ventricles and the lesions themselves barely move it), with
   ``k = LESION_Z`` by default.
3. 26-connected components; those smaller than ``min_lesion_mm3`` are dropped as noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from dicomflow.dicom import Volume
from dicomflow.errors import UnprocessableInput
from dicomflow.pipelines.builtin._ct import largest_component

LESION_Z = 5.0
"""Robust z-score above which a brain FLAIR voxel is a lesion candidate."""
MIN_LESION_MM3 = 30.0
"""Smallest lesion kept, in mm³ (a 3.9 mm sphere; MS criteria ask for 3 mm or more; smaller is noise)."""
_OTSU_BINS = 256


@dataclass(frozen=True)
class Lesion:
    """One lesion (connected component) found on FLAIR.

    Attributes
    ----------
    label
        1, 2, … in order of decreasing volume.
    voxels
        Number of voxels.
    volume_ml
        Volume in mL.
    centroid_mm
        Centre of mass in patient LPS mm.
    """

    label: int
    voxels: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class MsSegmentation:
    """Brain and lesion masks on the FLAIR grid, and the lesion measures.

    Attributes
    ----------
    masks
        ``brain`` and ``lesion`` as bool arrays on the FLAIR grid (z, y, x).
    lesions
        Each lesion, largest first.
    brain_volume_ml
        Volume of the brain mask in mL.
    threshold
        The FLAIR intensity above which brain voxels were lesion candidates.
    """

    masks: dict[str, NDArray[np.bool_]] = field(repr=False)
    lesions: tuple[Lesion, ...]
    brain_volume_ml: float
    threshold: float

    @property
    def lesion_count(self) -> int:
        """Number of lesions."""
        return len(self.lesions)

    @property
    def lesion_volume_ml(self) -> float:
        """Total lesion volume in mL."""
        return sum(lesion.volume_ml for lesion in self.lesions)


def segment_ms_lesions(
    t1: Volume, flair: Volume, *, k: float = LESION_Z, min_lesion_mm3: float = MIN_LESION_MM3
) -> MsSegmentation:
    """Find FLAIR-hyperintense lesions inside a T1 brain mask.

    See the module docstring for the method.

    Parameters
    ----------
    t1
        The T1-weighted volume.
    flair
        The FLAIR volume, in the same frame of reference (its grid may differ).
    k
        Robust z-score threshold of lesion voxels.
    min_lesion_mm3
        Smallest lesion kept, in mm³.

    Returns
    -------
    MsSegmentation
        Brain and lesion masks on the FLAIR grid, and each lesion's volume and centroid.

    Raises
    ------
    dicomflow.errors.UnprocessableInput
        (a ``ValueError``) If no brain is found on the T1 volume.
    """
    brain_t1 = brain_mask(t1)
    brain = brain_t1 if _same_grid(t1, flair) else resample_mask(brain_t1, t1, flair)
    if not brain.any():
        raise UnprocessableInput("no brain found on T1 (or none inside the FLAIR field of view)")
    values = flair.array[brain]
    median = float(np.median(values))
    sd = 1.4826 * float(np.median(np.abs(values - median)))
    threshold = median + k * sd
    candidates = brain & (flair.array > threshold)
    labels, count = ndimage.label(candidates, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    min_voxels = min_lesion_mm3 / (flair.voxel_volume_ml * 1000.0)
    kept = [n for n in range(1, count + 1) if sizes[n] >= min_voxels]
    kept.sort(key=lambda n: -sizes[n])
    lesion_mask = np.isin(labels, kept)
    centres = ndimage.center_of_mass(candidates, labels, kept) if kept else []
    lesions = tuple(
        Lesion(
            label=rank,
            voxels=int(sizes[n]),
            volume_ml=float(sizes[n]) * flair.voxel_volume_ml,
            centroid_mm=_to_patient(flair, centre),
        )
        for rank, (n, centre) in enumerate(zip(kept, centres, strict=True), start=1)
    )
    return MsSegmentation(
        masks={"brain": brain, "lesion": lesion_mask},
        lesions=lesions,
        brain_volume_ml=float(np.count_nonzero(brain)) * flair.voxel_volume_ml,
        threshold=threshold,
    )


def brain_mask(t1: Volume) -> NDArray[np.bool_]:
    """The brain (with ventricles) on a T1 volume: Otsu threshold, opening, largest component, fill.

    Parameters
    ----------
    t1
        The T1-weighted volume.

    Returns
    -------
    numpy.ndarray
        Bool mask on the T1 grid (all false if nothing stands out of the background).
    """
    bright = t1.array > _otsu(t1.array.ravel())
    core = largest_component(ndimage.binary_opening(bright))
    brain = ndimage.binary_dilation(core) & bright
    filled: NDArray[np.bool_] = ndimage.binary_fill_holes(brain)
    return filled


def resample_mask(mask: NDArray[np.bool_], source: Volume, target: Volume) -> NDArray[np.bool_]:
    """``mask`` on ``source``'s grid resampled onto ``target``'s grid (nearest neighbour, via affines).

    Parameters
    ----------
    mask
        Bool mask (z, y, x) on the grid of ``source``.
    source, target
        Volumes in the same frame of reference.

    Returns
    -------
    numpy.ndarray
        Bool mask on ``target``'s grid; false outside ``source``'s field of view.
    """
    # Both affines map (i, j, k); the arrays are (k, j, i): swap axes around the voxel-to-voxel transform.
    flip = np.eye(4)[[2, 1, 0, 3]]
    target_to_source = flip @ np.linalg.inv(source.affine) @ target.affine @ flip
    resampled = ndimage.affine_transform(
        mask.astype(np.uint8),
        target_to_source[:3, :3],
        offset=target_to_source[:3, 3],
        output_shape=target.shape,
        order=0,
        mode="constant",
        cval=0,
    )
    result: NDArray[np.bool_] = resampled.astype(bool)
    return result


def _same_grid(a: Volume, b: Volume) -> bool:
    return a.shape == b.shape and bool(np.allclose(a.affine, b.affine, atol=1e-3))


def _to_patient(volume: Volume, centre_kji: tuple[float, ...]) -> tuple[float, float, float]:
    x, y, z = volume.index_to_patient(np.array(centre_kji[::-1], dtype=np.float64))
    return float(x), float(y), float(z)


def _otsu(values: NDArray[np.float32]) -> float:
    """Otsu's threshold of ``values`` (maximum between-class variance over a 256-bin histogram).

    A constant image has no threshold: its value is returned, so that nothing lies above it.
    """
    if values.size == 0 or float(values.min()) == float(values.max()):
        return float(values.max()) if values.size else 0.0
    counts, edges = np.histogram(values, bins=_OTSU_BINS)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.nanargmax(between[:-1])) + 1])
