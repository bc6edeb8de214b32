"""Pure checks run before a study is processed: is each series complete, is each instance valid?

Each problem becomes a :class:`Finding` with a stable code, stored with the study; a study with an error
finding goes to Failed, never silently processed. Nothing here reads files, the network or a database.

Completeness (:func:`check_completeness`), the rules and the judgements behind them:

* **Geometry first.** Slices are ordered by their position along the slice normal (row x column direction
  of ImageOrientationPatient, projected from ImagePositionPatient), never by InstanceNumber. ``z`` in
  messages is that coordinate (patient z for axial slices), one decimal, with a typographic minus.
* **Spacing.** The nominal spacing is the most common gap between neighbouring positions (gaps equal within
  1 % or 0.01 mm, whichever is larger; a tie goes to the smaller gap). A gap of k > 1 spacings is k - 1
  missing slices, one ``missing-slice`` finding per gap (``series 3 (FLAIR): slice 17 of 40 missing at
  z=−12.5 mm``; 40 is the count over the covered extent, 17 the 1-based index in ascending position). Any
  other gap is ``uneven-spacing``, one finding per series listing the odd gaps. Gantry tilt and floating
  point noise stay within the tolerance; spacing is measured along the normal, so oblique and tilted stacks
  are judged like axial ones. A slice missing at either end cannot be seen geometrically; the counts may
  catch it.
* **Repeated positions.** Positions within the tolerance are one position. If every position holds the same
  number of instances the series is multi-echo or multi-phase and the distinct positions are judged as one
  stack (every repetition set has the same positions). Otherwise: ``duplicate-position`` when most positions
  hold one instance, ``uneven-repetition`` when most hold several (an echo or phase lost at some position).
* **Instance numbers** (``instance-number-gap``) are judged only when every instance has one and none
  repeats (a restart, as in multi-acquisition series, means the numbers say nothing), and only interior
  gaps count (a series may start at any number). Numbers advancing in a constant step (1, 3, 5: split
  echoes) are not gaps. When the geometry already found missing slices, the same loss is not reported a
  second time as an instance-number gap. DICOM does not require consecutive numbers, so a gap in a series
  whose slice positions were judged complete is a warning (``…; slice positions complete``); it is an error
  only where no geometry can tell that the series is complete (no positions, multi-frame objects).
* **Counts** (``count-mismatch``): ImagesInAcquisition is compared with the images (frames) received, per
  AcquisitionNumber when the series holds several acquisitions (a Siemens fMRI series has one per volume);
  NumberOfSlices with the distinct slice positions (slices per time frame in a dynamic PET series) when
  the geometry can be judged; in a multi-frame NM object it counts slices of each time slot or gate, so it
  is not compared there. ImagesInAcquisition applies to single instances too, since the header states it.
* **What cannot be judged is not failed.** A single instance, a series with any multi-frame object
  (NumberOfFrames > 1), and instances without ImagePositionPatient / ImageOrientationPatient (SR, SEG,
  secondary capture) get no geometric check: only instance numbers and counts. Instances without geometry
  in an imaging series (a dose screen) are left out of the geometry of the others. Slices in several
  orientations (a three-plane localizer, a multi-angle spine series) get a ``mixed-orientation`` finding
  and no geometric check: an error when the series is to be stacked into one volume (``needs_volume``: its
  input's grinder stacks one), else a warning. Orientations equal within 0.001 per direction cosine are
  one: the single tolerance (``dicomflow.dicom.ORIENTATION_TOLERANCE``) that ``load_volume`` stacks with,
  so a series the checks let through always stacks.
* A degenerate orientation (row parallel to column) skips the geometry; a mixed stack of several regular
  blocks in one orientation is ``uneven-spacing`` (processing wants one regular volume).

Required series (:func:`missing_series`): the caller matches a report type's inputs against the study and
reports each unmatched one (``required series 'FLAIR' missing: no series matched SeriesDescription ~
/flair/i``).

Validity (:func:`check_validity`): required attributes are type 1 (absent or empty is ``missing-tag``),
well-formed for their VR by pydicom's own validators (``pydicom.valuerep.VALIDATORS``: UI, DA, TM, DT, IS,
DS, CS, AS, AE, UR charsets and lengths, PN components; DA, DT and TM also on the calendar, so 20240230 and
date ranges are malformed), and equal to an expected value where one is given (``value-mismatch``). Each
problem is reported once per series with the number of instances concerned: ``series 2 (T1): PatientID
missing in 3 of 40 instances``. CS is strict as the standard is (``Head`` is not a valid CS).
"""

from __future__ import annotations

from dicomflow.checks._completeness import check_completeness
from dicomflow.checks._facts import SeriesFacts, SliceFacts, series_facts
from dicomflow.checks._findings import Finding, FindingCode, Severity, missing_series
from dicomflow.checks._validity import ValueRule, check_validity

__all__ = [
    "Finding",
    "FindingCode",
    "SeriesFacts",
    "Severity",
    "SliceFacts",
    "ValueRule",
    "check_completeness",
    "check_validity",
    "missing_series",
    "series_facts",
]
