"""Artefacts: the SEG passes dciodvfy and reads back, the overlay PNG and the PDF report open."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

from dicomflow.demo import make_ct_phantom, make_ms_study
from dicomflow.dicom import Volume, load_volume
from dicomflow.pipelines.builtin._artefacts import (
    LEGEND_HEIGHT,
    build_seg,
    render_overlay_png,
    write_pdf_report,
)
from dicomflow.pipelines.builtin._ct import CtSegmentation, segment_ct
from dicomflow.pipelines.builtin._ms import segment_ms_lesions

Dciodvfy = Callable[[Path], tuple[list[str], list[str]]]


@pytest.fixture(scope="module")
def ct() -> tuple[Volume, CtSegmentation]:
    volume = load_volume(make_ct_phantom(slices=30, rows=96, cols=96, pixel_spacing=2.0).datasets)
    return volume, segment_ct(volume)


def test_ct_seg_passes_dciodvfy_and_reads_back(
    ct: tuple[Volume, CtSegmentation], tmp_path: Path, dciodvfy: Dciodvfy
) -> None:
    volume, result = ct
    seg = build_seg(
        volume,
        result.masks,
        series_number=300,
        series_description="CT volumetry masks",
        algorithm_name="dicomflow ct_volumetry",
        algorithm_version="0.1.0",
    )
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    errors, warnings = dciodvfy(path)
    assert not errors, "\n".join(errors + warnings)

    read = hd.seg.segread(path)
    assert read.StudyInstanceUID == volume.datasets[0].StudyInstanceUID
    assert read.SeriesNumber == 300 and read.SeriesDescription == "CT volumetry masks"
    labels = [segment.SegmentLabel for segment in read.SegmentSequence]
    assert labels == ["body", "bone", "air"]
    assert read.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "272673000"
    pixels = read.get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in volume.datasets], segment_numbers=[1, 2, 3]
    )
    for n, name in enumerate(labels):
        assert np.count_nonzero(pixels[..., n]) == np.count_nonzero(result.masks[name]), name


def test_ms_seg_passes_dciodvfy(tmp_path: Path, dciodvfy: Dciodvfy) -> None:
    study = make_ms_study(slices=24, lesions=2, seed=4)
    flair = load_volume(study.flair)
    result = segment_ms_lesions(load_volume(study.t1), flair)
    seg = build_seg(
        flair,
        result.masks,
        series_number=301,
        series_description="MS lesions",
        algorithm_name="dicomflow ms_lesions",
        algorithm_version="0.1.0",
    )
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    errors, warnings = dciodvfy(path)
    assert not errors, "\n".join(errors + warnings)
    read = hd.seg.segread(path)
    assert [segment.SegmentLabel for segment in read.SegmentSequence] == ["brain", "lesion"]
    assert int(read.NumberOfFrames) < 2 * flair.shape[0]  # empty frames left out


def test_build_seg_refuses_unknown_labels_and_wrong_shapes(ct: tuple[Volume, CtSegmentation]) -> None:
    volume, result = ct

    def seg_of(masks: dict[str, np.ndarray]) -> object:
        return build_seg(
            volume, masks, series_number=1, series_description="x", algorithm_name="x", algorithm_version="1"
        )

    with pytest.raises(ValueError, match="no coded segment property for 'liver'"):
        seg_of({"liver": result.body})
    with pytest.raises(ValueError, match="has shape"):
        seg_of({"body": result.body[1:]})
    with pytest.raises(ValueError, match="no masks"):
        seg_of({})


@pytest.mark.parametrize(("coronal", "panels"), [(True, 2), (False, 1)])
def test_overlay_png_has_the_documented_size(
    ct: tuple[Volume, CtSegmentation], tmp_path: Path, coronal: bool, panels: int
) -> None:
    volume, result = ct
    path = render_overlay_png(
        volume, result.masks, tmp_path / "overlay.png", window=(40, 400), size=200, coronal=coronal
    )
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (200 * panels, 200 + LEGEND_HEIGHT)
        colours = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    assert (255, 235, 80) in colours  # the bone outline


def test_pdf_report_opens_and_holds_title_and_volumes(
    ct: tuple[Volume, CtSegmentation], tmp_path: Path
) -> None:
    volume, result = ct
    png = render_overlay_png(volume, result.masks, tmp_path / "overlay.png", window=(40, 400))
    path = write_pdf_report(
        tmp_path / "report.pdf",
        title="CT volumetry",
        study={"Patient ID": "DEMO001", "Patient name": "Demo^<&>", "Study date": "2025-01-01"},
        measurements=[(f"{name} volume", f"{ml:.1f} mL") for name, ml in result.volumes_ml.items()],
        images=[png],
        remarks=["Body: largest component above -500 HU, holes filled per slice."],
    )
    reader = PdfReader(path)
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "CT volumetry" in text
    assert f"{result.volumes_ml['body']:.1f} mL" in text
    assert "Demo^<&>" in text
    assert "dicomflow 0.1.0" in text
    assert reader.metadata is not None and reader.metadata.title == "CT volumetry"
    assert any(page.images for page in reader.pages)  # the overlay
