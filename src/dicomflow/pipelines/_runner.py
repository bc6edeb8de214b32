"""Run a report type on series, without an index or a network: select, check, grind, process, write.

The job executor calls this inside a worker process; tests and ``dicomflow`` users call it on a folder.
Everything a run produces lands under ``workdir/outputs`` and is listed in ``workdir/manifest.json``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomflow.checks import (
    Finding,
    Severity,
    check_completeness,
    check_validity,
    missing_series,
    series_facts,
)
from dicomflow.pipelines._inputs import Input
from dicomflow.pipelines._outputs import DerivedSeries, Export, Measurements, Output, ReportFile
from dicomflow.pipelines._report_type import Context, InputContainer, ReportType
from dicomflow.pipelines._series import SeriesData

Chosen = SeriesData | list[SeriesData] | None
MANIFEST = "manifest.json"
RESULTS_JSON = "results.json"


@dataclass(frozen=True)
class Selection:
    """The series each input takes, and the findings of the checks on them."""

    chosen: dict[str, Chosen]
    findings: list[Finding]

    @property
    def is_blocked(self) -> bool:
        """True when a finding is an error: the study must not be processed."""
        return any(f.severity is Severity.ERROR for f in self.findings)


@dataclass
class ResultFile:
    """One file of a run's results, relative to the workdir."""

    name: str
    path: str
    media_type: str
    kind: str = "report"  # report | results | derived


@dataclass
class Manifest:
    """What a run produced; the executor files it in the index and the outbox."""

    files: list[ResultFile] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    exports: list[tuple[str, str]] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)

    def save(self, workdir: Path) -> None:
        """Write ``manifest.json`` atomically."""
        tmp = workdir / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(workdir / MANIFEST)

    @classmethod
    def load(cls, workdir: Path) -> Manifest:
        """Read ``manifest.json``."""
        raw = json.loads((workdir / MANIFEST).read_text())
        return cls(
            files=[ResultFile(**f) for f in raw["files"]],
            derived=list(raw["derived"]),
            exports=[(node, path) for node, path in raw["exports"]],
            measurements=dict(raw["measurements"]),
        )


def select(report_type: type[ReportType], series: Sequence[SeriesData]) -> Selection:
    """Pick each input's series and run the completeness and validity checks on them."""
    chosen: dict[str, Chosen] = {}
    findings: list[Finding] = []
    for name, spec in report_type.input_objects().items():
        candidates = _candidates(spec, series)
        if not candidates:
            chosen[name] = [] if spec.many else None
            if not spec.optional:
                findings.append(missing_series(name, spec.describe()))
            continue
        picked = candidates if spec.many else [spec.choose(candidates)]
        chosen[name] = picked if spec.many else picked[0]
        for one in picked:
            findings.extend(_check(spec, one))
    return Selection(chosen, _unique(findings))


def survey(series: Sequence[SeriesData]) -> list[Finding]:
    """Completeness of every series of a study that no report type asked for, as warnings."""
    findings = [f for s in series for f in check_completeness(series_facts(s.headers))]
    return [Finding(f.code, f.message, Severity.WARNING, f.series_instance_uid) for f in _unique(findings)]


def _candidates(spec: Input, series: Sequence[SeriesData]) -> list[SeriesData]:
    result = []
    for one in series:
        keep = [i for i, header in enumerate(one.headers) if spec.accepts(header)]
        if keep:
            result.append(one if len(keep) == len(one.paths) else one.restricted(keep))
    return result


def _check(spec: Input, series: SeriesData) -> list[Finding]:
    facts = series_facts(series.headers)
    findings = check_completeness(facts, needs_volume=spec.needs_volume)
    findings += check_validity(facts, series.headers, spec.required_tags, {})
    findings += [
        Finding("input-invalid", f"{series.label()}: {problem}", Severity.ERROR, series.series_instance_uid)
        for problem in spec.validate(series)
    ]
    return findings


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def run(report_type: type[ReportType], selection: Selection, context: Context) -> Manifest:
    """Grind the chosen series, call the processor and write its outputs and the manifest."""
    specs = report_type.input_objects()
    ground = {name: _grind(specs[name], chosen) for name, chosen in selection.chosen.items()}
    outputs = report_type().process(InputContainer(ground, selection.chosen), context)
    manifest = _write(outputs, context.workdir)
    _write_results_json(report_type, selection, context, manifest)
    manifest.save(context.workdir)
    return manifest


def _grind(spec: Input, chosen: Chosen) -> Any:
    if chosen is None:
        return None
    if isinstance(chosen, list):
        return {one.series_instance_uid: spec.grinder(one) for one in chosen}
    return spec.grinder(chosen)


def _write(outputs: Sequence[Output], workdir: Path) -> Manifest:
    out = workdir / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest()
    for number, output in enumerate(outputs, 1):
        if isinstance(output, ReportFile):
            manifest.files.append(_report_file(output, workdir, out))
        elif isinstance(output, Measurements):
            manifest.measurements.update(output.values)
        elif isinstance(output, DerivedSeries):
            paths = _save_all(output.datasets, out / "derived", f"{number:03d}")
            manifest.derived += paths
            manifest.exports += [(node, p) for node in output.export_to for p in paths]
        elif isinstance(output, Export):
            paths = _save_all(output.datasets, out / "exports", f"{number:03d}")
            manifest.exports += [(output.node, p) for p in paths]
        else:
            raise TypeError(f"a processor returned {type(output).__name__}, which is not an output")
    return manifest


def _report_file(output: ReportFile, workdir: Path, out: Path) -> ResultFile:
    source = output.path if output.path.is_absolute() else workdir / output.path
    if not source.is_file():
        raise FileNotFoundError(f"the processor listed {output.path}, which it did not write")
    target = out / output.resolved_name()
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    return ResultFile(output.resolved_name(), str(target.relative_to(workdir)), output.resolved_media_type())


def _save_all(datasets: Sequence[Dataset], folder: Path, prefix: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets, 1):
        path = folder / f"{prefix}-{index:05d}.dcm"
        _ensure_file_meta(ds)
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path.relative_to(folder.parent.parent)))
    return paths


def _ensure_file_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta


def _write_results_json(
    report_type: type[ReportType], selection: Selection, context: Context, manifest: Manifest
) -> None:
    inputs = {
        name: [
            {"series_instance_uid": s.series_instance_uid, "label": s.label(), "instances": len(s.paths)}
            for s in (chosen if isinstance(chosen, list) else [chosen] if chosen else [])
        ]
        for name, chosen in selection.chosen.items()
    }
    body = {
        "report_type": report_type.name,
        "version": report_type.version,
        "study_instance_uid": context.study.study_instance_uid,
        "inputs": inputs,
        "findings": [f.as_dict() for f in selection.findings],
        "measurements": manifest.measurements,
    }
    path = context.workdir / "outputs" / RESULTS_JSON
    path.write_text(json.dumps(body, indent=2, default=str))
    manifest.files.append(
        ResultFile(RESULTS_JSON, str(path.relative_to(context.workdir)), "application/json", "results")
    )
