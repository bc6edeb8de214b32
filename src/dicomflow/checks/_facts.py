"""What the completeness checks need of a series, read once from its instances' headers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomflow.dicom import InstanceHeader, header_from_dataset


@dataclass(frozen=True, slots=True)
class SliceFacts:
    """One instance of a series: its identity, number and geometry.

    ``image_position`` is ImagePositionPatient (3 values), ``image_orientation`` ImageOrientationPatient
    (6 values); either is ``None`` when absent or malformed. ``acquisition_number`` lets the expected count
    of ImagesInAcquisition be compared per acquisition (a Siemens fMRI series has one per volume).
    """

    sop_instance_uid: str
    instance_number: int | None
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, ...] | None
    number_of_frames: int = 1
    acquisition_number: int | None = None


@dataclass(frozen=True, slots=True)
class SeriesFacts:
    """One series: its identity, its instances and the counts its headers announce."""

    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    slices: tuple[SliceFacts, ...]
    images_in_acquisition: int | None = None
    number_of_slices: int | None = None

    def label(self) -> str:
        """How messages name the series: ``series 3 (FLAIR)``.

        Returns
        -------
        str
            ``series <SeriesNumber> (<SeriesDescription>)``; the Series Instance UID stands in for a
            missing number, and the parentheses are left out without a description.
        """
        name = str(self.series_number) if self.series_number is not None else self.series_instance_uid
        label = f"series {name or '?'}"
        description = self.series_description.strip()
        return f"{label} ({description})" if description else label


def series_facts(datasets: Sequence[Dataset]) -> SeriesFacts:
    """Read the facts of one series from its instances' datasets (pixel data is never touched).

    Parameters
    ----------
    datasets
        The instances of one series, in any order (headers suffice: ``stop_before_pixels=True``).

    Returns
    -------
    SeriesFacts
        Series attributes from the first instance; each count from the first instance that has it.

    Raises
    ------
    ValueError
        If ``datasets`` is empty or holds more than one Series Instance UID.
    dicomflow.errors.InvalidInstance
        If an instance lacks a valid SOP Instance, SOP Class, Study or Series Instance UID (ingest
        rejects those, so stored instances always have them).
    """
    if not datasets:
        raise ValueError("a series needs at least one instance")
    headers = [header_from_dataset(ds, ("ImagesInAcquisition",)) for ds in datasets]
    uids = sorted({header.series_instance_uid for header in headers})
    if len(uids) > 1:
        raise ValueError(f"instances of {len(uids)} series given, expected one: {', '.join(uids)}")
    first = headers[0]
    return SeriesFacts(
        series_instance_uid=first.series_instance_uid,
        series_number=first.series_number,
        series_description=first.series_description,
        modality=first.modality,
        slices=tuple(_slice_facts(header) for header in headers),
        images_in_acquisition=_first_count(h.extra.get("ImagesInAcquisition") for h in headers),
        # US: read from the dataset, as InstanceHeader.extra holds text VRs only
        number_of_slices=_first_count(ds.get("NumberOfSlices") for ds in datasets),
    )


def _slice_facts(header: InstanceHeader) -> SliceFacts:
    position = header.image_position_patient
    orientation = header.image_orientation_patient
    return SliceFacts(
        sop_instance_uid=header.sop_instance_uid,
        instance_number=header.instance_number,
        image_position=(position[0], position[1], position[2]) if len(position) == 3 else None,
        image_orientation=orientation if len(orientation) == 6 else None,
        number_of_frames=max(header.number_of_frames or 1, 1),
        acquisition_number=header.acquisition_number,
    )


def _first_count(values: Iterable[object]) -> int | None:
    """The first positive whole number among ``values`` (text or number; others are skipped)."""
    for value in values:
        try:
            count = int(float(str(value).split("\\")[0]))
        except (ValueError, OverflowError):
            continue
        if count > 0:
            return count
    return None
