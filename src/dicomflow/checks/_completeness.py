"""Completeness of one series: expected counts, instance numbers, and (via ``_geometry``) slice positions."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from dicomflow.checks._facts import SeriesFacts
from dicomflow.checks._findings import Finding, FindingCode, Severity, number_runs
from dicomflow.checks._geometry import Geometry, check_geometry


def check_completeness(series: SeriesFacts, *, needs_volume: bool = False) -> list[Finding]:
    """Check that no instance of ``series`` is missing (the rules are in the package docstring).

    Parameters
    ----------
    series
        The series as received, instances in any order.
    needs_volume
        The series is to be stacked into one volume (its input's grinder stacks one): slices in several
        orientations are then an error, not a warning.

    Returns
    -------
    list of Finding
        ``count-mismatch``, ``instance-number-gap``, then the geometry's findings (``duplicate-position``,
        ``uneven-repetition``, ``missing-slice``, ``uneven-spacing``, ``mixed-orientation``); empty when
        nothing is wrong or nothing can be judged.
    """
    geometry = check_geometry(series, needs_volume=needs_volume)
    found = [
        _images_in_acquisition(series),
        _number_of_slices(series, geometry),
        None if geometry.has_missing_slices else _instance_number_gap(series, geometry),
    ]
    return [*(finding for finding in found if finding is not None), *geometry.findings]


def _finding(
    series: SeriesFacts, code: FindingCode, message: str, severity: Severity = Severity.ERROR
) -> Finding:
    return Finding(code, f"{series.label()}: {message}", severity, series.series_instance_uid or None)


def _images_in_acquisition(series: SeriesFacts) -> Finding | None:
    """ImagesInAcquisition against the images (frames) received, per acquisition when there are several."""
    expected = series.images_in_acquisition
    if expected is None:
        return None
    images: Counter[int | None] = Counter()
    for s in series.slices:
        images[s.acquisition_number] += s.number_of_frames
    if len(images) == 1:
        received = images.total()
        if received == expected:
            return None
        return _finding(
            series,
            FindingCode.COUNT_MISMATCH,
            f"ImagesInAcquisition is {expected} but {received} images received",
        )
    wrong = [(a, n) for a, n in images.items() if n != expected]
    wrong.sort(key=lambda item: (item[0] is None, item[0] or 0))
    if not wrong:
        return None
    have = ", ".join(f"acquisition {'(none)' if a is None else a} has {n}" for a, n in wrong)
    return _finding(series, FindingCode.COUNT_MISMATCH, f"ImagesInAcquisition is {expected} but {have}")


def _number_of_slices(series: SeriesFacts, geometry: Geometry) -> Finding | None:
    """NumberOfSlices against the distinct slice positions, when the geometry could be judged."""
    expected, received = series.number_of_slices, geometry.positions
    if expected is None or received is None or received == expected:
        return None
    message = f"NumberOfSlices is {expected} but {received} slice positions received"
    return _finding(series, FindingCode.COUNT_MISMATCH, message)


def _instance_number_gap(series: SeriesFacts, geometry: Geometry) -> Finding | None:
    """Interior gaps in InstanceNumber, judged only when every instance has a number and none repeats.

    A warning when the geometry was judged and found no slice missing (DICOM does not require consecutive
    numbers); an error when there is no geometry to tell that the series is complete.
    """
    numbers = [s.instance_number for s in series.slices]
    known = sorted(n for n in numbers if n is not None)
    if len(known) < 2 or len(known) != len(numbers) or len(set(known)) != len(known):
        return None
    step = _stride(known)
    missing = [(a + step, b - step) for a, b in pairwise(known) if b - a > step]
    if not missing:
        return None
    have, first = [], known[0]
    for a, b in pairwise(known):
        if b - a > step:
            have.append((first, a))
            first = b
    have.append((first, known[-1]))
    steps = f" in steps of {step}" if step > 1 else ""
    message = f"instance numbers {number_runs(missing)} missing (have {number_runs(have)}{steps})"
    if geometry.positions is None:
        return _finding(series, FindingCode.INSTANCE_NUMBER_GAP, message)
    message += "; slice positions complete"
    return _finding(series, FindingCode.INSTANCE_NUMBER_GAP, message, Severity.WARNING)


def _stride(known: list[int]) -> int:
    """The step instance numbers advance by: the most common difference if it repeats and divides all."""
    differences = Counter(b - a for a, b in pairwise(known))
    step = min(differences, key=lambda d: (-differences[d], d))
    if step > 1 and differences[step] >= 2 and all(d % step == 0 for d in differences):
        return step
    return 1
