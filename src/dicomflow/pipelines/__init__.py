"""Report types: inputs that pick series, grinders, a processor, and outputs; found as plugins.

A report type is a class registered in the entry-point group ``dicomflow.report_types`` (the built-ins
are registered the same way)::

    class Volumetry(ReportType):
        name = "ct_volumetry"
        inputs = {"ct": CtInput}

        def process(self, inputs, context):
            volume = inputs["ct"]
            ...
            return [ReportFile(context.workdir / "report.pdf"), Measurements({"body_ml": 1234.5})]
"""

from dicomflow.pipelines._grinders import (
    DatasetsGrinder,
    Grinder,
    ManyGrinder,
    NiftiGrinder,
    PathsGrinder,
    TagGrinder,
    VolumeGrinder,
)
from dicomflow.pipelines._inputs import Input, ValueRule, keyword, matches
from dicomflow.pipelines._outputs import DerivedSeries, Export, Measurements, Output, ReportFile
from dicomflow.pipelines._registry import ENTRY_POINT_GROUP, ReportTypes, load_report_types, report_types_from
from dicomflow.pipelines._report_type import Context, InputContainer, ReportType, StudyInfo
from dicomflow.pipelines._runner import Manifest, ResultFile, Selection, run, select, survey
from dicomflow.pipelines._series import SeriesData, read_series

__all__ = [
    "ENTRY_POINT_GROUP",
    "Context",
    "DatasetsGrinder",
    "DerivedSeries",
    "Export",
    "Grinder",
    "Input",
    "InputContainer",
    "Manifest",
    "ManyGrinder",
    "Measurements",
    "NiftiGrinder",
    "Output",
    "PathsGrinder",
    "ReportFile",
    "ReportType",
    "ReportTypes",
    "ResultFile",
    "Selection",
    "SeriesData",
    "StudyInfo",
    "TagGrinder",
    "ValueRule",
    "VolumeGrinder",
    "keyword",
    "load_report_types",
    "matches",
    "read_series",
    "report_types_from",
    "run",
    "select",
    "survey",
]
