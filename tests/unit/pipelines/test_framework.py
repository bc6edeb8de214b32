"""The report-type framework without an index: registry, input selection with its checks, and a run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomflow.errors import ConfigError, UnknownReportType
from dicomflow.pipelines import (
    Context,
    Input,
    Manifest,
    ReportType,
    StudyInfo,
    VolumeGrinder,
    load_report_types,
    matches,
    read_series,
    report_types_from,
    run,
    select,
)
from factories import make_study, write_files

PLUGIN = str(Path(__file__).parents[2] / "plugins" / "toy_report_types.py")


def test_builtins_come_from_entry_points_and_aliases_resolve() -> None:
    registry = load_report_types()
    assert {"ct_volumetry", "ms_lesions", "nifti_export"} <= set(registry.names())
    assert load_report_types(aliases={"icobrain_ms": "ms_lesions"}).get("icobrain_ms").name == "ms_lesions"
    with pytest.raises(UnknownReportType, match="unknown report type 'nope' \\(known: .*ct_volumetry"):
        registry.get("nope")


def test_plugin_files_and_options() -> None:
    registry = load_report_types([PLUGIN], options={"toy_flaky": {"fail_marker": "/x"}})
    assert {"toy_count", "toy_flaky", "toy_slow", "toy_qc", "toy_capture"} <= set(registry.names())
    assert registry.get("toy_flaky").options == {"fail_marker": "/x"}
    assert [t.name for t in report_types_from(f"{PLUGIN}:Count")] == ["toy_count"]
    with pytest.raises(ConfigError, match="is not a ReportType"):
        report_types_from(f"{PLUGIN}:secondary_capture")
    with pytest.raises(ConfigError, match="cannot import plugin module"):
        report_types_from("no.such.module:Thing")


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("CT", "CT", True),
        ("CT", "CTAC", False),  # exact, unlike DicomNode's unanchored wildcard match
        (re.compile("^CT"), "CTAC", True),
        ("PRIMARY", ["ORIGINAL", "PRIMARY"], True),
        (re.compile(r"ORIGINAL\\PRIMARY"), ["ORIGINAL", "PRIMARY"], True),
        ("CT", None, False),
        (lambda v: v is None, None, True),
    ],
)
def test_value_rules(rule: object, value: object, expected: bool) -> None:
    assert matches(rule, value) is expected  # type: ignore[arg-type]  # rules of every kind, typed object in the table


class Ct(Input):
    required_values = {"Modality": "CT"}
    grinder = VolumeGrinder()


class Pet(Input):
    required_values = {"Modality": "PT"}
    optional = True


class Mean(ReportType):
    name = "mean"
    inputs = {"ct": Ct, "pet": Pet}

    def process(self, inputs, context):  # type: ignore[no-untyped-def]  # written as a plugin author would
        from dicomflow.pipelines import Measurements

        assert inputs["pet"] is None
        return [
            Measurements({"mean": float(inputs["ct"].array.mean()), "slices": inputs["ct"].array.shape[0]})
        ]


def _files(tmp_path: Path, datasets: list[Dataset]) -> list[Path]:
    return write_files(datasets, tmp_path / "in")


def test_select_picks_the_latest_repeat_and_checks_it(tmp_path: Path) -> None:
    first, repeat = make_study(series=2, instances=4)[:4], make_study(series=1, instances=4)
    for ds in repeat:
        ds.StudyInstanceUID = first[0].StudyInstanceUID
        ds.SeriesNumber = 7
    series = read_series(_files(tmp_path, [*first, *repeat]))

    selection = select(Mean, series)

    chosen = selection.chosen["ct"]
    assert not isinstance(chosen, list) and chosen is not None and chosen.series_number == 7
    assert selection.findings == [] and not selection.is_blocked


def test_run_writes_outputs_results_json_and_manifest(tmp_path: Path) -> None:
    series = read_series(_files(tmp_path, make_study(series=1, instances=3)))
    workdir = tmp_path / "work"
    workdir.mkdir()

    manifest = run(Mean, select(Mean, series), Context(workdir, StudyInfo("1.2.3")))

    assert Manifest.load(workdir) == manifest
    body = json.loads((workdir / "outputs" / "results.json").read_text())
    assert body["measurements"]["slices"] == 3
    assert body["report_type"] == "mean" and body["study_instance_uid"] == "1.2.3"
    assert [f.name for f in manifest.files] == ["results.json"]


def test_a_processor_listing_a_file_it_did_not_write_is_an_error(tmp_path: Path) -> None:
    from dicomflow.pipelines import ReportFile

    class Liar(Mean):
        name = "liar"

        def process(self, inputs, context):  # type: ignore[no-untyped-def]  # written as a plugin author would
            return [ReportFile(context.workdir / "missing.pdf")]

    series = read_series(_files(tmp_path, make_study(series=1, instances=2)))
    with pytest.raises(FileNotFoundError, match="missing.pdf"):
        run(Liar, select(Liar, series), Context(tmp_path, StudyInfo("1.2.3")))
