"""Small report types for tests, loaded as a plugin file (``processing.plugins``).

They do cheap real work on the study (count, copy tags, build a Secondary Capture) so that tests of the
flow, the executor and the outbox run in seconds; the built-ins are tested on the demo phantoms.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from dicomflow.pipelines import (
    Context,
    DerivedSeries,
    Input,
    InputContainer,
    Measurements,
    Output,
    ReportFile,
    ReportType,
    TagGrinder,
)


class AnyImage(Input):
    """Every image series with geometry, by modality CT or MR."""

    required_values = {"Modality": lambda v: str(v) in {"CT", "MR"}}
    required_tags = ("ImagePositionPatient",)
    grinder = TagGrinder(["PatientID", "Modality", "SeriesDescription"])


class Count(ReportType):
    """Counts the instances of the series; writes a CSV."""

    name = "toy_count"
    title = "Instance count"
    inputs = {"image": AnyImage}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        series = inputs.series["image"]
        assert series is not None and not isinstance(series, list)
        csv = context.workdir / "count.csv"
        csv.write_text(f"series,instances\n{series.series_instance_uid},{len(series.paths)}\n")
        return [ReportFile(csv), Measurements({"instances": len(series.paths), **inputs["image"]})]


class Flaky(ReportType):
    """Raises while the file named by option ``fail_marker`` exists."""

    name = "toy_flaky"
    inputs = {"image": AnyImage}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        if Path(str(self.options["fail_marker"])).exists():
            raise RuntimeError("the toy processor was told to fail")
        return [Measurements({"ok": 1})]


class Slow(ReportType):
    """Writes its pid to option ``started_marker``, then sleeps option ``seconds``."""

    name = "toy_slow"
    inputs = {"image": AnyImage}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        marker = Path(str(self.options["started_marker"]))
        with marker.open("a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(float(self.options.get("seconds", 5)))
        return [Measurements({"slept": float(self.options.get("seconds", 5))})]


class Reviewed(ReportType):
    """Needs QualityControl."""

    name = "toy_qc"
    requires_qc = True
    inputs = {"image": AnyImage}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        note = context.workdir / "note.json"
        note.write_text(json.dumps({"patient": context.study.patient_id}))
        return [ReportFile(note)]


class Capture(ReportType):
    """A Secondary Capture in the study, filed back and exported to option ``node`` (default ``archive``)."""

    name = "toy_capture"
    inputs = {"image": AnyImage}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        first = inputs.datasets("image")[0]
        return [
            DerivedSeries([secondary_capture(first)], export_to=[str(self.options.get("node", "archive"))])
        ]


def secondary_capture(source: Dataset) -> Dataset:
    """An 8x8 Secondary Capture in the source's study."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID"):
        if keyword in source:
            setattr(ds, keyword, source[keyword].value)
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 999
    ds.InstanceNumber = 1
    ds.Modality = "OT"
    ds.SeriesDescription = "toy capture"
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(64))
    return ds
