"""MS lesions on the synthetic study: the lesion count is the truth's, the volume close to it."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicomflow.demo import MsStudy, make_ms_study
from dicomflow.dicom import Volume, load_volume
from dicomflow.pipelines import Context, StudyInfo, read_series, run, select
from dicomflow.pipelines.builtin import MsLesions
from dicomflow.pipelines.builtin._ms import brain_mask, resample_mask, segment_ms_lesions
from factories import write_files


@pytest.fixture(scope="module")
def study() -> MsStudy:
    return make_ms_study(lesions=5, seed=0)


@pytest.fixture(scope="module")
def volumes(study: MsStudy) -> tuple[Volume, Volume]:
    return load_volume(study.t1), load_volume(study.flair)


@pytest.mark.parametrize(("lesions", "seed"), [(1, 11), (3, 1), (8, 2)])
def test_lesion_count_is_the_truth_and_volume_within_5_percent(lesions: int, seed: int) -> None:
    study = make_ms_study(lesions=lesions, seed=seed)
    result = segment_ms_lesions(load_volume(study.t1), load_volume(study.flair))
    assert result.lesion_count == study.lesion_count == lesions
    assert result.lesion_volume_ml == pytest.approx(study.lesion_volume_ml, rel=0.05)
    assert result.brain_volume_ml == pytest.approx(study.brain_volume_ml, rel=0.03)


def test_each_lesion_is_found_where_it_was_painted(study: MsStudy, volumes: tuple[Volume, Volume]) -> None:
    result = segment_ms_lesions(*volumes)
    assert [lesion.label for lesion in result.lesions] == list(range(1, 6))
    assert [lesion.volume_ml for lesion in result.lesions] == sorted(
        (lesion.volume_ml for lesion in result.lesions), reverse=True
    )
    for truth in study.lesions:
        nearest = min(
            result.lesions,
            key=lambda found: np.linalg.norm(np.subtract(found.centroid_mm, truth.centroid_mm)),
        )
        assert np.linalg.norm(np.subtract(nearest.centroid_mm, truth.centroid_mm)) < 2.0
        assert nearest.volume_ml == pytest.approx(truth.volume_ml, rel=0.1)
    assert not np.any(result.masks["lesion"] & ~result.masks["brain"])


def test_brain_mask_is_the_brain_with_its_ventricles(study: MsStudy, volumes: tuple[Volume, Volume]) -> None:
    mask = brain_mask(volumes[0])
    assert np.count_nonzero(mask != study.truth["brain"]) <= 0.02 * np.count_nonzero(study.truth["brain"])


def crop(volume: Volume, rows: int, cols: int) -> Volume:
    """The volume without its first ``rows`` rows and ``cols`` columns (the affine moved to match)."""
    affine = volume.affine.copy()
    affine[:3, 3] = volume.index_to_patient(np.array([cols, rows, 0.0]))
    return dataclasses.replace(volume, array=volume.array[:, rows:, cols:], affine=affine)


def flip_slices(volume: Volume) -> Volume:
    """The same voxels with the slice axis reversed (the affine's third column negated)."""
    affine = volume.affine.copy()
    affine[:3, 3] = volume.index_to_patient(np.array([0.0, 0.0, volume.shape[0] - 1]))
    affine[:3, 2] *= -1
    return dataclasses.replace(volume, array=volume.array[::-1], affine=affine)


@pytest.mark.parametrize("regrid", [lambda v: crop(v, 5, 3), flip_slices])
def test_a_t1_on_another_grid_is_resampled_onto_flair(
    study: MsStudy, volumes: tuple[Volume, Volume], regrid: object
) -> None:
    assert callable(regrid)
    t1, flair = volumes
    same_grid = segment_ms_lesions(t1, flair)
    other_grid = segment_ms_lesions(regrid(t1), flair)
    np.testing.assert_array_equal(other_grid.masks["brain"], same_grid.masks["brain"])
    assert other_grid.lesions == same_grid.lesions


def test_resample_mask_moves_voxels_by_the_affines(volumes: tuple[Volume, Volume]) -> None:
    t1, flair = volumes
    mask = np.zeros(t1.shape, dtype=bool)
    mask[10, 20, 30] = True
    cropped = crop(t1, 5, 3)
    on_cropped = resample_mask(mask, t1, cropped)
    assert on_cropped.shape == cropped.shape
    assert list(zip(*np.nonzero(on_cropped), strict=True)) == [(10, 15, 27)]
    back = resample_mask(on_cropped, cropped, flair)
    np.testing.assert_array_equal(back, mask)


def test_no_brain_is_an_error(volumes: tuple[Volume, Volume]) -> None:
    t1, flair = volumes
    empty = dataclasses.replace(t1, array=np.zeros_like(t1.array))
    with pytest.raises(ValueError, match="no brain"):
        segment_ms_lesions(empty, flair)


def tilted(datasets: Sequence[Dataset], degrees: float) -> list[Dataset]:
    """The same slices at the same positions, each tilted about x: the grid is sheared by ``degrees``."""
    angle = math.radians(degrees)
    out = [copy.deepcopy(ds) for ds in datasets]
    for ds in out:
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, math.cos(angle), math.sin(angle)]
    return out


def test_volumes_of_a_sheared_grid_shrink_by_the_cosine_of_the_tilt(study: MsStudy) -> None:
    """Same voxels on a grid sheared by 15 degrees: every volume is cos(15 degrees) of the axial one."""
    axial = segment_ms_lesions(load_volume(study.t1), load_volume(study.flair))
    sheared = segment_ms_lesions(load_volume(tilted(study.t1, 15.0)), load_volume(tilted(study.flair, 15.0)))
    shrink = math.cos(math.radians(15.0))
    assert sheared.lesion_count == axial.lesion_count
    assert sheared.brain_volume_ml == pytest.approx(axial.brain_volume_ml * shrink, rel=1e-6)
    assert sheared.lesion_volume_ml == pytest.approx(axial.lesion_volume_ml * shrink, rel=1e-6)


def test_the_report_type_measures_a_sheared_study_and_logs_the_shear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small = make_ms_study(slices=20, rows=48, cols=48, lesions=1)
    files = write_files([*tilted(small.t1, 15.0), *tilted(small.flair, 15.0)], tmp_path / "in")
    work = tmp_path / "work"
    work.mkdir()
    with caplog.at_level(logging.INFO, logger="dicomflow.job"):
        manifest = run(MsLesions, select(MsLesions, read_series(files)), Context(work, StudyInfo("1")))
    assert "FLAIR grid sheared by 15.0 degrees" in caplog.text
    axial = segment_ms_lesions(load_volume(small.t1), load_volume(small.flair))
    shrink = math.cos(math.radians(15.0))
    assert manifest.measurements["brain_volume_ml"] == pytest.approx(axial.brain_volume_ml * shrink, abs=0.05)
