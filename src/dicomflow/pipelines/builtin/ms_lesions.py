"""``ms_lesions``: a T1 and a FLAIR series of one MR study; FLAIR hyperintensities inside a brain mask
(threshold + connected components, no registration); lesion count and volume in a PDF and a SEG.
Results wait in QualityControl. The settings alias ``icobrain_ms`` points here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from pydicom.dataset import Dataset

from dicomflow.pipelines._grinders import VolumeGrinder
from dicomflow.pipelines._inputs import Input
from dicomflow.pipelines._outputs import DerivedSeries, Measurements, Output, ReportFile
from dicomflow.pipelines._report_type import Context, InputContainer, ReportType

SEG_SERIES_NUMBER = 9201
DEFAULT_T1 = r"t1|mprage|spgr|tfl"
DEFAULT_FLAIR = r"flair"


class _MrByName(Input):
    """An MR series whose SeriesDescription or ProtocolName matches ``pattern`` (case-insensitive)."""

    pattern: ClassVar[str] = ""
    label: ClassVar[str] = ""
    required_tags = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
    grinder = VolumeGrinder()

    def __init__(self, pattern: str | None = None) -> None:
        self.regex = re.compile(pattern or self.pattern, re.IGNORECASE)

    def accepts(self, header: Dataset) -> bool:
        if str(header.get("Modality", "")) != "MR":
            return False
        names = f"{header.get('SeriesDescription', '')}\n{header.get('ProtocolName', '')}"
        return self.regex.search(names) is not None and not self._excluded(names)

    def _excluded(self, names: str) -> bool:
        return False

    def describe(self) -> str:
        return f"an MR series with SeriesDescription or ProtocolName ~ /{self.regex.pattern}/i"


class T1Series(_MrByName):
    """The T1-weighted series (not a FLAIR, which some vendors call T1 FLAIR)."""

    pattern = DEFAULT_T1

    def _excluded(self, names: str) -> bool:
        return "flair" in names.lower()


class FlairSeries(_MrByName):
    """The FLAIR series."""

    pattern = DEFAULT_FLAIR


class MsLesions(ReportType):
    """Lesion count and volume from FLAIR inside a T1 brain mask; needs review before results are final.

    Options (``processing.options.ms_lesions``): ``t1_pattern``, ``flair_pattern`` (regexes).
    """

    name = "ms_lesions"
    title = "MS lesion report"
    version = "1"
    requires_qc = True
    inputs = {"t1": T1Series, "flair": FlairSeries}

    @classmethod
    def input_objects(cls) -> dict[str, Input]:
        options: dict[str, Any] = dict(cls.options)
        return {"t1": T1Series(options.get("t1_pattern")), "flair": FlairSeries(options.get("flair_pattern"))}

    def process(self, inputs: InputContainer, context: Context) -> Sequence[Output]:
        from dicomflow.pipelines.builtin._artefacts import build_seg, render_overlay_png, write_pdf_report
        from dicomflow.pipelines.builtin._ms import segment_ms_lesions

        t1, flair = inputs["t1"], inputs["flair"]
        if flair.is_sheared:
            context.logger.info(
                "FLAIR grid sheared by %.1f degrees: voxels of %.4g mL (slice step %.3g mm along the normal)",
                flair.tilt_degrees,
                flair.voxel_volume_ml,
                flair.spacing[0],
            )
        result = segment_ms_lesions(t1, flair)
        masks = result.masks
        png = context.workdir / "lesions.png"
        render_overlay_png(flair, {"lesion": result.masks["lesion"]}, png, window=_window(flair))
        values = {
            "lesion_count": result.lesion_count,
            "lesion_volume_ml": round(result.lesion_volume_ml, 3),
            "brain_volume_ml": round(result.brain_volume_ml, 1),
        }
        pdf = context.workdir / "ms_lesions.pdf"
        write_pdf_report(
            pdf,
            title=self.title,
            study=context.study.as_dict(),
            measurements=[
                ("lesions", str(result.lesion_count)),
                ("lesion volume", f"{result.lesion_volume_ml:.2f} mL"),
            ],
            images=[png],
            remarks=["Research use only: thresholding of FLAIR hyperintensities, not a registered model."],
        )
        seg = build_seg(
            flair,
            masks,
            series_number=SEG_SERIES_NUMBER,
            series_description="MS lesion segmentation",
            algorithm_name=self.name,
            algorithm_version=self.version,
        )
        return [ReportFile(pdf), ReportFile(png), Measurements(values), DerivedSeries([seg])]


def _window(volume: Any) -> tuple[float, float]:
    import numpy as np

    tissue = volume.array[volume.array > np.percentile(volume.array, 50)]  # leave the background out
    low, high = (float(v) for v in np.percentile(tissue if tissue.size else volume.array, [1, 99]))
    return (low + high) / 2, max(high - low, 1.0)
