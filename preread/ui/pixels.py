"""What the review page cuts its pictures from: the series the AI read and its findings'
voxels (:class:`StudyPixels`), loaded once per reading and kept in the process's
:class:`~preread.volume_cache.VolumeCache`.

The series comes through :func:`preread.reviews.series_volume` (a pixel access under a
clinical-preread grant, audited ``pixels.fetch``); each AI finding's voxels come from the AI
SEG stored in the study (the same voxels the SEG shows in any viewer), by frame position: each
frame of the SEG lies on one slice of the series (PS3.3 C.8.20.2, Plane Position), its segment
is the finding whose Tracking UID the segment carries.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset

from inference.card import ModelCard
from inference.errors import PackageError
from inference.measure import TypeRule
from inference.package import CARD_FILE, load_card
from preread.domain import Geometry, Volume
from preread.reports.json import PreReadOut
from preread.reviews import ReviewContext, Reviewer, ReviewError, ReviewSubject, series_volume
from preread.reviews.measure import DEFAULT_TYPE_RULE
from preread.ui.planes import Oriented, Voxels

__all__ = ["StudyPixels", "ai_voxels", "load_study_pixels", "type_rule"]


@dataclass(frozen=True, eq=False)
class StudyPixels:
    """One reading's series (``volume``, and the same voxels ``oriented`` for display), its
    AI result and each finding's voxels (label → ``[z, y, x]`` indices)."""

    job_id: str
    preread: PreReadOut
    volume: Volume
    oriented: Oriented
    findings: Mapping[int, Voxels]

    @property
    def nbytes(self) -> int:
        return int(self.volume.array.nbytes + sum(v.nbytes for v in self.findings.values()))

    def voxels(self, label: int) -> Voxels:
        found = self.findings.get(label)
        return found if found is not None else np.zeros((0, 3), dtype=np.int32)


def load_study_pixels(
    ctx: ReviewContext, reviewer: Reviewer, subject: ReviewSubject
) -> StudyPixels:
    """The reading's pixels and finding voxels (the module docstring).

    Raises:
        NotAuthorizedError: no grant in force (audited by ``series_volume``).
        ReviewError: the AI SEG does not fit the series.
        GatewayError, ResourceNotFoundError, SeriesError: Orthanc or the series.
    """
    volume = series_volume(ctx, reviewer, subject)
    oriented = Oriented.of(volume.array, volume.geometry)
    job = subject.job
    findings: dict[int, Voxels] = {}
    seg = job.outputs.seg
    if seg is not None and subject.preread.findings:
        f = subject.study.facts
        data = ctx.source.instance_file(
            f.patient_id, f.study_instance_uid, seg.series_instance_uid, seg.sop_instance_uid
        )
        by_uid = {x.tracking_uid: x.label for x in subject.preread.findings}
        source = ai_voxels(pydicom.dcmread(io.BytesIO(data)), volume.geometry, by_uid)
        findings = {label: oriented.from_source(v).astype(np.int32) for label, v in source.items()}
    return StudyPixels(job.id, subject.preread, volume, oriented, findings)


def ai_voxels(
    seg: Dataset, geometry: Geometry, labels_by_uid: Mapping[str, int]
) -> dict[int, npt.NDArray[np.int64]]:
    """Each finding's voxels ``[k, j, i]`` on ``geometry`` from the AI SEG ``seg``: finding
    label (``labels_by_uid``: tracking UID → label) → (n, 3) indices.

    Raises:
        ReviewError: a frame does not lie on a slice of the series, or its size differs.
    """
    segment_label = {
        int(item.SegmentNumber): labels_by_uid[str(item.TrackingUID)]
        for item in seg.get("SegmentSequence", [])
        if str(item.get("TrackingUID", "")) in labels_by_uid
    }
    frames = np.asarray(seg.pixel_array)
    if frames.ndim == 2:
        frames = frames[None]
    nk, nj, ni = geometry.shape
    if frames.shape[1:] != (nj, ni):
        raise ReviewError(
            f"the AI SEG's frames are {frames.shape[1:]}, the series' slices {(nj, ni)}"
        )
    found: dict[int, list[npt.NDArray[np.int64]]] = {}
    for n, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        label = segment_label.get(number)
        if label is None or not frames[n].any():
            continue
        position = item.PlanePositionSequence[0].ImagePositionPatient
        k, j, i = geometry.lps_to_index(np.asarray(position, dtype=np.float64))
        slice_k = round(float(k))
        if abs(j) > 0.5 or abs(i) > 0.5 or abs(k - slice_k) > 0.25 or not 0 <= slice_k < nk:
            raise ReviewError(f"frame {n + 1} of the AI SEG lies on no slice of the series")
        rows, cols = np.nonzero(frames[n])
        voxels = np.stack([np.full_like(rows, slice_k), rows, cols], axis=1).astype(np.int64)
        found.setdefault(label, []).append(voxels)
    return {label: np.concatenate(parts) for label, parts in found.items()}


@functools.lru_cache(maxsize=32)
def _card(path: Path) -> ModelCard | None:
    try:
        return load_card(path)
    except PackageError:
        return None


def type_rule(models_dir: Path, model_id: str, version: str) -> TypeRule:
    """The model card's ``pipeline.type_rule`` (solid / part-solid / ground-glass thresholds)
    for measuring added nodules as the model measures its own; the defaults when the card has
    none or the package is not installed here."""
    card = _card(Path(models_dir) / model_id / version / CARD_FILE)
    spec = None if card is None else card.pipeline.type_rule
    return DEFAULT_TYPE_RULE if spec is None else TypeRule(**spec.model_dump())
