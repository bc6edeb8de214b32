"""Artefacts of the built-in report types: a DICOM SEG of masks, an overlay PNG and a PDF report."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

import dicomflow
from dicomflow.dicom import Volume


@dataclass(frozen=True)
class SegmentProperty:
    """What a segment is, in DICOM terms: Segmented Property Category and Type, and a display colour."""

    category: Code
    type: Code
    rgb: tuple[int, int, int]


SEGMENT_PROPERTIES: dict[str, SegmentProperty] = {
    "body": SegmentProperty(codes.SCT.AnatomicalStructure, codes.SCT.EntireBody, (80, 160, 255)),
    "bone": SegmentProperty(codes.SCT.Tissue, codes.SCT.Bone, (255, 235, 80)),
    "air": SegmentProperty(codes.SCT.Substance, codes.SCT.Air, (80, 220, 120)),
    "brain": SegmentProperty(codes.SCT.AnatomicalStructure, codes.SCT.Brain, (80, 160, 255)),
    "lesion": SegmentProperty(codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion, (255, 60, 60)),
}
"""Segment label -> coded property and colour (SNOMED CT codes from CID 7150 and its type groups)."""

LEGEND_HEIGHT = 36
"""Height in pixels of the legend strip under the overlay panels."""


def build_seg(
    source: Volume,
    masks: Mapping[str, NDArray[np.bool_]],
    *,
    series_number: int,
    series_description: str,
    algorithm_name: str,
    algorithm_version: str,
    manufacturer: str = "dicomflow",
) -> hd.seg.Segmentation:
    """A binary DICOM Segmentation of ``masks`` on the images of ``source``.

    One segment per mask, numbered in the order of ``masks``, labelled with the mask's name and coded by
    :data:`SEGMENT_PROPERTIES`; algorithm type AUTOMATIC, family "Histogram analysis" (thresholds).
    Frames are written only where a segment has pixels (highdicom's ``omit_empty_frames``); each frame
    references its source image.

    Parameters
    ----------
    source
        The volume the masks were computed on; its data sets become the source images.
    masks
        Segment label -> bool mask with ``source``'s shape (z, y, x).
    series_number, series_description
        Of the new SEG series.
    algorithm_name, algorithm_version
        Recorded in each segment's Algorithm Identification.
    manufacturer
        Manufacturer of the "device" (this software).

    Returns
    -------
    highdicom.seg.Segmentation
        The SEG instance (a pydicom Dataset): new series and SOP Instance UIDs, the source's study.

    Raises
    ------
    ValueError
        If there is no mask, a label has no entry in :data:`SEGMENT_PROPERTIES`, or a mask's shape is not
        the volume's.
    """
    if not masks:
        raise ValueError("no masks to put in a SEG")
    for label, mask in masks.items():
        if label not in SEGMENT_PROPERTIES:
            raise ValueError(f"no coded segment property for {label!r}; known: {sorted(SEGMENT_PROPERTIES)}")
        if mask.shape != source.shape:
            raise ValueError(f"mask {label!r} has shape {mask.shape}, the volume {source.shape}")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.HistogramAnalysis, version=algorithm_version
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=SEGMENT_PROPERTIES[label].category,
            segmented_property_type=SEGMENT_PROPERTIES[label].type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, label in enumerate(masks, start=1)
    ]
    pixels = np.stack([np.asarray(mask, dtype=bool) for mask in masks.values()], axis=-1)
    return hd.seg.Segmentation(
        source_images=list(source.datasets),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name=algorithm_name,
        software_versions=f"dicomflow {dicomflow.__version__}",
        device_serial_number="1",
        series_description=series_description,
        content_label="SEGMENTATION",
        omit_empty_frames=True,
    )


_FALLBACK_COLOURS = ((230, 120, 255), (255, 160, 60), (60, 230, 230), (200, 200, 200))


def render_overlay_png(
    volume: Volume,
    masks: Mapping[str, NDArray[np.bool_]],
    path: Path,
    *,
    window: tuple[float, float],
    size: int = 384,
    coronal: bool = True,
) -> Path:
    """Draw masks in translucent colours over a representative axial (and coronal) slice, with a legend.

    The axial slice is the one with the most mask voxels, each mask weighted by its inverse total size
    (so small masks such as lesions count as much as the body), the coronal cut the row chosen alike; the
    middle ones if all masks are empty. Each panel keeps the physical aspect ratio (mm) and is fitted
    into a ``size`` x ``size`` square; the legend strip below is :data:`LEGEND_HEIGHT` pixels high. The axial
    panel shows the image as stored (for ``ImageOrientationPatient`` 1\\0\\0\\0\\1\\0: patient's right on the
    left, anterior up), the coronal panel has the head up.

    Parameters
    ----------
    volume
        The image volume.
    masks
        Label -> bool mask with the volume's shape; drawn in this order (later on top). Known labels get
        the colours of :data:`SEGMENT_PROPERTIES`.
    path
        Where to write the PNG.
    window
        Display window ``(center, width)`` in the volume's units (e.g. ``(40, 400)`` HU).
    size
        Side of each panel in pixels.
    coronal
        Whether to add the coronal panel to the right of the axial one.

    Returns
    -------
    Path
        ``path``; the image is ``(2 * size if coronal else size)`` x ``size + LEGEND_HEIGHT`` pixels (w x h).

    Raises
    ------
    ValueError
        If a mask's shape is not the volume's.
    """
    for label, mask in masks.items():
        if mask.shape != volume.shape:
            raise ValueError(f"mask {label!r} has shape {mask.shape}, the volume {volume.shape}")
    colours = _colours(masks)
    k = _representative(masks, axis=0, default=volume.shape[0] // 2)
    dz, dy, dx = volume.spacing
    panels = [_panel(volume.array[k], {n: m[k] for n, m in masks.items()}, colours, window, (dy, dx), size)]
    if coronal:
        j = _representative(masks, axis=1, default=volume.shape[1] // 2)
        image = volume.array[::-1, j, :]
        cut = {n: m[::-1, j, :] for n, m in masks.items()}
        panels.append(_panel(image, cut, colours, window, (dz, dx), size))
    canvas = Image.new("RGB", (size * len(panels), size + LEGEND_HEIGHT), (0, 0, 0))
    for n, panel in enumerate(panels):
        canvas.paste(panel, (n * size, 0))
    _draw_legend(canvas, colours, top=size)
    canvas.save(path, format="PNG")
    return path


def _representative(masks: Mapping[str, NDArray[np.bool_]], axis: int, default: int) -> int:
    """The index along ``axis`` where the masks, each weighted by its total size, have most voxels."""
    score = np.zeros(next(iter(masks.values())).shape[axis]) if masks else np.zeros(0)
    other = tuple(a for a in range(3) if a != axis)
    for mask in masks.values():
        counts = mask.sum(axis=other)
        if counts.any():
            score += counts / counts.sum()
    return int(np.argmax(score)) if score.any() else default


def _colours(masks: Mapping[str, NDArray[np.bool_]]) -> dict[str, tuple[int, int, int]]:
    colours = {}
    for n, label in enumerate(masks):
        known = SEGMENT_PROPERTIES.get(label)
        colours[label] = known.rgb if known else _FALLBACK_COLOURS[n % len(_FALLBACK_COLOURS)]
    return colours


def _panel(
    image: NDArray[np.float32],
    masks: Mapping[str, NDArray[np.bool_]],
    colours: Mapping[str, tuple[int, int, int]],
    window: tuple[float, float],
    pixel_mm: tuple[float, float],
    size: int,
) -> Image.Image:
    """One 2-D cut, windowed and blended with its masks, fitted into a ``size`` square (physical aspect)."""
    center, width = window
    grey = np.clip((image - (center - width / 2)) / max(width, 1e-6), 0.0, 1.0) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for label, mask in masks.items():
        colour = np.array(colours[label], dtype=np.float64)
        rgb[mask] = 0.6 * rgb[mask] + 0.4 * colour
        edge = mask & ~_eroded(mask)
        rgb[edge] = colour
    picture = Image.fromarray(rgb.astype(np.uint8), mode="RGB")
    height_mm, width_mm = image.shape[0] * pixel_mm[0], image.shape[1] * pixel_mm[1]
    scale = size / max(height_mm, width_mm)
    shown = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    picture = picture.resize(shown, Image.Resampling.NEAREST)
    square = Image.new("RGB", (size, size), (0, 0, 0))
    square.paste(picture, ((size - shown[0]) // 2, (size - shown[1]) // 2))
    return square


def _eroded(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def _draw_legend(canvas: Image.Image, colours: Mapping[str, tuple[int, int, int]], top: int) -> None:
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    x = 10
    for label, colour in colours.items():
        y = top + (LEGEND_HEIGHT - 16) // 2
        draw.rectangle((x, y, x + 16, y + 16), fill=colour)
        draw.text((x + 22, y - 1), label, fill=(255, 255, 255), font=font)
        x += 22 + int(draw.textlength(label, font=font)) + 20


_DISCLAIMER = "Research use only. Not for diagnostic use."


def write_pdf_report(
    path: Path,
    *,
    title: str,
    study: Mapping[str, str],
    measurements: Sequence[tuple[str, str]],
    images: Sequence[Path],
    remarks: Sequence[str] = (),
) -> Path:
    """Write a one-study PDF report (A4): title, study table, measurements, images and remarks.

    Every page's footer names the generation time (UTC), the software (``dicomflow <version>``), a
    research-use disclaimer and the page number. Text is escaped, so values may hold ``<`` or ``&``.

    Parameters
    ----------
    path
        Where to write the PDF.
    title
        The report's title (also the PDF's title metadata).
    study
        Patient and study facts, label -> value (e.g. ``{"Patient ID": "DEMO001", "Study date": …}``).
    measurements
        ``(measure, value with unit)`` rows, in order.
    images
        PNG or JPEG files, each scaled to the text width (at most half a page high).
    remarks
        Free-text paragraphs after the images (method, thresholds, caveats).

    Returns
    -------
    Path
        ``path``.
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as PdfImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = f"Generated {generated} by dicomflow {dicomflow.__version__}. {_DISCLAIMER}"
    doc = SimpleDocTemplate(
        str(path), pagesize=A4, title=title, author="dicomflow", leftMargin=18 * mm, rightMargin=18 * mm
    )
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold"),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
    )

    def cell(text: str) -> Paragraph:
        return Paragraph(escape(text), styles["BodyText"])

    story: list[object] = [Paragraph(escape(title), styles["Title"])]
    if study:
        story += [
            Paragraph("Study", styles["Heading2"]),
            Table([[cell(k), cell(v)] for k, v in study.items()], colWidths=[50 * mm, None], style=grid),
        ]
    if measurements:
        story += [
            Paragraph("Measurements", styles["Heading2"]),
            Table([[cell(k), cell(v)] for k, v in measurements], colWidths=[80 * mm, None], style=grid),
        ]
    for image_path in images:
        story += [Spacer(1, 4 * mm), _scaled_image(PdfImage, image_path, doc.width, doc.height / 2)]
    if remarks:
        story.append(Paragraph("Remarks", styles["Heading2"]))
        story += [Paragraph(escape(remark), styles["BodyText"]) for remark in remarks]

    def draw_footer(canvas: object, document: object) -> None:
        canvas.saveState()  # type: ignore[attr-defined]  # reportlab is untyped
        canvas.setFont("Helvetica", 7.5)  # type: ignore[attr-defined]  # reportlab is untyped
        canvas.drawString(18 * mm, 10 * mm, footer)  # type: ignore[attr-defined]  # reportlab is untyped
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"Page {document.page}")  # type: ignore[attr-defined]  # reportlab is untyped
        canvas.restoreState()  # type: ignore[attr-defined]  # reportlab is untyped

    doc.build(story, onFirstPage=draw_footer, onLaterPages=draw_footer)
    return path


def _scaled_image(factory: type, path: Path, max_width: float, max_height: float) -> object:
    """A reportlab Image of ``path`` scaled to fit ``max_width`` x ``max_height`` points, aspect kept."""
    with Image.open(path) as picture:
        width, height = picture.size
    scale = min(max_width / width, max_height / height)
    return factory(str(path), width=width * scale, height=height * scale)
