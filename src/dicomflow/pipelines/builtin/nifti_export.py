"""``nifti_export``: every image series of a study to NIfTI, with a JSON sidecar of its key tags."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset

from dicomflow.errors import UnprocessableInput
from dicomflow.pipelines._inputs import Input
from dicomflow.pipelines._outputs import Measurements, Output, ReportFile
from dicomflow.pipelines._report_type import Context, InputContainer, ReportType

NON_IMAGE = frozenset({"SR", "SEG", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "DOC", "REG"})
SIDECAR_KEYWORDS = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "ProtocolName",
    "ImageType",
    "SliceThickness",
    "PixelSpacing",
    "EchoTime",
    "RepetitionTime",
    "InversionTime",
    "FlipAngle",
    "KVP",
    "ConvolutionKernel",
    "AcquisitionDate",
    "AcquisitionTime",
)


def _is_image(value: Any) -> bool:
    return str(value or "") not in NON_IMAGE


class ImageSeries(Input):
    """Every series with image geometry (no SR, SEG, presentation states …)."""

    required_values = {"Modality": _is_image, "ImageOrientationPatient": lambda v: v is not None}
    many = True


class NiftiExport(ReportType):
    """Each image series as ``<number>_<description>.nii.gz`` plus ``.json`` (values as in the DICOM).

    A series that cannot be stacked into one volume is skipped with its reason; when none can be, the job
    fails at once (:class:`dicomflow.errors.UnprocessableInput`) naming each series and why.
    A sheared series (gantry tilt) is written as acquired, not resampled: its sform holds the exact affine
    and its qform is left unset (code 0), since a qform cannot hold a shear; the log names each such
    series, and the measurement ``series_qform_unset`` counts them.
    """

    name = "nifti_export"
    title = "NIfTI export"
    version = "1"
    inputs = {"images": ImageSeries}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        from dicomflow.dicom import load_volume, volume_to_nifti

        outputs: list[Output] = []
        exported: list[str] = []
        skipped: dict[str, str] = {}
        sheared: list[str] = []
        for series in inputs.series["images"] or []:  # type: ignore[union-attr]  # a many-input: always a list
            stem = _stem(series.series_number, series.series_description)
            try:
                volume = load_volume(series.datasets())
            except ValueError as exc:
                context.logger.warning("%s not exported: %s", series.label(), exc)
                skipped[series.label()] = str(exc)
                continue
            if volume.is_sheared:
                context.logger.warning(
                    "%s: gantry tilt %.1f degrees, qform left unset (code 0): a qform cannot hold the shear;"
                    " the sform holds the exact affine, voxels not resampled",
                    series.label(),
                    volume.tilt_degrees,
                )
                sheared.append(series.label())
            nifti = context.workdir / f"{stem}.nii.gz"
            volume_to_nifti(volume).to_filename(nifti)
            sidecar = context.workdir / f"{stem}.json"
            sidecar.write_text(json.dumps(_sidecar(volume.datasets[0]), indent=2))
            outputs += [ReportFile(nifti), ReportFile(sidecar, media_type="application/json")]
            exported.append(series.label())
        if not exported:
            reasons = "; ".join(f"{label}: {reason}" for label, reason in skipped.items())
            raise UnprocessableInput(f"no image series could be exported to NIfTI: {reasons}")
        counts = {"series_exported": len(exported), "series_skipped": len(skipped)}
        outputs.append(Measurements({**counts, "series_qform_unset": len(sheared)}))
        return outputs


def _stem(number: int | None, description: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", description).strip("_") or "series"
    return f"{number if number is not None else 0:03d}_{clean}"[:100]


def _sidecar(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword in SIDECAR_KEYWORDS:
        value = ds.get(keyword)
        if value in (None, ""):
            continue
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            out[keyword] = [_plain(v) for v in value]
        else:
            out[keyword] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, int | float | str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
