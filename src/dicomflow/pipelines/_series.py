"""A series as a report type sees it: its files, headers read once, full datasets on demand."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class SeriesData:
    """The instances of one series that an input accepted, in file order.

    ``headers`` are read without pixel data; :meth:`datasets` reads the full files when a grinder needs them.
    """

    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    paths: tuple[Path, ...]
    headers: tuple[Dataset, ...] = field(repr=False)

    def datasets(self) -> list[Dataset]:
        """Every instance read in full (pixel data included)."""
        return [dcmread(path) for path in self.paths]

    def label(self) -> str:
        """``series 3 (FLAIR)``, as findings and logs name it."""
        number = "?" if self.series_number is None else str(self.series_number)
        return (
            f"series {number} ({self.series_description})" if self.series_description else f"series {number}"
        )

    def restricted(self, keep: Sequence[int]) -> SeriesData:
        """The same series with only the instances at the positions ``keep``."""
        return SeriesData(
            self.series_instance_uid,
            self.series_number,
            self.series_description,
            self.modality,
            tuple(self.paths[i] for i in keep),
            tuple(self.headers[i] for i in keep),
        )


def read_series(paths: Iterable[Path]) -> list[SeriesData]:
    """Group files into series by SeriesInstanceUID (headers only), ordered by SeriesNumber."""
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for path in paths:
        header = dcmread(path, stop_before_pixels=True)
        groups.setdefault(str(header.get("SeriesInstanceUID", "")), []).append((path, header))
    series = [_series(uid, members) for uid, members in groups.items()]
    return sorted(
        series, key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid)
    )


def _series(uid: str, members: list[tuple[Path, Dataset]]) -> SeriesData:
    first = members[0][1]
    number = first.get("SeriesNumber")
    return SeriesData(
        series_instance_uid=uid,
        series_number=None if number in (None, "") else int(number),
        series_description=str(first.get("SeriesDescription", "") or ""),
        modality=str(first.get("Modality", "") or ""),
        paths=tuple(path for path, _ in members),
        headers=tuple(header for _, header in members),
    )
