"""What a processor returns: report files, numeric results, derived DICOM to file back, exports."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset


@dataclass(frozen=True)
class ReportFile:
    """A file for the user (PDF, HTML, JSON, CSV, NIfTI, PNG …), written by the processor into its workdir."""

    path: Path
    name: str = ""
    media_type: str = ""

    def resolved_name(self) -> str:
        """The name the result is listed and downloaded under."""
        return self.name or self.path.name

    def resolved_media_type(self) -> str:
        """The media type given, else guessed from the name (``.nii.gz`` is NIfTI)."""
        if self.media_type:
            return self.media_type
        name = self.resolved_name()
        if name.endswith((".nii", ".nii.gz")):
            return "application/x-nifti"
        return mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class Measurements:
    """Numeric results; every job writes them (with what it ran on) to ``results.json``."""

    values: Mapping[str, float | int | str | None]


@dataclass(frozen=True)
class DerivedSeries:
    """DICOM datasets (a derived image series, a SEG, an encapsulated PDF …) filed back into the study."""

    datasets: Sequence[Dataset]
    export_to: Sequence[str] = field(default=())  # names of configured nodes to C-STORE them to


@dataclass(frozen=True)
class Export:
    """Datasets to C-STORE to a configured node through the outbox (retried until it answers)."""

    node: str
    datasets: Sequence[Dataset]


Output = ReportFile | Measurements | DerivedSeries | Export
