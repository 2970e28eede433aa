"""The PreRead JSON: one result as plain data for hospital systems and the web worklist.

:class:`PreReadOut` is the response model (FastAPI can use it as ``response_model``);
:func:`to_json` gives its JSON-ready dict. Tracking UIDs are those of the SEG segments and
SR measurement groups of the same result (:func:`preread.reports.uids.tracking_uid`), so a
finding can be followed from the JSON into the viewer. ``concept`` says, in codes, what the
findings are (the SR's finding type, category and site).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from preread.domain import (
    LUNG_NODULE,
    CodedTerm,
    FindingConcept,
    LungRadsCategory,
    NoduleType,
    PreReadResult,
    PriorStudy,
)
from preread.reports.uids import tracking_id, tracking_uid

__all__ = [
    "CodeOut",
    "ComparisonOut",
    "ConceptOut",
    "FindingOut",
    "LungRadsNoduleOut",
    "LungRadsOut",
    "ModelOut",
    "NoduleComparisonOut",
    "PreReadOut",
    "PriorStudyOut",
    "comparison_out",
    "to_json",
    "to_model",
]


class ModelOut(BaseModel):
    """The model version that made the result."""

    model_config = ConfigDict(frozen=True)

    id: str
    version: str
    name: str
    sha256: str


class CodeOut(BaseModel):
    """A coded concept: code value, coding scheme designator (PS3.16 Table 8-1) and meaning."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="Code value, e.g. 27925004")
    scheme: str = Field(description="Coding scheme designator, e.g. SCT (SNOMED CT)")
    meaning: str

    @classmethod
    def of(cls, term: CodedTerm) -> CodeOut:
        return cls(code=term.value, scheme=term.scheme_designator, meaning=term.meaning)

    def term(self) -> CodedTerm:
        return CodedTerm(self.code, self.scheme, self.meaning)


class ConceptOut(BaseModel):
    """What the model finds, as the SR, SEG, FHIR and HL7 reports code it (its model card's)."""

    model_config = ConfigDict(frozen=True)

    finding: CodeOut = Field(description="Finding type, e.g. SCT 27925004 Nodule")
    category: CodeOut = Field(description="Its category, e.g. SCT 49755003")
    site: CodeOut = Field(description="Where it lies, e.g. SCT 39607008 Lung")

    @classmethod
    def of(cls, concept: FindingConcept) -> ConceptOut:
        return cls(
            finding=CodeOut.of(concept.finding),
            category=CodeOut.of(concept.category),
            site=CodeOut.of(concept.site),
        )

    def finding_concept(self) -> FindingConcept:
        return FindingConcept(self.finding.term(), self.category.term(), self.site.term())


class FindingOut(BaseModel):
    """One finding of the model (what :class:`ConceptOut` says: a nodule, for the lung-nodule
    model); coordinates in DICOM patient space (LPS, mm).

    The nodule type and the Lung-RADS sizes are null when the model does not give them (models
    before 2.0.0); a result stored without these fields reads back with them null.
    """

    model_config = ConfigDict(frozen=True)

    label: int = Field(
        description="Finding label; segment 'Nodule <label>' (plus the type, if given) in the SEG"
    )
    tracking_id: str
    tracking_uid: str = Field(description="Tracking UID shared with the SEG and the SR")
    center_lps_mm: tuple[float, float, float]
    long_axis_mm: float = Field(description="Maximal 3-D diameter")
    volume_mm3: float
    probability: float = Field(ge=0.0, le=1.0)
    mean_hu: float
    lung_side: Literal["left", "right"] | None
    nodule_type: NoduleType | None = Field(
        default=None, description="solid, part-solid or ground-glass; null: not typed"
    )
    axial_long_axis_mm: float | None = Field(
        default=None, description="Long axis in the axial plane (largest in-slice diameter)"
    )
    short_axis_mm: float | None = Field(
        default=None,
        description="Largest diameter perpendicular to the axial long axis, same slice",
    )
    mean_diameter_mm: float | None = Field(
        default=None,
        description="Lung-RADS mean diameter: (axial long axis + short axis) / 2, to 0.1 mm",
    )
    solid_component_long_axis_mm: float | None = Field(
        default=None, description="Part-solid nodules: long axis of the solid component"
    )


class PriorStudyOut(BaseModel):
    """An earlier CT of the patient that the result was compared with."""

    model_config = ConfigDict(frozen=True)

    study_instance_uid: str
    study_date: date
    role: Literal["previous", "baseline"]


class NoduleComparisonOut(BaseModel):
    """One nodule from the prior to this study: ``new`` (this study only), ``persistent``
    (both; same tracking UID), ``resolved`` (the prior only). Volumes mm³, Lung-RADS mean
    diameters mm; the doubling time only for a volume change of at least 25 %."""

    model_config = ConfigDict(frozen=True)

    status: Literal["new", "persistent", "resolved"]
    tracking_uid: str = Field(description="The nodule's Tracking UID across the studies")
    label: int | None = Field(description="FindingOut.label here; null when resolved")
    prior_label: int | None
    prior_study_uid: str | None = None
    prior_center_lps_mm: tuple[float, float, float] | None = None
    days_between: int | None = None
    prior_volume_mm3: float | None = None
    volume_mm3: float | None = None
    volume_change_pct: float | None = None
    vdt_days: float | None = Field(default=None, description="Volume doubling time, days")
    vdt_band: Literal["<400", "400-600", ">600"] | None = None
    prior_mean_diameter_mm: float | None = None
    mean_diameter_mm: float | None = None
    diameter_change_mm: float | None = None
    baseline_study_uid: str | None = None
    baseline_volume_mm3: float | None = None
    baseline_mean_diameter_mm: float | None = None


class ComparisonOut(BaseModel):
    """This study against the patient's priors (``unavailable``: with the reason; the
    reconcile sweep tries again)."""

    model_config = ConfigDict(frozen=True)

    status: Literal["compared", "no-prior", "unavailable", "not-configured"]
    reason: str | None = None
    prior: PriorStudyOut | None = None
    baseline: PriorStudyOut | None = None
    registration_residual_mm: float | None = None
    retryable: bool | None = Field(
        default=None,
        description="unavailable only: whether PreRead reads the study again for it (false: the "
        "cause is in the studies, e.g. no valid StudyDate; reading again gives the same answer)",
    )
    nodules: list[NoduleComparisonOut] = []


class LungRadsNoduleOut(BaseModel):
    """One finding's Lung-RADS v2022 category (null: not determinable, ``reason`` says why)."""

    model_config = ConfigDict(frozen=True)

    label: int = Field(description="The finding's label (FindingOut.label)")
    tracking_uid: str = Field(description="The finding's Tracking UID (FindingOut)")
    category: LungRadsCategory | None
    rule: str | None = Field(description="Id of the v2022 table row that fired")
    reason: str | None = Field(default=None, description="The inputs, or why not determinable")


class LungRadsOut(BaseModel):
    """Lung-RADS v2022 of the exam: the most suspicious nodule's category and its management.
    PreRead never assigns 4X (features that raise suspicion): that is the radiologist's."""

    model_config = ConfigDict(frozen=True)

    version: str = "v2022"
    category: LungRadsCategory | None = Field(
        description="0, 1, 2, 3, 4A, 4B; null: not determinable"
    )
    rule: str | None
    management: str | None
    reason: str | None = None
    nodules: list[LungRadsNoduleOut] = []


class PreReadOut(BaseModel):
    """One AI pre-read of one series: always AI-generated and preliminary."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    model: ModelOut
    provider: str = Field(description="ONNX Runtime execution provider that ran the model")
    created: datetime
    concept: ConceptOut = Field(
        default_factory=lambda: ConceptOut.of(LUNG_NODULE),
        description="What the findings are; results stored without it are lung nodules",
    )
    ai_generated: Literal[True] = True
    status: Literal["preliminary"] = "preliminary"
    findings: list[FindingOut]
    comparison: ComparisonOut | None = Field(
        default=None, description="The comparison with the patient's priors; null: not made"
    )
    lung_rads: LungRadsOut | None = Field(
        default=None,
        description="Lung-RADS v2022 (screening exams: PREREAD_LUNG_RADS); null: not assessed",
    )


def _prior(study: PriorStudy | None) -> PriorStudyOut | None:
    if study is None:
        return None
    return PriorStudyOut(
        study_instance_uid=study.study_instance_uid, study_date=study.study_date, role=study.role
    )


def comparison_out(result: PreReadResult) -> ComparisonOut | None:
    """The result's comparison with the priors as the response model (None: not made)."""
    c = result.comparison
    if c is None:
        return None
    return ComparisonOut(
        status=c.status,
        reason=c.reason,
        prior=_prior(c.prior),
        baseline=_prior(c.baseline),
        registration_residual_mm=c.registration_residual_mm,
        retryable=c.retryable if c.status == "unavailable" else None,
        nodules=[
            NoduleComparisonOut(
                status=n.status,
                tracking_uid=n.tracking_uid,
                label=n.current_label,
                prior_label=n.prior_label,
                prior_study_uid=n.prior_study_uid,
                prior_center_lps_mm=n.prior_center_lps_mm,
                days_between=n.days_between,
                prior_volume_mm3=n.prior_volume_mm3,
                volume_mm3=n.current_volume_mm3,
                volume_change_pct=n.volume_change_pct,
                vdt_days=n.vdt_days,
                vdt_band=n.vdt_band,
                prior_mean_diameter_mm=n.prior_mean_diameter_mm,
                mean_diameter_mm=n.current_mean_diameter_mm,
                diameter_change_mm=n.diameter_change_mm,
                baseline_study_uid=n.baseline_study_uid,
                baseline_volume_mm3=n.baseline_volume_mm3,
                baseline_mean_diameter_mm=n.baseline_mean_diameter_mm,
            )
            for n in c.nodules
        ],
    )


def _lung_rads(result: PreReadResult, uids: dict[int, str]) -> LungRadsOut | None:
    a = result.lung_rads
    if a is None:
        return None
    return LungRadsOut(
        version=a.version,
        category=a.category,
        rule=a.rule,
        management=a.management,
        reason=a.reason,
        nodules=[
            LungRadsNoduleOut(
                label=n.label,
                tracking_uid=uids[n.label],
                category=n.category,
                rule=n.rule,
                reason=n.reason,
            )
            for n in a.nodules
        ],
    )


def to_model(result: PreReadResult, *, uid_seed: str | None = None) -> PreReadOut:
    """``result`` as the response model (``uid_seed`` as given to the SEG and SR encoders)."""
    uids = {f.label: str(tracking_uid(result, f, uid_seed=uid_seed)) for f in result.findings}
    return PreReadOut(
        study_instance_uid=result.study_instance_uid,
        series_instance_uid=result.series_instance_uid,
        frame_of_reference_uid=result.frame_of_reference_uid,
        model=ModelOut(
            id=result.model.id,
            version=result.model.version,
            name=result.model.name,
            sha256=result.model.sha256,
        ),
        provider=result.provider,
        created=result.created,
        concept=ConceptOut.of(result.concept),
        findings=[
            FindingOut(
                label=f.label,
                tracking_id=tracking_id(f, result.concept),
                tracking_uid=uids[f.label],
                center_lps_mm=f.center_lps_mm,
                long_axis_mm=f.long_axis_mm,
                volume_mm3=f.volume_mm3,
                probability=f.probability,
                mean_hu=f.mean_hu,
                lung_side=f.lung_side,
                nodule_type=f.nodule_type,
                axial_long_axis_mm=f.axial_long_axis_mm,
                short_axis_mm=f.short_axis_mm,
                mean_diameter_mm=f.mean_diameter_mm,
                solid_component_long_axis_mm=f.solid_component_long_axis_mm,
            )
            for f in sorted(result.findings, key=lambda f: f.label)
        ],
        comparison=comparison_out(result),
        lung_rads=_lung_rads(result, uids),
    )


def to_json(result: PreReadResult, *, uid_seed: str | None = None) -> dict[str, Any]:
    """The PreRead JSON of ``result`` (``created`` as ISO 8601), ready for ``json.dumps``."""
    return to_model(result, uid_seed=uid_seed).model_dump(mode="json")
