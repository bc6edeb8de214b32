"""``nifti_export`` on the demo MR study: one NIfTI and sidecar per image series, geometry kept."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel
import numpy as np
import pytest

from dicomflow.demo import make_ms_study
from dicomflow.errors import UnprocessableInput
from dicomflow.pipelines import Context, StudyInfo, read_series, run, select
from dicomflow.pipelines.builtin import NiftiExport
from factories import make_series, make_tilted_ct, write_files


def test_every_image_series_becomes_a_nifti_with_a_sidecar(tmp_path: Path) -> None:
    study = make_ms_study(slices=20, rows=48, cols=48, lesions=1)
    files = write_files([*study.t1, *study.flair], tmp_path / "in")
    work = tmp_path / "work"
    work.mkdir()

    manifest = run(NiftiExport, select(NiftiExport, read_series(files)), Context(work, StudyInfo("1")))

    names = sorted(f.name for f in manifest.files)
    niftis = [n for n in names if n.endswith(".nii.gz")]
    assert len(niftis) == 2 and len([n for n in names if n.endswith(".json") and n != "results.json"]) == 2
    image = nibabel.Nifti1Image.from_filename(work / "outputs" / niftis[0])
    assert image.shape == (48, 48, 20)
    codes = nibabel.aff2axcodes(image.affine)  # type: ignore[no-untyped-call]  # untyped in nibabel
    assert codes == ("L", "P", "S")
    sidecar = json.loads((work / "outputs" / niftis[0].replace(".nii.gz", ".json")).read_text())
    assert sidecar["Modality"] == "MR" and "EchoTime" in sidecar
    assert np.isfinite(np.asarray(image.dataobj)).all()
    assert manifest.measurements == {"series_exported": 2, "series_skipped": 0, "series_qform_unset": 0}


def test_a_tilted_series_is_exported_with_its_qform_unset_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = write_files(make_tilted_ct(15.0, size=16, slices=6), tmp_path / "in")
    work = tmp_path / "work"
    work.mkdir()

    with caplog.at_level(logging.INFO, logger="dicomflow.job"):
        manifest = run(NiftiExport, select(NiftiExport, read_series(files)), Context(work, StudyInfo("1")))

    (nifti,) = [f.name for f in manifest.files if f.name.endswith(".nii.gz")]
    image = nibabel.Nifti1Image.from_filename(work / "outputs" / nifti)
    assert (int(image.header["qform_code"]), int(image.header["sform_code"])) == (0, 1)
    assert manifest.measurements["series_qform_unset"] == 1
    assert "series 1 (tilted 15 deg): gantry tilt 15.0 degrees, qform left unset (code 0)" in caplog.text


def test_exporting_nothing_is_an_error_that_names_each_series_and_why(tmp_path: Path) -> None:
    datasets = make_series(3)
    datasets[1].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    files = write_files(datasets, tmp_path / "in")
    work = tmp_path / "work"
    work.mkdir()

    selection = select(NiftiExport, read_series(files))
    assert [(f.code, f.severity) for f in selection.findings] == [("mixed-orientation", "warning")]
    with pytest.raises(UnprocessableInput, match=r"no image series could be exported to NIfTI: series 1 \("):
        run(NiftiExport, selection, Context(work, StudyInfo("1")))
