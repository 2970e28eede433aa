"""The discrepancy list as JSON (:class:`DiscrepancyListOut`) or a FHIR R4 Bundle — pure.

JSON: ``counts`` of the tenant's reports (compared, not matched to a study yet, awaiting the
AI's reading, with discrepancies) and one item per compared report that has discrepancies,
the latest received first: the exam (accession number, Study Instance UID), the report
(id, version, when received, its summary), the AI's reading (job, model) and the
discrepancies, each with a sentence and the AI finding and report mention involved.

FHIR (:func:`to_fhir_bundle`): a ``collection`` Bundle of ``DetectedIssue`` resources (FHIR
R4B models from ``fhir.resources.R4B``, validated as they are built; R4B changed nothing in
DetectedIssue since R4), one per discrepancy: ``status`` preliminary (a machine's comparison,
not reviewed), ``code`` the kind (system ``urn:preread:discrepancy``: ``ai-only``,
``report-only``, ``size``), ``severity`` moderate (a nodule of 6 mm or more on one side only)
or low (sizes), ``detail`` the sentence, ``implicated`` the study (``ImagingStudy`` by its
Study Instance UID, ``urn:dicom:uid``) and the report (``DiagnosticReport`` by its accession
number, identifier type ACSN), ``author`` PreRead. ``fullUrl``: ``urn:uuid:`` of a uuid5 of
the report, its version and the discrepancy's place, so the same list gives the same Bundle.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Literal

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.reference import Reference
from pydantic import BaseModel

from preread.finalreports.discrepancies import AiFinding, Discrepancy, DiscrepancyKind
from preread.finalreports.fhir import ACCESSION_SYSTEM, ACCESSION_TYPE
from preread.finalreports.mentions import NoduleMention, ReportSummary
from preread.finalreports.worklist import ComparisonState, StudyComparison

__all__ = [
    "DiscrepancyListOut",
    "finding_out",
    "mention_out",
    "summary_out",
    "to_fhir_bundle",
    "to_list",
]

DISCREPANCY_SYSTEM = "urn:preread:discrepancy"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:preread:discrepancy:v1")
_DISPLAY = {
    DiscrepancyKind.AI_ONLY: "AI finding of 6 mm or more not in the final report",
    DiscrepancyKind.REPORT_ONLY: "Final report's nodule of 6 mm or more not found by the AI",
    DiscrepancyKind.SIZE: "Nodule size disagrees between the final report and the AI",
}


class AiFindingOut(BaseModel):
    label: int
    long_axis_mm: float
    nodule_type: str | None
    lung_side: str | None
    center_lps_mm: tuple[float, float, float] | None


class MentionOut(BaseModel):
    kind: str
    size_mm: float | None
    size_bound: str
    nodule_type: str | None
    calcified: bool
    side: str | None
    lobe: str | None
    plural: bool


class DiscrepancyOut(BaseModel):
    kind: Literal["ai-only", "report-only", "size"]
    description: str
    ai: AiFindingOut | None
    report: MentionOut | None


class ReportSummaryOut(BaseModel):
    nodules: int
    largest_mm: float | None
    nodule_ge6mm: bool


class ComparisonOut(BaseModel):
    accession_number: str
    study_instance_uid: str | None
    final_report_id: str
    report_version: int
    received_at: dt.datetime
    state: Literal["compared", "unmatched", "awaiting-ai"]
    job_id: str | None
    model: str | None
    report_summary: ReportSummaryOut
    discrepancies: list[DiscrepancyOut]


class CountsOut(BaseModel):
    reports: int
    compared: int
    unmatched: int
    awaiting_ai: int
    with_discrepancies: int
    discrepancies: int


class DiscrepancyListOut(BaseModel):
    """The tenant's discrepancy list (the module docstring)."""

    tenant: str
    generated_at: dt.datetime
    counts: CountsOut
    items: list[ComparisonOut]


def finding_out(a: AiFinding) -> AiFindingOut:
    return AiFindingOut(
        label=a.label,
        long_axis_mm=a.long_axis_mm,
        nodule_type=a.nodule_type,
        lung_side=a.lung_side,
        center_lps_mm=a.center_lps_mm,
    )


def mention_out(m: NoduleMention) -> MentionOut:
    return MentionOut(
        kind=m.kind,
        size_mm=m.size_mm,
        size_bound=m.size_bound,
        nodule_type=None if m.nodule_type is None else m.nodule_type.value,
        calcified=m.calcified,
        side=m.side,
        lobe=m.lobe,
        plural=m.plural,
    )


def summary_out(s: ReportSummary) -> ReportSummaryOut:
    return ReportSummaryOut(nodules=s.count, largest_mm=s.largest_mm, nodule_ge6mm=s.nodule_ge6mm)


def _item(c: StudyComparison) -> ComparisonOut:
    r = c.report
    return ComparisonOut(
        accession_number=r.accession_number,
        study_instance_uid=r.study_instance_uid,
        final_report_id=r.id,
        report_version=r.version,
        received_at=r.received_at,
        state=c.state.value,
        job_id=None if c.job is None else c.job.id,
        model=c.model,
        report_summary=summary_out(r.summary),
        discrepancies=[
            DiscrepancyOut(
                kind=d.kind.value,
                description=d.description,
                ai=None if d.ai is None else finding_out(d.ai),
                report=None if d.report is None else mention_out(d.report),
            )
            for d in c.discrepancies
        ],
    )


def to_list(
    tenant: str, comparisons: Sequence[StudyComparison], *, generated_at: dt.datetime
) -> DiscrepancyListOut:
    """The JSON list of ``tenant``'s ``comparisons`` (only those with discrepancies listed)."""

    def count(state: ComparisonState) -> int:
        return sum(1 for c in comparisons if c.state is state)

    listed = [c for c in comparisons if c.discrepancies]
    return DiscrepancyListOut(
        tenant=tenant,
        generated_at=generated_at,
        counts=CountsOut(
            reports=len(comparisons),
            compared=count(ComparisonState.COMPARED),
            unmatched=count(ComparisonState.UNMATCHED),
            awaiting_ai=count(ComparisonState.AWAITING_AI),
            with_discrepancies=len(listed),
            discrepancies=sum(len(c.discrepancies) for c in listed),
        ),
        items=[_item(c) for c in listed],
    )


def _issue(c: StudyComparison, n: int, d: Discrepancy, at: dt.datetime) -> BundleEntry:
    r = c.report
    key = f"{r.tenant}\x00{r.id}\x00{r.version}\x00{n}"
    implicated = [
        Reference(
            type="DiagnosticReport",
            identifier=Identifier(
                type=CodeableConcept(coding=[Coding(system=ACCESSION_SYSTEM, code=ACCESSION_TYPE)]),
                value=r.accession_number,
            ),
        )
    ]
    if r.study_instance_uid is not None:
        implicated.insert(
            0,
            Reference(
                type="ImagingStudy",
                identifier=Identifier(
                    system="urn:dicom:uid", value=f"urn:oid:{r.study_instance_uid}"
                ),
            ),
        )
    issue = DetectedIssue(
        status="preliminary",
        code=CodeableConcept(
            coding=[Coding(system=DISCREPANCY_SYSTEM, code=d.kind.value, display=_DISPLAY[d.kind])],
            text=_DISPLAY[d.kind],
        ),
        severity="low" if d.kind is DiscrepancyKind.SIZE else "moderate",
        identifiedDateTime=at,
        author=Reference(display="PreRead"),
        implicated=implicated,
        detail=d.description,
    )
    return BundleEntry(fullUrl=f"urn:uuid:{uuid.uuid5(_NAMESPACE, key)}", resource=issue)


def to_fhir_bundle(comparisons: Sequence[StudyComparison], *, generated_at: dt.datetime) -> str:
    """The discrepancies as a FHIR R4 ``collection`` Bundle of DetectedIssues (JSON).

    Raises:
        ValueError: ``generated_at`` has no timezone.
        pydantic.ValidationError: a resource FHIR does not accept (a programming error).
    """
    if generated_at.tzinfo is None or generated_at.utcoffset() is None:
        raise ValueError("generated_at must be timezone-aware")
    at = generated_at.astimezone(dt.UTC)
    entries = [_issue(c, n, d, at) for c in comparisons for n, d in enumerate(c.discrepancies)]
    return Bundle(type="collection", timestamp=at, entry=entries or None).model_dump_json()
