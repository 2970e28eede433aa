"""The radiologist's review in the FHIR R4B Bundle (:mod:`preread.reports.fhir`).

When the reading was reviewed (:attr:`ReportInput.review`), the Bundle gains:

=================================  ===========================================================
review                             FHIR
=================================  ===========================================================
the reviewer                       Practitioner: name (text), identifier
                                   ``urn:preread:tenant:<tenant>:user`` = user id;
                                   DiagnosticReport.resultsInterpreter → it (R4B's element for
                                   "who interpreted the results"); the report's status stays
                                   ``preliminary``: the final report is the hospital's
signed at, version, supersedes     Provenance: target = the report and every Observation the
                                   review speaks of, recorded = signed at, agent type
                                   ``verifier`` (provenance-participant-type) = the
                                   Practitioner, activity text "review version n", entity
                                   ``revision`` of the superseded review (``urn:preread:review``)
each AI finding's verdict          its Observation: component 99PRERD REVIEW-ASSESSMENT =
                                   ACCEPTED / REJECTED / MODIFIED (the SR's codes), a rejection's
                                   component REJECTION-REASON = SCT 59820001 vessel, … (text:
                                   the reader's words), and a note with the verdict in words
a correction                       a reader's Observation of the same finding: performer the
                                   Practitioner, derivedFrom the AI's Observation, components
                                   with the corrected type / axial long / short axis (the AI
                                   SR's codes), in DiagnosticReport.result
an added nodule                    a reader's Observation: performer the Practitioner, tracking
                                   UID/ID, the sizes, volume, mean HU, centre and type as for
                                   an AI finding, component REVIEW-ASSESSMENT = ADDED, meta tag
                                   v3-ObservationValue CLINAST (clinician asserted) instead of
                                   AIAST, in DiagnosticReport.result
=================================  ===========================================================

Why components and not ``Observation.interpretation``: R4B binds interpretation to
v3-ObservationInterpretation (high / low / abnormal, susceptibility), which says how a value
compares with a reference, not whether a person confirmed the observation; a component carries
the SR's own coded name and value, so the verdict reads the same in the SR, HL7 and FHIR.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.provenance import Provenance, ProvenanceAgent, ProvenanceEntity
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from pydicom.sr.codedict import codes as dicom
from pydicom.sr.coding import Code

from preread.domain import CodedTerm, FindingConcept, NoduleType
from preread.reports import codes, review_codes
from preread.reports import fhir as base  # fhir imports this module only when it renders
from preread.reports.context import ReportInput
from preread.reports.review import AddedOut, AssessmentOut, ReviewOut

__all__ = ["review_resources"]

_THO = "http://terminology.hl7.org/CodeSystem/"
_CLINICIAN_TAG = (_THO + "v3-ObservationValue", "CLINAST", "clinician asserted")
_VERIFIER = (_THO + "provenance-participant-type", "verifier", "Verifier")
_IMAGING = (_THO + "observation-category", "imaging", "Imaging")


def review_resources(
    report: ReportInput,
    diagnostic: DiagnosticReport,
    observations: Sequence[Observation],
) -> list[Practitioner | Observation | Provenance]:
    """Fold ``report.review`` into ``diagnostic`` and the AI finding ``observations`` (in
    place) and return the resources it adds (see the module docstring)."""
    review = report.review
    assert review is not None
    concept = report.preread.concept.finding_concept()
    practitioner = Practitioner(
        id=base._uuid(report, f"practitioner {review.reviewer.id}"),
        identifier=[
            Identifier(
                system=base._tenant_system(report.study.tenant, "user"), value=review.reviewer.id
            )
        ],
        name=[HumanName(text=review.reviewer.name)],
    )
    who = Reference(
        reference=f"urn:uuid:{practitioner.id}", type="Practitioner", display=review.reviewer.name
    )
    by_uid = {_tracking_uid(o): o for o in observations}
    verdicts = {a.tracking_uid: a for a in review.assessments}
    reader: list[Observation] = []
    for uid, observation in by_uid.items():
        a = verdicts.get(uid)
        if a is None:
            continue
        observation.component = [*(observation.component or []), *_verdict(a)]
        observation.note = [*(observation.note or []), Annotation(text=_note(review, a))]
        if a.assessment == "modified":
            reader.append(_correction(report, review, a, observation, who, concept))
    for added in review.added:
        reader.append(_added(report, review, added, who, concept))
    diagnostic.resultsInterpreter = [who]
    diagnostic.result = [
        *(diagnostic.result or []),
        *(Reference(reference=f"urn:uuid:{o.id}", type="Observation") for o in reader),
    ]
    diagnostic.conclusion = f"{diagnostic.conclusion} {_summary(review)}"
    targets = [diagnostic, *(by_uid[u] for u in by_uid if u in verdicts), *reader]
    provenance = Provenance(
        id=base._uuid(report, f"provenance {review.id}"),
        target=[Reference(reference=f"urn:uuid:{r.id}", type=type(r).__name__) for r in targets],
        recorded=review.signed_at,
        activity=CodeableConcept(text=f"review version {review.version}"),
        agent=[ProvenanceAgent(type=base._hl7(_VERIFIER), who=who)],
        entity=(
            None
            if review.supersedes is None
            else [
                ProvenanceEntity(
                    role="revision",
                    what=Reference(
                        identifier=Identifier(system="urn:preread:review", value=review.supersedes),
                        display="the review this one supersedes",
                    ),
                )
            ]
        ),
    )
    return [practitioner, *reader, provenance]


def _tracking_uid(observation: Observation) -> str:
    for identifier in observation.identifier or []:
        value = identifier.value or ""
        if identifier.system == "urn:dicom:uid" and value.startswith("urn:oid:"):
            return value.removeprefix("urn:oid:")
    return ""


def _code(concept: Code | CodedTerm, text: str | None = None) -> CodeableConcept:
    return base._concept(concept, text=text)


def _verdict(a: AssessmentOut) -> list[ObservationComponent]:
    out = [
        ObservationComponent(
            code=_code(review_codes.ASSESSMENT),
            valueCodeableConcept=_code(review_codes.ASSESSMENTS[a.assessment], text=a.assessment),
        )
    ]
    if a.reason is not None:
        out.append(
            ObservationComponent(
                code=_code(review_codes.REJECTION_REASON),
                valueCodeableConcept=_code(
                    review_codes.REJECTION_REASONS[a.reason], text=a.reason_text or a.reason
                ),
            )
        )
    return out


def _note(review: ReviewOut, a: AssessmentOut) -> str:
    by = f"{review.reviewer.name} on {review.signed_at:%Y-%m-%d %H:%M} UTC"
    if a.assessment == "rejected":
        why = a.reason_text if a.reason == "other" else a.reason
        extra = f" ({a.reason_text})" if a.reason_text and a.reason != "other" else ""
        return f"Rejected by {by}: {why}{extra}."
    if a.assessment == "modified":
        return f"Corrected by {by}: see the reader's observation of this finding."
    return f"Accepted by {by}."


def _summary(review: ReviewOut) -> str:
    counts = {k: sum(1 for a in review.assessments if a.assessment == k) for k in
              ("accepted", "rejected", "modified")}  # fmt: skip
    return (
        f"Reviewed by {review.reviewer.name} on {review.signed_at:%Y-%m-%d %H:%M} UTC (review "
        f"version {review.version}): {counts['accepted']} accepted, {counts['rejected']} "
        f"rejected, {counts['modified']} corrected, {len(review.added)} added by the reader."
    )


def _mm(code: Code, text: str, value: float) -> ObservationComponent:
    return ObservationComponent(
        code=_code(code, text=text),
        valueQuantity=Quantity(
            value=Decimal(str(round(value, 2))),
            unit="mm",
            system="http://unitsofmeasure.org",
            code=codes.MILLIMETER.value,
        ),
    )


def _type(kind: NoduleType) -> ObservationComponent:
    return ObservationComponent(
        code=_code(codes.NODULE_TYPE, text="Nodule type"),
        valueCodeableConcept=_code(codes.NODULE_TYPES[kind], text=kind),
    )


def _reader_observation(
    report: ReportInput,
    role: str,
    who: Reference,
    concept: FindingConcept,
    components: list[ObservationComponent],
    note: str,
    identifiers: list[Identifier] | None = None,
    derived_from: Observation | None = None,
) -> Observation:
    return Observation(
        id=base._uuid(report, role),
        meta=Meta(tag=base._hl7(_CLINICIAN_TAG).coding),
        identifier=identifiers,
        status="preliminary",
        category=[base._hl7(_IMAGING)],
        code=_code(concept.finding),
        subject=base._subject(report.study),
        effectiveDateTime=base._effective(report),  # type: ignore[arg-type]  # a date, as there
        issued=report.review.signed_at if report.review else None,
        performer=[who],
        bodySite=_code(concept.site),
        derivedFrom=(
            None
            if derived_from is None
            else [Reference(reference=f"urn:uuid:{derived_from.id}", type="Observation")]
        ),
        note=[Annotation(text=note)],
        component=components,
    )


def _correction(
    report: ReportInput,
    review: ReviewOut,
    a: AssessmentOut,
    ai: Observation,
    who: Reference,
    concept: FindingConcept,
) -> Observation:
    components = [
        ObservationComponent(
            code=_code(review_codes.ASSESSMENT),
            valueCodeableConcept=_code(review_codes.ASSESSMENTS["modified"], text="modified"),
        )
    ]
    if a.nodule_type is not None:
        components.append(_type(a.nodule_type))
    if a.axial_long_axis_mm is not None:
        components.append(_mm(codes.AXIAL_LONG_AXIS, "Axial long axis", a.axial_long_axis_mm))
    if a.short_axis_mm is not None:
        components.append(_mm(codes.SHORT_AXIS, "Short axis", a.short_axis_mm))
    return _reader_observation(
        report,
        f"correction {review.id} {a.tracking_uid}",
        who,
        concept,
        components,
        f"AI finding {a.label} as corrected by {review.reviewer.name}.",
        derived_from=ai,
    )


def _added(
    report: ReportInput, review: ReviewOut, n: AddedOut, who: Reference, concept: FindingConcept
) -> Observation:
    x, y, z = n.center_lps_mm
    components = [
        ObservationComponent(
            code=_code(review_codes.ASSESSMENT),
            valueCodeableConcept=_code(review_codes.ASSESSMENTS["added"], text="added"),
        ),
        _mm(codes.AXIAL_LONG_AXIS, "Axial long axis", n.axial_long_axis_mm),
        _mm(codes.SHORT_AXIS, "Short axis", n.short_axis_mm),
        _mm(codes.MEAN_DIAMETER, "Mean diameter (Lung-RADS)", n.mean_diameter_mm),
        _mm(codes.LONG_AXIS, "Long axis diameter", n.long_axis_mm),
        base._quantity(_code(codes.VOLUME), round(n.volume_mm3, 1), "mm3", codes.CUBIC_MILLIMETER),
        base._quantity(
            _code(codes.MEAN_ATTENUATION, text="Mean attenuation"),
            round(n.mean_hu, 1),
            "HU",
            codes.HOUNSFIELD_UNIT,
        ),
        ObservationComponent(
            code=CodeableConcept(text="Center (DICOM patient LPS, mm)"),
            valueString=f"{x:.2f}, {y:.2f}, {z:.2f}",
        ),
        _type(n.nodule_type),
    ]
    if n.solid_component_long_axis_mm is not None:
        components.append(
            _mm(
                codes.SOLID_COMPONENT_LONG_AXIS,
                "Solid component long axis",
                n.solid_component_long_axis_mm,
            )
        )
    identifiers = [
        Identifier(
            type=CodeableConcept(
                coding=[
                    Coding(
                        system=base._SYSTEMS["DCM"],
                        code=dicom.DCM.TrackingUniqueIdentifier.value,
                        display=dicom.DCM.TrackingUniqueIdentifier.meaning,
                    )
                ]
            ),
            system="urn:dicom:uid",
            value=f"urn:oid:{n.tracking_uid}",
        ),
        Identifier(type=_code(dicom.DCM.TrackingIdentifier), value=n.tracking_id),
    ]
    return _reader_observation(
        report,
        f"added {review.id} {n.number}",
        who,
        concept,
        components,
        f"{n.tracking_id}: added by {review.reviewer.name} (reader-placed; its extent refined "
        "from the pixels around the reader's click).",
        identifiers=identifiers,
    )
