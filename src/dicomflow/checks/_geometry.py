"""Slice geometry of a single-frame series: orientations, positions along the normal, spacing, gaps."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from dicomflow.checks._facts import SeriesFacts, SliceFacts
from dicomflow.checks._findings import Finding, FindingCode, Severity, length, position
from dicomflow.dicom import is_same_orientation

ABSOLUTE_TOLERANCE_MM = 0.01
RELATIVE_TOLERANCE = 0.01
"""A distance matches an expected one within 1 % of it or 0.01 mm, whichever is larger."""
MAX_LISTED = 20
"""At most this many positions are named in one message."""

Vector = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Geometry:
    """What the geometry showed: its findings, and the number of distinct slice positions.

    ``positions`` is ``None`` when the geometry could not be judged (too few slices, multi-frame objects,
    no or mixed orientations); ``has_missing_slices`` tells whether a ``missing-slice`` finding was made.
    """

    findings: tuple[Finding, ...] = ()
    positions: int | None = None

    @property
    def has_missing_slices(self) -> bool:
        return any(finding.code == FindingCode.MISSING_SLICE for finding in self.findings)


def tolerance(distance: float) -> float:
    """How far a distance (mm) may be off and still count as equal."""
    return max(ABSOLUTE_TOLERANCE_MM, RELATIVE_TOLERANCE * abs(distance))


def check_geometry(series: SeriesFacts, *, needs_volume: bool = False) -> Geometry:
    """Judge the slice positions of ``series`` along its slice normal (see the package docstring).

    With ``needs_volume`` (the series is to be stacked into one volume) slices in several orientations are
    an error; otherwise a warning. Orientations are one by ``dicomflow.dicom.is_same_orientation``, the
    test :func:`dicomflow.dicom.load_volume` stacks with.
    """
    slices = [s for s in series.slices if s.image_position is not None and s.image_orientation is not None]
    if len(slices) < 2 or any(s.number_of_frames > 1 for s in series.slices):
        return Geometry()
    orientations = _orientations(slices)
    if len(orientations) > 1:
        return Geometry((_mixed_orientation(series, len(orientations), needs_volume),))
    normal = _normal(orientations[0])
    if normal is None:
        return Geometry()
    along = sorted(_dot(s.image_position, normal) for s in slices if s.image_position is not None)
    distinct, counts = _distinct(along)
    findings = [*_repetition_findings(series, distinct, counts), *_spacing_findings(series, distinct)]
    return Geometry(tuple(findings), len(distinct))


def _finding(
    series: SeriesFacts, code: FindingCode, message: str, severity: Severity = Severity.ERROR
) -> Finding:
    return Finding(code, message, severity, series.series_instance_uid or None)


def _mixed_orientation(series: SeriesFacts, count: int, needs_volume: bool) -> Finding:
    if needs_volume:
        message = f"{series.label()}: slices in {count} orientations cannot be stacked into one volume"
        return _finding(series, FindingCode.MIXED_ORIENTATION, message)
    message = f"{series.label()}: slices in {count} orientations; slice geometry not checked"
    return _finding(series, FindingCode.MIXED_ORIENTATION, message, Severity.WARNING)


def _orientations(slices: Sequence[SliceFacts]) -> list[tuple[float, ...]]:
    """The distinct orientations (each the first of its kind), one within the orientation tolerance."""
    found: list[tuple[float, ...]] = []
    for s in slices:
        cosines = s.image_orientation or ()
        if not any(is_same_orientation(cosines, known) for known in found):
            found.append(cosines)
    return found


def _normal(cosines: tuple[float, ...]) -> Vector | None:
    """The unit slice normal, row x column direction; ``None`` for a degenerate orientation."""
    (rx, ry, rz), (cx, cy, cz) = cosines[:3], cosines[3:]
    normal = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    size = math.sqrt(_dot(normal, normal))
    if not math.isfinite(size) or size < 1e-6:
        return None
    return (normal[0] / size, normal[1] / size, normal[2] / size)


def _dot(a: Sequence[float] | None, b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a or (), b, strict=True))


def _distinct(along: Sequence[float]) -> tuple[list[float], list[int]]:
    """Sorted positions merged where they coincide (within 1 % of the usual spacing or 0.01 mm)."""
    steps = [b - a for a, b in zip(along, along[1:], strict=False) if b - a > ABSOLUTE_TOLERANCE_MM]
    same = tolerance(statistics.median(steps)) if steps else ABSOLUTE_TOLERANCE_MM
    groups: list[list[float]] = []
    for z in along:
        if groups and z - groups[-1][-1] <= same:
            groups[-1].append(z)
        else:
            groups.append([z])
    return [statistics.fmean(group) for group in groups], [len(group) for group in groups]


def _repetition_findings(series: SeriesFacts, distinct: list[float], counts: list[int]) -> list[Finding]:
    """Positions held by a different number of instances than the others (duplicates, or a lost echo)."""
    if len(set(counts)) <= 1:
        return []
    tally = Counter(counts)
    usual = min(tally, key=lambda count: (-tally[count], count))
    odd = [(z, count) for z, count in zip(distinct, counts, strict=True) if count != usual]
    listed = ", ".join(f"z={position(z)} mm ({_instances(count)})" for z, count in odd[:MAX_LISTED])
    listed += f" and {len(odd) - MAX_LISTED} more" if len(odd) > MAX_LISTED else ""
    if usual == 1:
        message = f"{series.label()}: more than one instance at a slice position: {listed}"
        return [_finding(series, FindingCode.DUPLICATE_POSITION, message)]
    message = f"{series.label()}: slice positions repeat unevenly (most {usual} times): {listed}"
    return [_finding(series, FindingCode.UNEVEN_REPETITION, message)]


def _instances(count: int) -> str:
    return f"{count} instance" if count == 1 else f"{count} instances"


def _spacing_findings(series: SeriesFacts, distinct: list[float]) -> list[Finding]:
    """One ``missing-slice`` per gap of k > 1 spacings, one ``uneven-spacing`` for all other odd gaps."""
    if len(distinct) < 2:
        return []
    gaps = [b - a for a, b in zip(distinct, distinct[1:], strict=False)]
    spacing = nominal_spacing(gaps)
    expected = round((distinct[-1] - distinct[0]) / spacing) + 1
    findings: list[Finding] = []
    uneven: list[tuple[float, float]] = []
    for start, gap in zip(distinct, gaps, strict=False):
        k = round(gap / spacing)
        if k < 1 or abs(gap - k * spacing) > tolerance(k * spacing):
            uneven.append((start, gap))
        elif k > 1:
            zs = [start + j * gap / k for j in range(1, k)]
            indices = [round((z - distinct[0]) / spacing) + 1 for z in zs]
            findings.append(_missing_slices(series, indices, zs, expected))
    if uneven:
        findings.append(_uneven_spacing(series, spacing, uneven))
    return findings


def nominal_spacing(gaps: Sequence[float]) -> float:
    """The most common gap (gaps grouped within the tolerance; a tie goes to the smaller), as a median."""
    groups: list[list[float]] = []
    for gap in sorted(gaps):
        if groups and gap - groups[-1][0] <= tolerance(groups[-1][0]):
            groups[-1].append(gap)
        else:
            groups.append([gap])
    most_common: list[float] = max(groups, key=len)
    return statistics.median(most_common)


def _missing_slices(series: SeriesFacts, indices: list[int], zs: list[float], expected: int) -> Finding:
    """``slice 17 of 40 missing at z=−12.5 mm``, or ``slices 17–18 of 40 missing at z=−12.5, −11.5 mm``."""
    where = ", ".join(position(z) for z in zs[:MAX_LISTED]) + " mm"
    where += f" and {len(zs) - MAX_LISTED} more" if len(zs) > MAX_LISTED else ""
    if len(indices) == 1:
        what = f"slice {indices[0]} of {expected}"
    else:
        what = f"slices {indices[0]}\u2013{indices[-1]} of {expected}"
    return _finding(series, FindingCode.MISSING_SLICE, f"{series.label()}: {what} missing at z={where}")


def _uneven_spacing(series: SeriesFacts, spacing: float, uneven: list[tuple[float, float]]) -> Finding:
    """``uneven slice spacing (nominal 5 mm): 7.5 mm after z=10.0 mm``."""
    gaps = ", ".join(f"{length(gap)} mm after z={position(start)} mm" for start, gap in uneven[:MAX_LISTED])
    gaps += f" and {len(uneven) - MAX_LISTED} more" if len(uneven) > MAX_LISTED else ""
    message = f"{series.label()}: uneven slice spacing (nominal {length(spacing)} mm): {gaps}"
    return _finding(series, FindingCode.UNEVEN_SPACING, message)
