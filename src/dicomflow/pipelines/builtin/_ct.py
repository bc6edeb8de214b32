"""CT volumetry: body, bone and inside-body air masks from Hounsfield-unit thresholds, and their volumes.

Thresholds (HU):

* ``BODY_HU = -500``: halfway between air (-1000) and water (0); fat (-100) and soft tissue stay above
  it even with partial volume, so the body outline is stable. The body is the largest 3-D connected
  component above it (the patient, not the table or blankets, which are smaller or separate), with
  holes filled slice by slice, so lungs, airways and bowel gas count as body;
* ``BONE_HU = 250``: above contrast-enhanced soft tissue and blood (up to ~200 HU) and below trabecular
  (~300+) and cortical bone (700-1900); only voxels inside the body;
* ``AIR_HU = -400``: inside-body air (lungs at about -850, bowel gas at -1000). Lung parenchyma rarely
  exceeds -500 outside vessels, and -400 counts partial-volume voxels at the lung edge as air while
  leaving fat (-100) out. Only voxels inside the filled body, so the air around the patient is not air.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from dicomflow.dicom import Volume

BODY_HU = -500.0
"""Body: largest connected component above this, holes filled per axial slice."""
BONE_HU = 250.0
"""Bone: body voxels at or above this."""
AIR_HU = -400.0
"""Inside-body air: filled-body voxels below this."""


@dataclass(frozen=True, eq=False)
class CtSegmentation:
    """Masks and volumes of a CT volume.

    Attributes
    ----------
    masks
        ``body``, ``bone`` and ``air`` as bool arrays on the volume's grid (z, y, x).
    volumes_ml
        The volume of each mask in mL.
    """

    masks: dict[str, NDArray[np.bool_]] = field(repr=False)
    volumes_ml: dict[str, float]

    @property
    def body(self) -> NDArray[np.bool_]:
        """The body mask (air spaces inside included)."""
        return self.masks["body"]

    @property
    def bone(self) -> NDArray[np.bool_]:
        """The bone mask."""
        return self.masks["bone"]

    @property
    def air(self) -> NDArray[np.bool_]:
        """The inside-body air mask."""
        return self.masks["air"]


def segment_ct(volume: Volume) -> CtSegmentation:
    """Segment body, bone and inside-body air of a CT volume by HU thresholds.

    See the module docstring for the thresholds and why.

    Parameters
    ----------
    volume
        A CT volume in Hounsfield units (:func:`dicomflow.dicom.load_volume` applies the rescale).

    Returns
    -------
    CtSegmentation
        The masks and their volumes in mL. With nothing above ``BODY_HU`` all masks are empty.
    """
    hu = volume.array
    body = largest_component(hu > BODY_HU)
    body = _fill_slices(body)
    bone = body & (hu >= BONE_HU)
    air = body & (hu < AIR_HU)
    masks = {"body": body, "bone": bone, "air": air}
    volumes = {name: float(np.count_nonzero(mask)) * volume.voxel_volume_ml for name, mask in masks.items()}
    return CtSegmentation(masks=masks, volumes_ml=volumes)


def largest_component(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The largest 6-connected component of ``mask`` (all false if ``mask`` is empty; shared with MS)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest: NDArray[np.bool_] = labels == int(np.argmax(sizes))
    return largest


def _fill_slices(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``mask`` with holes filled in each axial slice (lungs open to the airway in 3-D are closed in 2-D)."""
    filled = np.empty_like(mask)
    for k in range(mask.shape[0]):
        filled[k] = ndimage.binary_fill_holes(mask[k])
    return filled
