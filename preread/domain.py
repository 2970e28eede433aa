"""PreRead's domain model: the typed objects that cross package boundaries.

Coordinates follow DICOM PS3.3 C.7.6.2.1.1 (Image Plane Module): the patient coordinate
system is LPS (x towards the patient's Left, y towards Posterior, z towards Superior), in mm.

Arrays are indexed ``array[k, j, i]``: ``k`` the slice (along :attr:`Geometry.slice_direction`),
``j`` the row (along :attr:`Geometry.column_direction`, i.e. ImageOrientationPatient[3:6]) and
``i`` the column (along :attr:`Geometry.row_direction`, i.e. ImageOrientationPatient[0:3]).
``spacing`` is given in the same (k, j, i) order: (slice spacing, PixelSpacing[0], PixelSpacing[1]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

Vec3 = tuple[float, float, float]
Shape3 = tuple[int, int, int]

NoduleType = Literal["solid", "part-solid", "ground-glass"]


def _unit(v: npt.ArrayLike) -> Vec3:
    a = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(a))
    if n == 0.0:
        raise ValueError("direction vector has zero length")
    a = a / n
    return (float(a[0]), float(a[1]), float(a[2]))


@dataclass(frozen=True)
class Geometry:
    """Where a (k, j, i) voxel grid lies in patient space (LPS, mm).

    ``origin`` is the centre of voxel ``[0, 0, 0]`` (the ImagePositionPatient of the first slice).
    """

    shape: Shape3
    origin: Vec3
    row_direction: Vec3
    column_direction: Vec3
    slice_direction: Vec3
    spacing: Vec3

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "row_direction", _unit(self.row_direction))
        object.__setattr__(self, "column_direction", _unit(self.column_direction))
        object.__setattr__(self, "slice_direction", _unit(self.slice_direction))
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if any(s <= 0 for s in self.shape):
            raise ValueError(f"shape must be positive, got {self.shape}")

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        """4×4 matrix mapping homogeneous (k, j, i, 1) indices to LPS mm."""
        a = np.eye(4)
        a[:3, 0] = np.asarray(self.slice_direction) * self.spacing[0]
        a[:3, 1] = np.asarray(self.column_direction) * self.spacing[1]
        a[:3, 2] = np.asarray(self.row_direction) * self.spacing[2]
        a[:3, 3] = self.origin
        return a

    @property
    def image_orientation(self) -> list[float]:
        """ImageOrientationPatient (row direction then column direction)."""
        return [*self.row_direction, *self.column_direction]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(self.spacing[0] * self.spacing[1] * self.spacing[2])

    def index_to_lps(self, kji: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map (…, 3) voxel indices (k, j, i), possibly fractional, to LPS mm."""
        idx = np.asarray(kji, dtype=np.float64)
        return np.asarray(idx @ self.affine[:3, :3].T + self.affine[:3, 3], dtype=np.float64)

    def lps_to_index(self, lps: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map (…, 3) LPS points to fractional (k, j, i) indices."""
        p = np.asarray(lps, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return np.asarray(p @ inv[:3, :3].T + inv[:3, 3], dtype=np.float64)

    def crop(self, region: tuple[slice, slice, slice]) -> Geometry:
        """The geometry of ``array[region]`` (slices with unit step, within bounds)."""
        starts = [r.start or 0 for r in region]
        stops = [
            n if r.stop is None else min(r.stop, n) for r, n in zip(region, self.shape, strict=True)
        ]
        origin = self.index_to_lps(starts)
        return Geometry(
            shape=(stops[0] - starts[0], stops[1] - starts[1], stops[2] - starts[2]),
            origin=(float(origin[0]), float(origin[1]), float(origin[2])),
            row_direction=self.row_direction,
            column_direction=self.column_direction,
            slice_direction=self.slice_direction,
            spacing=self.spacing,
        )

    def slice_position(self, k: int) -> Vec3:
        """ImagePositionPatient of slice ``k`` (centre of its first transmitted voxel)."""
        p = self.index_to_lps([k, 0, 0])
        return (float(p[0]), float(p[1]), float(p[2]))


@dataclass(frozen=True)
class Volume:
    """A scalar volume on a :class:`Geometry`; CT values are Hounsfield units (float32)."""

    array: npt.NDArray[np.float32]
    geometry: Geometry

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != tuple(self.geometry.shape):
            raise ValueError(
                f"array shape {self.array.shape} != geometry shape {self.geometry.shape}"
            )


@dataclass(frozen=True)
class TruthNodule:
    """A nodule whose exact position and size are known (phantom ground truth)."""

    label: int
    center_lps_mm: Vec3
    long_axis_mm: float
    volume_mm3: float
    type: NoduleType
    attached_to: Literal["pleura", "vessel"] | None = None
    #: A calcified (benign-pattern) nodule: present in the image but not to be reported as a
    #: suspicious finding (a finding on it counts as a false positive).
    calcified: bool = False


@dataclass(frozen=True)
class Finding:
    """One thing the model found, measured in patient space."""

    label: int
    center_lps_mm: Vec3
    long_axis_mm: float
    volume_mm3: float
    probability: float
    mean_hu: float
    voxel_count: int
    lung_side: Literal["left", "right"] | None = None
    bbox_kji: tuple[Shape3, Shape3] | None = field(default=None, compare=False)
    #: solid / part-solid / ground-glass (None: the model does not type its findings).
    nodule_type: NoduleType | None = None
    #: Long axis in the axial plane: the largest in-slice diameter over the finding's slices.
    axial_long_axis_mm: float | None = None
    #: Short axis: the largest diameter perpendicular to the axial long axis, same slice.
    short_axis_mm: float | None = None
    #: Part-solid only: long axis of the solid component (Lung-RADS sizes part-solid by it).
    solid_component_long_axis_mm: float | None = None

    @property
    def mean_diameter_mm(self) -> float | None:
        """(axial long axis + short axis) / 2, the size Lung-RADS v2022 uses (one decimal)."""
        if self.axial_long_axis_mm is None or self.short_axis_mm is None:
            return None
        return round((self.axial_long_axis_mm + self.short_axis_mm) / 2.0, 1)


@dataclass(frozen=True)
class CodedTerm:
    """A coded concept as DICOM writes one (PS3.3 8.8): code value, coding scheme designator
    (PS3.16 Table 8-1, e.g. ``"SCT"``) and code meaning. The attribute names are those of
    :class:`pydicom.sr.coding.Code`, which the report encoders make of it."""

    value: str
    scheme_designator: str
    meaning: str

    def same_code(self, other: CodedTerm) -> bool:
        """Same code value and scheme; the meaning is display text and may be worded otherwise."""
        return (self.value, self.scheme_designator) == (other.value, other.scheme_designator)


LUNG = CodedTerm("39607008", "SCT", "Lung")


@dataclass(frozen=True)
class FindingConcept:
    """What a model finds, coded once for every report (declared by the model card's label).

    ``finding`` is the finding type (SR TID 1411 "Finding", SEG Segmented Property Type, FHIR
    Observation.code, HL7 "Finding" OBX), ``category`` its category (SR finding category, SEG
    Segmented Property Category) and ``site`` where it lies (SR finding site, SEG anatomic
    region, FHIR bodySite, HL7 Finding Site). A finding's ``lung_side`` is reported only when
    the site is the lung (:attr:`in_lung`).
    """

    finding: CodedTerm
    category: CodedTerm
    site: CodedTerm

    @property
    def in_lung(self) -> bool:
        """Whether the site is the lung (SCT 39607008), whose findings have a side."""
        return self.site.same_code(LUNG)

    @property
    def site_name(self) -> str:
        """The site in running text: "Lung structure (body structure)" → "lung"."""
        site = re.sub(r"\s*\(.*\)\s*$", "", self.site.meaning).strip().lower()
        return site.removesuffix(" structure")

    def name(self, count: int = 1) -> str:
        """The finding in running text: "lung nodule", or "lung nodules" when ``count`` ≠ 1."""
        noun = self.finding.meaning.strip().lower()
        if count != 1:
            noun += "es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s"
        return f"{self.site_name} {noun}"


LUNG_NODULE = FindingConcept(
    finding=CodedTerm("27925004", "SCT", "Nodule"),
    category=CodedTerm("49755003", "SCT", "Morphologically Abnormal Structure"),
    site=LUNG,
)
"""The concept of PreRead's first model, and of every result stored before results named
theirs; the codes and meanings of :mod:`preread.reports.codes` (pydicom's PS3.16 copy)."""


@dataclass(frozen=True)
class ModelRef:
    """Which model produced a result (recorded in the job, the SR and every report)."""

    id: str
    version: str
    name: str
    sha256: str


# -- follow-up reading (issue 14): priors, matching and growth, Lung-RADS ----------------------

NoduleStatus = Literal["new", "persistent", "resolved"]
VdtBand = Literal["<400", "400-600", ">600"]
ComparisonStatus = Literal["compared", "no-prior", "unavailable", "not-configured"]
PriorRole = Literal["previous", "baseline"]
LungRadsCategory = Literal["0", "1", "2", "3", "4A", "4B", "4X"]


@dataclass(frozen=True)
class PriorStudy:
    """An earlier CT of the same patient that a result was compared with."""

    study_instance_uid: str
    study_date: date
    role: PriorRole  # "previous": the newest prior; "baseline": the earliest
    series_instance_uid: str | None = None  # the series that was read
    model: ModelRef | None = None  # the model that read it


@dataclass(frozen=True)
class NoduleComparison:
    """One nodule followed from a prior to the current study (one-to-one match).

    ``new``: in the current study only; ``persistent``: in both; ``resolved``: in the prior
    only. Volumes in mm³, diameters are Lung-RADS mean diameters (mm, one decimal). The
    volume doubling time is given only for a change of at least 25 % in volume
    (VDT = Δt·ln 2 / ln(V2/V1), days; negative when the nodule shrank).
    """

    status: NoduleStatus
    #: Tracking UID (DICOM 112040) the nodule keeps across studies: the prior's for a
    #: persistent or resolved nodule, the current finding's own for a new one.
    tracking_uid: str
    current_label: int | None  # Finding.label in this result; None when resolved
    prior_label: int | None  # Finding.label in the prior's result; None when new
    prior_study_uid: str | None = None
    prior_center_lps_mm: Vec3 | None = None  # in the prior's own patient coordinates
    days_between: int | None = None
    prior_volume_mm3: float | None = None
    current_volume_mm3: float | None = None
    volume_change_pct: float | None = None
    vdt_days: float | None = None
    vdt_band: VdtBand | None = None
    prior_mean_diameter_mm: float | None = None
    current_mean_diameter_mm: float | None = None
    diameter_change_mm: float | None = None
    #: Baseline (earliest prior) figures when the baseline is another study than the prior
    baseline_study_uid: str | None = None
    baseline_volume_mm3: float | None = None
    baseline_mean_diameter_mm: float | None = None


@dataclass(frozen=True)
class Comparison:
    """The current study against the patient's priors.

    ``compared``: priors found, read and matched; ``no-prior``: the PACS has no earlier CT of
    the patient (this is a baseline exam); ``unavailable``: the priors could not be had now
    (``reason`` says why: PACS down, no grant for the prior, ...) and the reconcile sweep
    retries — unless ``retryable`` is False: the cause is in the studies themselves (no valid
    StudyDate, a prior with no series the model reads, priors that do not register), and
    reading the same study again would give the same answer; ``not-configured``: no PACS to
    ask (``PREREAD_PRIORS_PEER`` unset).
    """

    status: ComparisonStatus
    reason: str | None = None
    prior: PriorStudy | None = None  # the newest prior, compared with
    baseline: PriorStudy | None = None  # the earliest prior, when it is another study
    nodules: tuple[NoduleComparison, ...] = ()
    #: registration of the prior onto the current study: residual (mm) after alignment
    registration_residual_mm: float | None = None
    retryable: bool = True

    def for_label(self, label: int) -> NoduleComparison | None:
        """The comparison row of the current finding ``label`` (None: not compared)."""
        return next((n for n in self.nodules if n.current_label == label), None)


@dataclass(frozen=True)
class LungRadsNodule:
    """Lung-RADS v2022 for one finding: the category (None: not determinable, ``reason``
    says why) and the id of the table rule that fired."""

    label: int
    category: LungRadsCategory | None
    rule: str | None
    reason: str | None = None


@dataclass(frozen=True)
class LungRadsAssessment:
    """Lung-RADS v2022 for one exam: the most suspicious nodule's category, the rule that
    fired, and the management text. ``category`` None: not determinable (``reason``).
    4X is never assigned by PreRead: it is left to the radiologist."""

    category: LungRadsCategory | None
    rule: str | None
    management: str | None
    nodules: tuple[LungRadsNodule, ...] = ()
    reason: str | None = None
    version: str = "v2022"


@dataclass(frozen=True)
class PreReadResult:
    """One AI pre-read of one series of one study by one model version.

    Everything the report encoders need besides the source images: findings in patient
    coordinates, the model that made them and the execution provider that actually ran it.
    """

    study_instance_uid: str
    series_instance_uid: str  # the source series that was read
    frame_of_reference_uid: str
    model: ModelRef
    provider: str
    findings: tuple[Finding, ...]
    created: datetime
    #: What the findings are (the card's label): the codes every report uses.
    concept: FindingConcept = LUNG_NODULE
    #: The comparison with the patient's priors (None: not part of this reading)
    comparison: Comparison | None = None
    #: Lung-RADS v2022 (None: not a screening exam or not a lung-nodule model)
    lung_rads: LungRadsAssessment | None = None
