"""A radiologist's review of one AI pre-read, as typed values.

A :class:`Review` answers, for one stored AI result (a done job: its study, model version and
the SOP Instance UID of its SR), every AI finding with exactly one :class:`Assessment` and
adds the nodules the AI missed (:class:`AddedNodule`). The AI finding is named by its Tracking
UID (TID 4108, the same in the AI's SR, SEG and JSON) and its number (the finding's label,
"AI nodule 3"). The verdicts:

* :class:`Accepted` — the finding is what the AI says;
* :class:`Rejected` — it is not a nodule; the reason comes from a closed set
  (:class:`RejectReason`), with free text (required for ``other``);
* :class:`Modified` — it is a nodule, with the reader's type and/or long/short axis (mm);

and an added nodule is reader-placed: the reader clicked, its extent came from the pixels
(:func:`preread.reviews.measure.measure_added`) and its voxel mask lies on the source series'
grid. A review is a *draft* (:class:`ReviewDraft`, what the UI builds) until it is signed
(:func:`preread.reviews.service.sign_review`), which gives it an id, a version (1, 2, … per
study and model) and the id of the review it supersedes. Nothing is ever overwritten: a new
signature is a new review.

Coordinates are DICOM patient coordinates (LPS, mm), as everywhere in PreRead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from preread.domain import NoduleType, Shape3, Vec3
from preread.reviews.errors import ReviewError

__all__ = [
    "NODULE_TYPES",
    "Accepted",
    "AddedNodule",
    "AiFinding",
    "Assessment",
    "Modified",
    "RejectReason",
    "Rejected",
    "Review",
    "ReviewDraft",
    "ReviewTarget",
    "Reviewer",
    "Verdict",
    "VoxelMask",
    "check_complete",
]

NODULE_TYPES: tuple[NoduleType, ...] = ("solid", "part-solid", "ground-glass")
MAX_TEXT = 1000
"""Longest free text of a rejection (characters)."""
MAX_AXIS_MM = 100.0
"""Largest long or short axis a reader may give (mm): a nodule is at most 30 mm, a mass more."""


class RejectReason(StrEnum):
    """Why a reader rejects an AI finding: what it is instead (a closed set)."""

    VESSEL = "vessel"
    SCAR_FIBROSIS = "scar-fibrosis"
    LYMPH_NODE = "lymph-node"
    BONE = "bone"
    ARTEFACT = "artefact"
    OTHER = "other"
    """Anything else: the free text says what."""


@dataclass(frozen=True)
class Reviewer:
    """The signed-in person who signs: their user id, the name to show and to write into
    DICOM (Verifying Observer Name) and their tenant (the Verifying Organization)."""

    user_id: str
    name: str
    tenant: str

    def __post_init__(self) -> None:
        for attribute in ("user_id", "name", "tenant"):
            value = getattr(self, attribute)
            if not value.strip():
                raise ReviewError(f"the reviewer's {attribute} is empty")
            if any(ord(c) < 0x20 or c == "\x7f" for c in value):
                raise ReviewError(f"the reviewer's {attribute} holds a control character")
        if len(self.name) > 64 or len(self.tenant) > 64 or len(self.user_id) > 64:
            raise ReviewError("the reviewer's user id, name and tenant are at most 64 characters")


@dataclass(frozen=True)
class Accepted:
    """The AI finding is right as it is."""


@dataclass(frozen=True)
class Rejected:
    """The AI finding is not a nodule: ``reason`` says what it is; ``text`` adds words
    (required when the reason is :attr:`RejectReason.OTHER`)."""

    reason: RejectReason
    text: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", RejectReason(self.reason))
        text = None if self.text is None else self.text.strip() or None
        object.__setattr__(self, "text", text)
        if self.reason is RejectReason.OTHER and text is None:
            raise ReviewError("a rejection for an 'other' reason needs a text saying what it is")
        if text is not None:
            _check_text(text, "the rejection's text")


@dataclass(frozen=True)
class Modified:
    """The AI finding is a nodule, with the reader's corrections (at least one): its type,
    its axial long axis and/or its short axis (mm, the Lung-RADS sizes)."""

    nodule_type: NoduleType | None = None
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None

    def __post_init__(self) -> None:
        if self.nodule_type is None and self.long_axis_mm is None and self.short_axis_mm is None:
            raise ReviewError("a modification changes the type or a size; this one changes none")
        if self.nodule_type is not None and self.nodule_type not in NODULE_TYPES:
            raise ReviewError(
                f"unknown nodule type {self.nodule_type!r} (known: {', '.join(NODULE_TYPES)})"
            )
        for name in ("long_axis_mm", "short_axis_mm"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _size(value, name.replace("_mm", "")))
        if (
            self.long_axis_mm is not None
            and self.short_axis_mm is not None
            and self.short_axis_mm > self.long_axis_mm
        ):
            raise ReviewError(
                f"the short axis ({self.short_axis_mm} mm) is longer than the long axis "
                f"({self.long_axis_mm} mm)"
            )


Verdict = Accepted | Rejected | Modified


@dataclass(frozen=True)
class Assessment:
    """The reader's verdict on one AI finding, named by its tracking UID and number."""

    tracking_uid: str
    finding_number: int
    verdict: Verdict

    @property
    def kind(self) -> str:
        """``accepted``, ``rejected`` or ``modified``."""
        return type(self.verdict).__name__.lower()


@dataclass(frozen=True, eq=False)
class VoxelMask:
    """Voxels of one nodule on a series' grid: ``array`` (bool, ``[k, j, i]``) is the box that
    starts at ``offset_kji`` in a grid of ``grid_shape`` (the series' volume, slice ``k`` in
    the order of :func:`dicom_gateway.volume.assemble_volume`)."""

    grid_shape: Shape3
    offset_kji: Shape3
    array: npt.NDArray[np.bool_]

    def __post_init__(self) -> None:
        array = np.asarray(self.array, dtype=bool)
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "grid_shape", tuple(int(n) for n in self.grid_shape))
        object.__setattr__(self, "offset_kji", tuple(int(n) for n in self.offset_kji))
        if array.ndim != 3 or not array.any():
            raise ReviewError("a voxel mask is a non-empty 3-D array")
        for o, n, g in zip(self.offset_kji, array.shape, self.grid_shape, strict=True):
            if o < 0 or o + n > g:
                raise ReviewError(
                    f"a mask box at {self.offset_kji} of shape {array.shape} leaves the grid "
                    f"{self.grid_shape}"
                )

    @property
    def voxel_count(self) -> int:
        return int(self.array.sum())

    def box(self) -> tuple[slice, slice, slice]:
        """Where :attr:`array` lies in the grid."""
        k, j, i = (slice(o, o + n) for o, n in zip(self.offset_kji, self.array.shape, strict=True))
        return (k, j, i)

    def paint(self, labels: npt.NDArray[np.integer], value: int) -> None:
        """Set this mask's voxels of ``labels`` (the whole grid) to ``value``."""
        if tuple(labels.shape) != self.grid_shape:
            raise ReviewError(
                f"labels of shape {labels.shape}, the mask's grid is {self.grid_shape}"
            )
        labels[self.box()][self.array] = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VoxelMask):
            return NotImplemented
        return (
            self.grid_shape == other.grid_shape
            and self.offset_kji == other.offset_kji
            and np.array_equal(self.array, other.array)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class AddedNodule:
    """A nodule the reader added (reader-placed: ``reader_placed`` is always True): where the
    reader clicked, the nodule's centre, its axial long and short axis (Lung-RADS), its 3-D
    long axis, volume, mean attenuation and type as measured from the pixels around the click,
    and its voxels on the source series' grid.

    ``tracking_uid`` is given when signing (derived from the review) unless the nodule comes
    from an earlier review, whose UID it keeps so that it can be followed across versions.
    """

    click_lps_mm: Vec3
    centre_lps_mm: Vec3
    long_axis_mm: float
    short_axis_mm: float
    long_axis_3d_mm: float
    volume_mm3: float
    mean_hu: float
    nodule_type: NoduleType
    mask: VoxelMask = field(compare=False)
    solid_component_long_axis_mm: float | None = None
    tracking_uid: str | None = None
    reader_placed: bool = True

    def __post_init__(self) -> None:
        if not self.reader_placed:
            raise ReviewError("an added nodule is always reader-placed")
        if self.nodule_type not in NODULE_TYPES:
            raise ReviewError(f"unknown nodule type {self.nodule_type!r}")
        for name in ("click_lps_mm", "centre_lps_mm"):
            point = tuple(float(v) for v in getattr(self, name))
            if len(point) != 3 or not all(math.isfinite(v) for v in point):
                raise ReviewError(f"{name} must be three finite numbers (LPS mm)")
            object.__setattr__(self, name, point)
        for name in ("long_axis_mm", "short_axis_mm", "long_axis_3d_mm"):
            object.__setattr__(self, name, _size(getattr(self, name), name.replace("_mm", "")))
        if not (math.isfinite(self.volume_mm3) and self.volume_mm3 > 0):
            raise ReviewError(f"an added nodule's volume must be positive, got {self.volume_mm3}")
        if self.short_axis_mm > self.long_axis_mm:
            raise ReviewError("an added nodule's short axis is longer than its long axis")

    @property
    def mean_diameter_mm(self) -> float:
        """(axial long axis + short axis) / 2, to 0.1 mm (Lung-RADS v2022)."""
        return round((self.long_axis_mm + self.short_axis_mm) / 2.0, 1)


@dataclass(frozen=True)
class AiFinding:
    """What a review needs to know of one AI finding: its number and tracking UID."""

    number: int
    tracking_uid: str


@dataclass(frozen=True)
class ReviewTarget:
    """The AI result a review is of: the study, the job that made the result, the model
    version and the SOP Instance UID of the result's SR, and the findings to assess."""

    tenant: str
    study_instance_uid: str
    job_id: str
    model_id: str
    model_version: str
    ai_sr_sop_instance_uid: str
    findings: tuple[AiFinding, ...]


@dataclass(frozen=True)
class ReviewDraft:
    """What the reader has decided so far (the UI builds it; :func:`check_complete` says
    whether it can be signed)."""

    assessments: tuple[Assessment, ...] = ()
    added: tuple[AddedNodule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "assessments", tuple(self.assessments))
        object.__setattr__(self, "added", tuple(self.added))


@dataclass(frozen=True)
class Review:
    """A signed review (see the module docstring). ``added`` are numbered 1.. in order and
    each has its tracking UID; ``sr``/``seg`` are the UIDs of the review's SR and SEG in the
    study (``seg`` None when nothing was added or modified); ``stored_at`` says when they were
    stored there (None: not yet, :func:`~preread.reviews.service.store_review` retries)."""

    id: str
    target: ReviewTarget
    reviewer: Reviewer
    signed_at: datetime
    version: int
    supersedes: str | None
    assessments: tuple[Assessment, ...]
    added: tuple[AddedNodule, ...]
    sr_series_uid: str
    sr_sop_instance_uid: str
    seg_series_uid: str | None
    seg_sop_instance_uid: str | None
    stored_at: datetime | None = None

    @property
    def study_instance_uid(self) -> str:
        return self.target.study_instance_uid

    @property
    def tenant(self) -> str:
        return self.target.tenant

    def count(self, kind: str) -> int:
        """How many assessments are ``accepted``, ``rejected`` or ``modified``."""
        return sum(1 for a in self.assessments if a.kind == kind)

    @property
    def segmented(self) -> tuple[Assessment, ...]:
        """The modified assessments, which the review's SEG holds with the added nodules."""
        return tuple(a for a in self.assessments if isinstance(a.verdict, Modified))


def check_complete(findings: Sequence[AiFinding], draft: ReviewDraft) -> None:
    """Refuse a draft that does not give every AI finding exactly one assessment.

    Raises:
        ReviewError: naming the findings without an assessment, those assessed twice, and
            assessments of findings the result does not have (or whose number does not match
            their tracking UID).
    """
    by_uid = {f.tracking_uid: f for f in findings}
    seen: dict[str, int] = {}
    problems: list[str] = []
    for a in draft.assessments:
        seen[a.tracking_uid] = seen.get(a.tracking_uid, 0) + 1
        known = by_uid.get(a.tracking_uid)
        if known is None:
            problems.append(
                f"assessment of finding {a.finding_number} names tracking UID {a.tracking_uid}, "
                "which is no finding of this result"
            )
        elif known.number != a.finding_number:
            problems.append(
                f"tracking UID {a.tracking_uid} is AI finding {known.number}, "
                f"not {a.finding_number}"
            )
    twice = sorted(by_uid[u].number for u, n in seen.items() if n > 1 and u in by_uid)
    if twice:
        problems.append(f"AI finding(s) {_numbers(twice)} assessed more than once")
    missing = sorted(f.number for f in findings if f.tracking_uid not in seen)
    if missing:
        problems.append(f"AI finding(s) {_numbers(missing)} not assessed yet")
    if problems:
        raise ReviewError("the review cannot be signed: " + "; ".join(problems))


def _numbers(numbers: Iterable[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _size(value: float, name: str) -> float:
    number = float(value)
    if not (math.isfinite(number) and 0.0 < number <= MAX_AXIS_MM):
        raise ReviewError(
            f"the {name.replace('_', ' ')} must be in (0, {MAX_AXIS_MM}] mm, got {value}"
        )
    return number


def _check_text(text: str, what: str) -> None:
    if len(text) > MAX_TEXT:
        raise ReviewError(f"{what} is longer than {MAX_TEXT} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise ReviewError(f"{what} holds a control character")
