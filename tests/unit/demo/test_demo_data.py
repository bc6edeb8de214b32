"""Demo data: the phantoms carry real CT / MR attributes, and write_demo_data writes valid Part 10 files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import typer
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage
from typer.testing import CliRunner

from dicomflow.cli._demo import demo_data
from dicomflow.demo import make_ct_phantom, make_ms_study, write_demo_data

Dciodvfy = Callable[[Path], tuple[list[str], list[str]]]


def test_ct_phantom_is_int16_with_intercept_and_contiguous_slices() -> None:
    phantom = make_ct_phantom(slices=8, rows=64, cols=64)
    first = phantom.datasets[0]
    assert first.SOPClassUID == CTImageStorage
    assert (first.RescaleIntercept, first.RescaleSlope, first.PixelRepresentation) == (-1024, 1, 1)
    assert first.pixel_array.dtype == np.int16
    z = [float(ds.ImagePositionPatient[2]) for ds in phantom.datasets]
    assert np.allclose(np.diff(z), 2.5)
    assert len({ds.SOPInstanceUID for ds in phantom.datasets}) == 8
    assert len({ds.SeriesInstanceUID for ds in phantom.datasets}) == 1
    voxel_ml = 1.5 * 1.5 * 2.5 / 1000
    for name, mask in phantom.truth.items():
        assert phantom.expected_volumes_ml[name] == pytest.approx(mask.sum() * voxel_ml)
    assert phantom.expected_volumes_ml["body"] > phantom.expected_volumes_ml["air"] > 0


def test_same_seed_same_pixels_other_seed_other_noise() -> None:
    one, again, other = (make_ct_phantom(slices=2, rows=32, cols=32, seed=s) for s in (1, 1, 2))
    assert one.datasets[0].PixelData == again.datasets[0].PixelData != other.datasets[0].PixelData


def test_ms_study_is_one_study_with_t1_and_flair() -> None:
    study = make_ms_study(slices=20, lesions=2, seed=5)
    t1, flair = study.t1[0], study.flair[0]
    assert t1.SOPClassUID == flair.SOPClassUID == MRImageStorage
    assert t1.StudyInstanceUID == flair.StudyInstanceUID
    assert t1.FrameOfReferenceUID == flair.FrameOfReferenceUID
    assert t1.SeriesInstanceUID != flair.SeriesInstanceUID
    assert (t1.SeriesDescription, flair.SeriesDescription) == ("T1 MPRAGE", "FLAIR")
    assert "IR" in flair.ScanningSequence and float(flair.InversionTime) > 2000
    assert float(t1.MagneticFieldStrength) == 3 and float(flair.EchoTime) > float(t1.EchoTime)
    assert study.lesion_count == len(study.lesions) == 2
    assert study.lesion_volume_ml == pytest.approx(sum(lesion.volume_ml for lesion in study.lesions))
    assert not np.any(study.truth["lesion"] & ~study.truth["brain"])
    # lesions are bright on FLAIR only
    k = int(np.argmax(study.truth["lesion"].sum(axis=(1, 2))))
    lesion = study.truth["lesion"][k]
    flair_slice = study.flair[k].pixel_array
    t1_slice = study.t1[k].pixel_array
    assert flair_slice[lesion].mean() > 1.8 * np.median(flair_slice[study.truth["brain"][k]])
    assert abs(float(t1_slice[lesion].mean()) - 700) < 30


def test_too_many_lesions_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot place 400 separate lesions"):
        make_ms_study(slices=16, rows=48, cols=48, lesions=400)


def test_write_demo_data_writes_valid_part10_studies(tmp_path: Path, dciodvfy: Dciodvfy) -> None:
    paths = write_demo_data(tmp_path, kind="all")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DEMO001_CT", "DEMO001_MR"]
    ct = sorted((tmp_path / "DEMO001_CT").iterdir())
    mr = sorted((tmp_path / "DEMO001_MR").iterdir())
    assert len(ct) == 60 and len(mr) == 80 and sorted(paths) == sorted(ct + mr)
    studies: dict[str, set[tuple[str, str]]] = {}
    for path in paths:
        ds = dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.PatientID == "DEMO001"
        studies.setdefault(path.parent.name, set()).add((ds.StudyInstanceUID, ds.SeriesInstanceUID))
    assert len({study for study, _ in studies["DEMO001_MR"]}) == 1
    assert len({series for _, series in studies["DEMO001_MR"]}) == 2
    for path in (ct[0], mr[0], mr[-1]):
        errors, warnings = dciodvfy(path)
        assert not errors and not warnings, "\n".join(errors + warnings)


def test_several_patients_and_one_kind(tmp_path: Path) -> None:
    paths = write_demo_data(tmp_path, kind="ct", patients=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DEMO001_CT", "DEMO002_CT"]
    assert len(paths) == 120
    assert dcmread(paths[-1]).PatientID == "DEMO002"


@pytest.mark.parametrize(("kind", "patients", "message"), [("pet", 1, "pet"), ("ct", 0, "at least 1")])
def test_bad_arguments_are_refused(tmp_path: Path, kind: str, patients: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_demo_data(tmp_path, kind=kind, patients=patients)  # type: ignore[arg-type]  # the point: a kind that does not exist


def test_demo_data_command(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(demo_data)
    result = CliRunner().invoke(app, [str(tmp_path / "out"), "--kind", "mr"])
    assert result.exit_code == 0, result.output
    assert "wrote 80 files in 1 studies" in result.output
    assert (tmp_path / "out" / "DEMO001_MR").is_dir()
