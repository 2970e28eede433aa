"""Which series of a study a model reads: the card's declarative series rules, with reasons.

Every series of a study gets a :class:`SeriesDecision` (eligible or not, and why), recorded with
the job, so "why was my study not read?" always has an answer. Among the eligible series the
thinnest slices win, then the most images (the series a radiologist would read nodules on).

The rules (``inference.card.SeriesRules``) look at header values only (modality, orientation,
slice thickness, image count, SeriesDescription, ImageType), so the decision is made before any
pixel data is fetched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.card import SeriesRules

#: |cos| between the slice normal and the patient's z axis above which a series is axial (~10°).
AXIAL_COS = float(np.cos(np.deg2rad(10.0)))


@dataclass(frozen=True)
class SeriesCandidate:
    """Header facts about one series (from Orthanc's tags or from files)."""

    series_instance_uid: str
    modality: str
    description: str
    n_images: int  # instances, or frames of a multi-frame instance
    image_orientation: tuple[float, ...] | None
    slice_thickness_mm: float | None
    image_type: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesDecision:
    series_instance_uid: str
    eligible: bool
    reason: str


@dataclass(frozen=True)
class Selection:
    chosen: SeriesCandidate | None
    decisions: tuple[SeriesDecision, ...]

    @property
    def reason(self) -> str:
        """Why nothing was chosen (or which series was), in one line."""
        if self.chosen is not None:
            return f"series {self.chosen.series_instance_uid} selected"
        if not self.decisions:
            return "the study has no series"
        return "no eligible series: " + "; ".join(
            f"{d.series_instance_uid}: {d.reason}" for d in self.decisions
        )


#: SeriesDescription prefix of PreRead's own series (see preread.reports.series).
PREREAD_SERIES_PREFIX = "AI pre-read"
#: Modalities of PreRead's own series: SR, SEG, the key images (Secondary Capture, OT) and
#: their Key Object Selection (KO).
PREREAD_MODALITIES = frozenset({"SR", "SEG", "OT", "KO"})


def is_preread_series(modality: str, description: str) -> bool:
    """PreRead's own SR/SEG/key-image/KOS series: never read as input, never a training label,
    not part of a study's fingerprint (storing them does not make the study change)."""
    return modality in PREREAD_MODALITIES and description.startswith(PREREAD_SERIES_PREFIX)


def judge(series: SeriesCandidate, rules: SeriesRules) -> SeriesDecision:
    """One series against the rules; the first rule it breaks is the reason."""

    def no(reason: str) -> SeriesDecision:
        return SeriesDecision(series.series_instance_uid, False, reason)

    if series.modality != rules.modality:
        return no(f"modality {series.modality or 'missing'}, the model reads {rules.modality}")
    if any(t.upper() == "LOCALIZER" for t in series.image_type):
        return no("a localizer (ImageType LOCALIZER)")
    desc = series.description or ""
    for pattern in rules.description_exclude:
        if re.search(pattern, desc, re.IGNORECASE):
            return no(f"SeriesDescription {desc!r} matches excluded pattern {pattern!r}")
    if rules.description_include and not any(
        re.search(p, desc, re.IGNORECASE) for p in rules.description_include
    ):
        return no(f"SeriesDescription {desc!r} matches none of {rules.description_include}")
    if series.image_orientation is None or len(series.image_orientation) != 6:
        return no("no ImageOrientationPatient")
    row = np.asarray(series.image_orientation[:3], dtype=float)
    col = np.asarray(series.image_orientation[3:], dtype=float)
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        return no("ImageOrientationPatient is degenerate")
    cos_z = abs(float(normal[2])) / norm
    if rules.orientation == "axial" and cos_z < AXIAL_COS:
        angle = float(np.rad2deg(np.arccos(min(1.0, cos_z))))
        return no(f"not axial (slice normal {angle:.0f}° from the patient's z axis)")
    thick = series.slice_thickness_mm
    if thick is None:
        return no("no SliceThickness")
    if thick > rules.max_slice_thickness_mm:
        return no(f"slice thickness {thick:g} mm > {rules.max_slice_thickness_mm:g} mm")
    if rules.min_slice_thickness_mm is not None and thick < rules.min_slice_thickness_mm:
        return no(f"slice thickness {thick:g} mm < {rules.min_slice_thickness_mm:g} mm")
    if series.n_images < rules.min_slices:
        return no(f"{series.n_images} images < {rules.min_slices} needed")
    return SeriesDecision(series.series_instance_uid, True, "eligible")


def select_series(series: Sequence[SeriesCandidate], rules: SeriesRules) -> Selection:
    """Judge every series; choose the thinnest eligible one (then the one with most images)."""
    decisions = [judge(s, rules) for s in series]
    eligible = [s for s, d in zip(series, decisions, strict=True) if d.eligible]
    if not eligible:
        return Selection(None, tuple(decisions))
    chosen = min(
        eligible,
        key=lambda s: (s.slice_thickness_mm or 0.0, -s.n_images, s.series_instance_uid),
    )
    return Selection(chosen, tuple(decisions))
