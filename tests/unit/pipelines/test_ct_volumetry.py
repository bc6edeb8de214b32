"""CT volumetry on the phantom: body, bone and air volumes within 2 % of the truth."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicomflow.demo import Phantom, make_ct_phantom
from dicomflow.dicom import load_volume
from dicomflow.pipelines.builtin._ct import segment_ct
from factories import make_tilted_ct


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_ct_phantom()


def shuffled(datasets: tuple[Dataset, ...]) -> list[Dataset]:
    out = list(datasets)
    random.Random(3).shuffle(out)
    return out


def without_instance_numbers(datasets: tuple[Dataset, ...]) -> list[Dataset]:
    out = shuffled(datasets)
    for ds in out:
        del ds.InstanceNumber
    return out


@pytest.mark.parametrize("arrange", [list, shuffled, without_instance_numbers])
def test_volumes_match_the_phantom_within_2_percent(phantom: Phantom, arrange: object) -> None:
    assert callable(arrange)
    result = segment_ct(load_volume(arrange(phantom.datasets)))
    assert set(result.volumes_ml) == {"body", "bone", "air"}
    for name, expected in phantom.expected_volumes_ml.items():
        assert result.volumes_ml[name] == pytest.approx(expected, rel=0.02), name


def test_masks_match_the_truth_and_nest_in_the_body(phantom: Phantom) -> None:
    result = segment_ct(load_volume(phantom.datasets))
    for name, truth in phantom.truth.items():
        mismatched = np.count_nonzero(result.masks[name] != truth)
        assert mismatched <= 0.01 * np.count_nonzero(truth), name
    assert not np.any(result.bone & ~result.body)
    assert not np.any(result.air & ~result.body)
    assert result.body.dtype == np.bool_


def test_other_geometry_and_seed_still_within_2_percent() -> None:
    phantom = make_ct_phantom(slices=24, rows=96, cols=80, pixel_spacing=2.0, slice_thickness=5.0, seed=9)
    result = segment_ct(load_volume(phantom.datasets))
    expected = phantom.expected_volumes_ml
    assert result.volumes_ml == pytest.approx(expected, rel=0.02)
    assert expected["body"] > expected["air"] > expected["bone"] > 0


def test_only_air_gives_empty_masks(phantom: Phantom) -> None:
    volume = load_volume(phantom.datasets[:3])
    air = type(volume)(np.full_like(volume.array, -1000.0), volume.affine, volume.spacing, volume.datasets)
    result = segment_ct(air)
    assert result.volumes_ml == {"body": 0.0, "bone": 0.0, "air": 0.0}


@pytest.mark.parametrize("tilt", [15.0, 30.0])
def test_a_gantry_tilted_sphere_has_its_analytic_volume(tilt: float) -> None:
    """The table steps along z, the slices are tilted: the body is the sphere, 4/3 pi r^3, within 1 %."""
    result = segment_ct(load_volume(make_tilted_ct(tilt, radius=20.0)))
    assert result.volumes_ml["body"] == pytest.approx(4 / 3 * math.pi * 20.0**3 / 1000, rel=0.01)
