"""load_volume stacks a series by position along the normal; volume_to_nifti gives the RAS affine."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from dicomflow.demo import make_ct_phantom
from dicomflow.dicom import Volume, load_volume, volume_to_nifti
from factories import make_instance, make_tilted_ct, write_files

SAGITTAL = [0, 1, 0, 0, 0, -1]  # rows run posterior, columns down: normal = row x column = -x (right)


def series(
    positions: Sequence[Sequence[float]], orientation: Sequence[float] | None = None, **attrs: Any
) -> list[Dataset]:
    """One CT series with the given ImagePositionPatient per slice (pixels seeded by instance number)."""
    shared = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "ImageOrientationPatient": orientation or [1, 0, 0, 0, 1, 0],
    }
    return [
        make_instance("CT", InstanceNumber=n + 1, ImagePositionPatient=pos, **{**shared, **attrs})
        for n, pos in enumerate(positions)
    ]


@pytest.fixture(scope="module")
def phantom_volume() -> Volume:
    return load_volume(make_ct_phantom(slices=12, rows=48, cols=40).datasets)


def test_slices_ascend_along_the_normal_whatever_the_instance_numbers(phantom_volume: Volume) -> None:
    z = [float(ds.ImagePositionPatient[2]) for ds in phantom_volume.datasets]
    assert z == sorted(z)
    assert [int(ds.InstanceNumber) for ds in phantom_volume.datasets] == list(range(12, 0, -1))


def test_shuffled_slices_without_instance_numbers_give_the_same_volume(phantom_volume: Volume) -> None:
    shuffled = list(phantom_volume.datasets)
    random.Random(7).shuffle(shuffled)
    for ds in shuffled:
        del ds.InstanceNumber
    volume = load_volume(shuffled)
    np.testing.assert_array_equal(volume.array, phantom_volume.array)
    np.testing.assert_array_equal(volume.affine, phantom_volume.affine)


def test_values_are_hounsfield_units_in_float32(phantom_volume: Volume) -> None:
    assert phantom_volume.array.dtype == np.float32
    assert phantom_volume.array.shape == (12, 48, 40)
    assert phantom_volume.array.min() < -950  # air around the body, stored 24 + intercept -1024
    assert abs(float(np.median(phantom_volume.array[:, 24, 20])) - 40) < 15  # soft tissue in the middle


def test_affine_maps_column_row_slice_indices_to_patient_lps(phantom_volume: Volume) -> None:
    ds = phantom_volume.datasets[5]
    corner = np.array([float(v) for v in ds.ImagePositionPatient])
    assert phantom_volume.spacing == (2.5, 1.5, 1.5)
    np.testing.assert_allclose(phantom_volume.index_to_patient(np.array([0.0, 0.0, 5.0])), corner)
    # column index i runs along the row direction (+x), row index j along the column direction (+y)
    np.testing.assert_allclose(
        phantom_volume.index_to_patient(np.array([3.0, 2.0, 5.0])), corner + [4.5, 3.0, 0.0]
    )


def test_oblique_sagittal_series_sorts_along_its_normal() -> None:
    datasets = series([[x, -4.0, 10.0] for x in (0.0, 2.0, 1.0)], SAGITTAL, PixelSpacing=[0.5, 0.75])
    volume = load_volume(datasets)
    # normal = (0,1,0) x (0,0,-1) = (-1,0,0): ascending along it is descending x
    assert [float(ds.ImagePositionPatient[0]) for ds in volume.datasets] == [2.0, 1.0, 0.0]
    np.testing.assert_allclose(volume.affine[:3, 0], [0, 0.75, 0])  # columns: 0.75 mm along +y
    np.testing.assert_allclose(volume.affine[:3, 1], [0, 0, -0.5])  # rows: 0.5 mm along -z
    np.testing.assert_allclose(volume.affine[:3, 2], [-1, 0, 0])
    assert volume.spacing == (1.0, 0.5, 0.75)
    assert np.linalg.det(volume.affine) > 0


def test_single_slice_takes_its_thickness_as_spacing() -> None:
    volume = load_volume(series([[0.0, 0.0, 3.0]], SliceThickness=2.0))
    assert volume.shape == (1, 32, 32)
    np.testing.assert_allclose(volume.affine[:3, 2], [0, 0, 2.0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ImageOrientationPatient": [0, 1, 0, 0, 0, -1]}, "mixed ImageOrientationPatient"),
        ({"PixelSpacing": [0.6, 0.6]}, "mixed PixelSpacing"),
        ({"ImagePositionPatient": [-4, -4, 0.0]}, "same position"),
        ({"ImagePositionPatient": [-4, -4, 7.0]}, "irregular slice spacing"),
        ({"ImagePositionPatient": None}, "no valid ImagePositionPatient"),
        ({"NumberOfFrames": 2}, "multi-frame"),
    ],
)
def test_inconsistent_geometry_is_refused(change: dict[str, Any], message: str) -> None:
    datasets = series([[-4, -4, z] for z in (0.0, 1.0, 2.0, 3.0)])
    for keyword, value in change.items():
        if value is None:
            del datasets[2][keyword]
        else:
            setattr(datasets[2], keyword, value)
    with pytest.raises(ValueError, match=message):
        load_volume(datasets)


def test_mixed_image_size_is_refused() -> None:
    datasets = series([[-4, -4, z] for z in (0.0, 1.0)])
    small = make_instance("CT", Rows=16, Columns=16, ImagePositionPatient=[-4, -4, 2.0])
    small.PixelData = np.zeros((16, 16), dtype=np.int16).tobytes()
    with pytest.raises(ValueError, match="mixed image size"):
        load_volume([*datasets, small])


def test_no_datasets_is_refused() -> None:
    with pytest.raises(ValueError, match="no data sets"):
        load_volume([])


@pytest.mark.parametrize("transfer_syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_pixels_decode_like_native(transfer_syntax: str, tmp_path: Path) -> None:
    datasets = series([[-4, -4, z] for z in (0.0, 1.0, 2.0)], RescaleIntercept=-1024)
    native = load_volume(datasets)
    files = write_files(datasets, tmp_path, transfer_syntax)
    compressed = load_volume([dcmread(path) for path in files])
    np.testing.assert_array_equal(compressed.array, native.array)
    np.testing.assert_array_equal(native.array[0], datasets[0].pixel_array - 1024.0)  # intercept applied


def test_nifti_affine_is_ras_and_maps_a_known_voxel(phantom_volume: Volume) -> None:
    image = volume_to_nifti(phantom_volume)
    data = np.asarray(image.dataobj)
    assert data.shape == (40, 48, 12)
    assert data[3, 2, 5] == phantom_volume.array[5, 2, 3]
    lps = phantom_volume.index_to_patient(np.array([3.0, 2.0, 5.0]))
    ras = image.affine @ [3, 2, 5, 1]
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]])
    assert nibabel.aff2axcodes(image.affine) == ("L", "P", "S")  # type: ignore[no-untyped-call]  # untyped
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    qform = image.get_qform()  # type: ignore[no-untyped-call]  # nibabel is untyped
    np.testing.assert_allclose(qform, image.affine, atol=1e-4)


@pytest.mark.parametrize("tilt", [0.0, 15.0, 30.0])
def test_a_tilted_volume_counts_the_voxel_as_the_slice_step_along_the_normal(tilt: float) -> None:
    volume = load_volume(make_tilted_ct(tilt, step=1.25, pixel_spacing=0.8))
    along_normal = 1.25 * math.cos(math.radians(tilt))
    np.testing.assert_allclose(volume.affine[:3, 2], [0, 0, 1.25], atol=1e-6)  # positions step along z
    assert volume.spacing == pytest.approx((along_normal, 0.8, 0.8))
    assert volume.voxel_volume_ml == pytest.approx(0.8 * 0.8 * along_normal / 1000)
    assert volume.voxel_volume_ml == pytest.approx(abs(np.linalg.det(volume.affine)) / 1000)
    assert volume.tilt_degrees == pytest.approx(tilt, abs=1e-3)


@pytest.mark.parametrize("tilt", [0.0, 15.0, 25.0])
def test_a_sphere_in_a_tilted_ct_has_its_analytic_volume(tilt: float) -> None:
    volume = load_volume(make_tilted_ct(tilt, radius=20.0))
    counted = np.count_nonzero(volume.array > -500) * volume.voxel_volume_ml
    assert counted == pytest.approx(4 / 3 * math.pi * 20.0**3 / 1000, rel=0.01)


def test_nifti_of_a_sheared_volume_leaves_the_qform_unset_and_keeps_the_shear_in_the_sform(
    tmp_path: Path,
) -> None:
    volume = load_volume(make_tilted_ct(15.0, step=1.25, pixel_spacing=0.8, size=16, slices=6))
    volume_to_nifti(volume).to_filename(tmp_path / "tilted.nii.gz")
    image = nibabel.Nifti1Image.from_filename(tmp_path / "tilted.nii.gz")
    assert int(image.header["qform_code"]) == 0  # a quaternion cannot hold the shear
    assert int(image.header["sform_code"]) == 1
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine
    sform = image.header.get_sform()  # type: ignore[no-untyped-call]  # nibabel is untyped
    np.testing.assert_allclose(sform, expected, atol=1e-4)
    np.testing.assert_allclose(image.affine, expected, atol=1e-4)
    zooms = image.header.get_zooms()  # type: ignore[no-untyped-call]  # nibabel is untyped
    assert zooms == pytest.approx((0.8, 0.8, 1.25 * math.cos(math.radians(15.0))), abs=1e-5)
