"""Build synthetic single-frame image data sets with real geometry (shared by the CT and MR phantoms)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomflow import __version__
from dicomflow.dicom import IMPLEMENTATION_CLASS_UID

STUDY_DATE = "20250101"
"""Date of every demo study (fixed, so that generated data are reproducible apart from UIDs)."""


@dataclass(frozen=True)
class Grid:
    """An axial grid centred on the patient origin: ``slices`` x ``rows`` x ``cols`` voxels."""

    slices: int
    rows: int
    cols: int
    pixel_spacing: float
    slice_thickness: float

    def centres(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Patient LPS coordinates (mm) of voxel centres as broadcastable (z, y, x) arrays."""
        z = (np.arange(self.slices, dtype=np.float64) - (self.slices - 1) / 2) * self.slice_thickness
        y = (np.arange(self.rows, dtype=np.float64) - (self.rows - 1) / 2) * self.pixel_spacing
        x = (np.arange(self.cols, dtype=np.float64) - (self.cols - 1) / 2) * self.pixel_spacing
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def position(self, k: int) -> list[float]:
        """ImagePositionPatient of slice ``k`` (slices ascend in z, i.e. towards the head)."""
        z, y, x = (axis.ravel() for axis in self.centres())
        return [round(float(x[0]), 4), round(float(y[0]), 4), round(float(z[k]), 4)]

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL."""
        return self.pixel_spacing**2 * self.slice_thickness / 1000.0


@dataclass(frozen=True)
class SeriesInfo:
    """Identity and description of one series of a demo study."""

    study: Mapping[str, Any]
    series_instance_uid: str
    series_number: int
    series_description: str
    protocol_name: str
    attributes: Mapping[str, Any]


def patient_attributes(patient_id: str, modality: str) -> dict[str, Any]:
    """Patient and study attributes of a new demo study of ``patient_id``."""
    return {
        "PatientName": f"Demo^{patient_id}",
        "PatientID": patient_id,
        "PatientBirthDate": "19700101",
        "PatientSex": "O",
        "StudyInstanceUID": generate_uid(),
        "StudyDate": STUDY_DATE,
        "StudyTime": "093000",
        "StudyID": "1",
        "AccessionNumber": f"{patient_id}{modality}",
        "ReferringPhysicianName": "",
        "StudyDescription": f"dicomflow demo {modality} phantom",
        "FrameOfReferenceUID": generate_uid(),
        "PositionReferenceIndicator": "",
    }


def image_datasets(
    pixels: NDArray[np.integer[Any]], grid: Grid, series: SeriesInfo, sop_class_uid: str, modality: str
) -> tuple[Dataset, ...]:
    """One data set per slice of ``pixels`` (z, y, x), InstanceNumber 1 at the top (highest z)."""
    out = []
    for k in range(grid.slices):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = sop_class_uid
        ds.SOPInstanceUID = generate_uid()
        for keyword, value in series.study.items():
            setattr(ds, keyword, value)
        ds.SeriesInstanceUID = series.series_instance_uid
        ds.SeriesNumber = series.series_number
        ds.SeriesDescription = series.series_description
        ds.ProtocolName = series.protocol_name
        ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = STUDY_DATE
        ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "093500"
        ds.Modality = modality
        ds.Manufacturer = "dicomflow"
        ds.ManufacturerModelName = "demo phantom"
        ds.SoftwareVersions = __version__
        ds.BodyPartExamined = "HEAD" if modality == "MR" else "CHEST"
        ds.PatientPosition = "HFS"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = grid.slices - k
        ds.ImagePositionPatient = grid.position(k)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = grid.position(k)[2]
        ds.PixelSpacing = [grid.pixel_spacing, grid.pixel_spacing]
        ds.SliceThickness = grid.slice_thickness
        ds.Rows, ds.Columns = grid.rows, grid.cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        for keyword, value in series.attributes.items():
            setattr(ds, keyword, value)
        ds.PixelData = np.ascontiguousarray(pixels[k]).tobytes()
        ds.file_meta = _file_meta(ds)
        out.append(ds)
    return tuple(out)


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "DICOMFLOW_01"
    return meta


def ellipsoid(
    centres: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    centre: tuple[float, float, float],
    semi_axes: tuple[float, float, float],
) -> NDArray[np.float64]:
    """Normalised radius of every voxel centre for an axis-aligned ellipsoid (< 1 inside).

    ``centre`` and ``semi_axes`` are (x, y, z) in mm; a semi-axis of ``inf`` makes a cylinder.
    """
    z, y, x = centres
    radius: NDArray[np.float64] = np.sqrt(
        ((x - centre[0]) / semi_axes[0]) ** 2
        + ((y - centre[1]) / semi_axes[1]) ** 2
        + ((z - centre[2]) / semi_axes[2]) ** 2
    )
    return radius
