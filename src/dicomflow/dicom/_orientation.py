"""When two ImageOrientationPatient values are one orientation: the single tolerance of the checks and of
stacking a volume, so that what the checks let through always stacks, and what cannot stack is a finding."""

from __future__ import annotations

from collections.abc import Sequence

ORIENTATION_TOLERANCE = 1e-3
"""Largest difference of one direction cosine between slices of one orientation (about 0.06 degrees):
above the rounding of stored cosines, below any real change of plane."""


def is_same_orientation(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two ImageOrientationPatient values (6 direction cosines each) are one orientation.

    Parameters
    ----------
    a, b
        Row then column direction cosines.

    Returns
    -------
    bool
        True when no cosine differs by more than :data:`ORIENTATION_TOLERANCE`.
    """
    return len(a) == len(b) == 6 and all(
        abs(float(x) - float(y)) <= ORIENTATION_TOLERANCE for x, y in zip(a, b, strict=True)
    )
