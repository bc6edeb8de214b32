"""The report type: a named, versioned pipeline of inputs and a processor, registered as a plugin."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydicom.dataset import Dataset

from dicomflow.pipelines._inputs import Input
from dicomflow.pipelines._outputs import Output
from dicomflow.pipelines._series import SeriesData


@dataclass(frozen=True)
class StudyInfo:
    """The study a job runs on, for reports and derived objects."""

    study_instance_uid: str
    project: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""

    def as_dict(self) -> dict[str, str]:
        """Fields under their DICOM names, for report tables (empty ones left out)."""
        names = {
            "patient_name": "Patient's Name",
            "patient_id": "Patient ID",
            "study_date": "Study Date",
            "study_description": "Study Description",
            "accession_number": "Accession Number",
            "study_instance_uid": "Study Instance UID",
            "project": "Project",
        }
        return {label: str(getattr(self, field)) for field, label in names.items() if getattr(self, field)}


@dataclass(frozen=True)
class Context:
    """What a processor may use besides its inputs: a private working folder, the study, its options."""

    workdir: Path
    study: StudyInfo
    options: Mapping[str, Any] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("dicomflow.job"))


class InputContainer(Mapping[str, Any]):
    """Input name → ground data, as DicomNode's; ``series[name]`` is what it was ground from."""

    def __init__(self, ground: Mapping[str, Any], series: Mapping[str, SeriesData | list[SeriesData] | None]):
        self._ground = dict(ground)
        self.series = dict(series)

    def __getitem__(self, name: str) -> Any:
        return self._ground[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ground)

    def __len__(self) -> int:
        return len(self._ground)

    def datasets(self, name: str) -> list[Dataset]:
        """Full datasets of the (first) series of an input."""
        chosen = self.series[name]
        if isinstance(chosen, list):
            return [ds for s in chosen for ds in s.datasets()]
        return [] if chosen is None else chosen.datasets()


class ReportType:
    """Base class of every report type (built-ins included), found through ``dicomflow.report_types``.

    Class attributes
    ----------------
    name
        What uploads and project rules request (``ct_volumetry``); aliases come from the settings.
    version
        Part of the job identity: a new version re-runs on studies that ran an older one.
    inputs
        Input name → :class:`Input` subclass (or instance).
    requires_qc
        Results wait in QualityControl until a reviewer approves them.
    timeout, max_attempts
        Per-job limits; None takes the executor's settings.
    options
        ``processing.options[name]`` from the settings, set when the report type is loaded.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    title: ClassVar[str] = ""
    inputs: ClassVar[Mapping[str, type[Input] | Input]] = {}
    requires_qc: ClassVar[bool] = False
    timeout: ClassVar[float | None] = None
    max_attempts: ClassVar[int | None] = None
    options: ClassVar[Mapping[str, Any]] = {}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        """Do the work; return report files, measurements, derived series and exports."""
        raise NotImplementedError(f"report type {self.name!r} does not implement process()")

    @classmethod
    def input_objects(cls) -> dict[str, Input]:
        """The inputs as instances."""
        return {name: spec() if isinstance(spec, type) else spec for name, spec in cls.inputs.items()}
