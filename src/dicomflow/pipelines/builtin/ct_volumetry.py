"""``ct_volumetry``: HU thresholds → body, bone and air masks; volumes in mL; a DICOM SEG, an overlay PNG
and a PDF report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dicomflow.pipelines._grinders import VolumeGrinder
from dicomflow.pipelines._inputs import Input
from dicomflow.pipelines._outputs import DerivedSeries, Measurements, Output, ReportFile
from dicomflow.pipelines._report_type import Context, InputContainer, ReportType

SEG_SERIES_NUMBER = 9101


def _not_localizer(value: Any) -> bool:
    return "LOCALIZER" not in str(value or "").upper()


class CtSeries(Input):
    """An axial CT volume (localizers and scouts left out)."""

    required_values = {"Modality": "CT", "ImageType": _not_localizer}
    required_tags = (
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "RescaleIntercept",
        "RescaleSlope",
    )
    grinder = VolumeGrinder()


class CtVolumetry(ReportType):
    """Body, bone and air volumes of a CT series."""

    name = "ct_volumetry"
    title = "CT volumetry"
    version = "1"
    inputs = {"ct": CtSeries}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        from dicomflow.pipelines.builtin._artefacts import build_seg, render_overlay_png, write_pdf_report
        from dicomflow.pipelines.builtin._ct import segment_ct

        volume = inputs["ct"]
        if volume.is_sheared:
            context.logger.info(
                "gantry tilt %.1f degrees: sheared voxels of %.4g mL (slice step %.3g mm along the normal)",
                volume.tilt_degrees,
                volume.voxel_volume_ml,
                volume.spacing[0],
            )
        result = segment_ct(volume)
        context.logger.info("volumes (mL): %s", result.volumes_ml)
        png = context.workdir / "overlay.png"
        render_overlay_png(volume, result.masks, png, window=(40.0, 400.0))
        pdf = context.workdir / "ct_volumetry.pdf"
        measurements = [(f"{name} volume", f"{ml:.1f} mL") for name, ml in result.volumes_ml.items()]
        write_pdf_report(
            pdf, title=self.title, study=context.study.as_dict(), measurements=measurements, images=[png]
        )
        seg = build_seg(
            volume,
            result.masks,
            series_number=SEG_SERIES_NUMBER,
            series_description="CT volumetry segmentation",
            algorithm_name=self.name,
            algorithm_version=self.version,
        )
        values = {f"{name}_volume_ml": round(ml, 2) for name, ml in result.volumes_ml.items()}
        return [ReportFile(pdf), ReportFile(png), Measurements(values), DerivedSeries([seg])]
