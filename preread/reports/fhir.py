"""The PreRead as a FHIR R4B (4.3.0) Bundle, for hospital systems that speak FHIR.

FHIR version: **R4B, 4.3.0** (models from ``fhir.resources.R4B``). Hospital FHIR endpoints
(EHR vendors, HAPI, US Core and IHE profiles) speak R4; R4B changed nothing in the three
resources used here (DiagnosticReport, Observation, Device are those of R4 4.0.1), so an R4
server accepts the bundle as it is. R5 would not do: it renamed ``DiagnosticReport.imagingStudy``
to ``study`` and ``Device.deviceName`` to ``name`` (fhir.resources' default models are R5).
A resource cannot state its own FHIR version (so nothing in the bundle does); an HTTP sender
states it in the media type, ``application/fhir+json; fhirVersion=4.3``
(http://hl7.org/fhir/R4B/versioning.html).

One :class:`~preread.reports.context.ReportInput` becomes one ``collection`` Bundle:

===================================  ======================================================
PreRead                              FHIR
===================================  ======================================================
job id                               Bundle.identifier (urn:uuid), DiagnosticReport
                                     .identifier (``urn:preread:job``), seed of every uuid
finished_at (UTC)                    Bundle.timestamp, DiagnosticReport/Observation.issued
study date (DA)                      DiagnosticReport/Observation.effectiveDateTime, the date
                                     alone: a dateTime with a time needs a zone, DICOM has none
patient id + issuer, name (PN)       subject: Reference.identifier (``urn:oid:<issuer>``, else
                                     ``urn:preread:tenant:<tenant>:patient-id``) and display
                                     "Given Family"; no Patient resource
Study Instance UID                   DiagnosticReport.imagingStudy: Reference.identifier
                                     ``urn:dicom:uid`` / ``urn:oid:<uid>``
accession number                     DiagnosticReport.identifier, type v2-0203 ACSN
the result                           DiagnosticReport: preliminary, RAD, LOINC 24627-2
                                     "CT Chest", conclusion, conclusionCode: the finding
                                     type of the result's concept (SCT 27925004 Nodule)
model (id, name, version, sha256,    Device: identifier (model id, the SR's Device Observer
provider)                            UID), deviceName (model-name), version (+ "sha256"),
                                     manufacturer "PreRead", property "execution provider"
each finding                         Observation: preliminary, imaging, the concept's finding
                                     type (SCT 27925004 Nodule), bodySite its site (SCT
                                     left/right lung when the site is the lung and the side
                                     known, else the site: lung), device
long axis / volume / mean HU /       Observation.component: SCT 103339001 mm, SCT 118565006
probability / centre                 mm3, DCM 112031 [hnsf'U], DCM 111012 %, text "x, y, z"
Lung-RADS sizes, when given          Observation.component, mm: 99PRERD AXIAL-LONG-AXIS, SCT
                                     103340004 short axis, RadLex RID50155 mean diameter,
                                     99PRERD SOLID-LONG-AXIS (system ``urn:preread:codes``)
nodule type, when given              Observation.component: RadLex RID46010, value RadLex
                                     RID50151 / RID50152 / RID50153 (system http://radlex.org)
Lung-RADS v2022, when assessed      per finding: Observation.component 99PRERD LUNG-RADS with
                                     a 99PRERD LUNG-RADS-<category> value (absent: the reason);
                                     the exam: an Observation of its own (value the category,
                                     or dataAbsentReason with the reason; the management in a
                                     note; derivedFrom the findings), in DiagnosticReport.result
                                     and at the end of the conclusion
tracking UID / tracking id           Observation.identifier, typed DCM 112040 / 112039
AI-generated                         meta.tag v3-ObservationValue AIAST on every resource,
                                     Observation.note; status preliminary everywhere
the radiologist's review, if any     resultsInterpreter (a Practitioner), a Provenance, each
                                     finding's verdict as components, the reader's own
                                     Observations (:mod:`preread.reports.fhir_review`)
===================================  ======================================================

Codes are those of the SR (:mod:`preread.reports.codes`), with the FHIR URI of each coding
scheme; values are rounded as in the SR. The Device is not the report's ``performer`` (R4B
allows no Device there); the Observations name it. Every ``fullUrl`` is ``urn:uuid:`` of a
uuid5 of the job id and the resource's role, so the same report renders byte-identically.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Protocol
from urllib.parse import quote

from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device, DeviceDeviceName, DeviceProperty, DeviceVersion
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.domainresource import DomainResource
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.sr.coding import Code

from preread.domain import FindingConcept, ModelRef
from preread.reports import codes
from preread.reports.context import ReportInput, ReportStudy
from preread.reports.errors import ReportError
from preread.reports.followup_text import comparison_sentence, nodule_sentence
from preread.reports.json import FindingOut, LungRadsOut, NoduleComparisonOut
from preread.reports.series import AI_NOTICE, MANUFACTURER
from preread.reports.uids import device_uid

__all__ = ["FHIR_JSON", "FHIR_VERSION", "fhir_json", "to_fhir_bundle"]

FHIR_VERSION = "4.3.0"
FHIR_JSON = "application/fhir+json"

_SYSTEMS = {  # DICOM coding scheme designator → FHIR code system URI
    "SCT": "http://snomed.info/sct",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "LN": "http://loinc.org",
    "UCUM": "http://unitsofmeasure.org",
    codes.RADLEX: "http://radlex.org",  # THO's RadLex (OID 2.16.840.1.113883.6.256)
    codes.PRIVATE_SCHEME: "urn:preread:codes",  # PreRead's own, see preread.reports.codes
}
_DICOM_UID = "urn:dicom:uid"  # FHIR's system for DICOM UIDs ("urn:oid:" values)
_THO = "http://terminology.hl7.org/CodeSystem/"  # HL7 Terminology (THO)
_AI_TAG = (_THO + "v3-ObservationValue", "AIAST", "Artificial Intelligence asserted")
_RADIOLOGY = (_THO + "v2-0074", "RAD", "Radiology")
_IMAGING = (_THO + "observation-category", "imaging", "Imaging")
_DATA_UNKNOWN = (_THO + "data-absent-reason", "unknown", "Unknown")
_ACCESSION = (_THO + "v2-0203", "ACSN", "Accession ID")
_LUNG_SITES = {  # SNOMED CT body structures; not in pydicom's PS3.16 dictionaries
    "left": Code("44029006", "SCT", "Left lung structure"),
    "right": Code("3341006", "SCT", "Right lung structure"),
}
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")  # also the syntax of a DICOM UID (PS3.5 9.1)
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:preread:fhir:v1")


class _Concept(Protocol):
    """A coded concept: :class:`pydicom.sr.coding.Code` or highdicom's CodedConcept."""

    @property
    def value(self) -> str: ...
    @property
    def scheme_designator(self) -> str: ...
    @property
    def meaning(self) -> str: ...


def to_fhir_bundle(report: ReportInput) -> Bundle:
    """The FHIR R4B ``collection`` Bundle of ``report`` (mapping in the module docstring).

    Raises:
        ReportError: a field that FHIR needs is empty or malformed (the message names it),
            or fhir.resources rejects a resource (the message names the resource).
    """
    _check(report)
    findings = report.preread.findings
    with _validating("Bundle"):  # the resources name themselves; this catches the rest
        diagnostic = _diagnostic_report(report)
        observations = [_observation(report, f) for f in findings]
        lung_rads = _lung_rads_observation(report)
        resources: list[DiagnosticReport | Device | Observation | DomainResource] = [
            diagnostic,
            _device(report),
            *observations,
            *([lung_rads] if lung_rads is not None else []),
        ]
        if report.review is not None:  # the radiologist's review (preread.reports.fhir_review)
            from preread.reports.fhir_review import review_resources

            resources += review_resources(report, diagnostic, observations)
        return Bundle(
            meta=_ai_meta(),
            identifier=Identifier(system="urn:ietf:rfc:3986", value=_url(report, "bundle")),
            type="collection",
            timestamp=_issued(report),
            entry=[BundleEntry(fullUrl=f"urn:uuid:{r.id}", resource=r) for r in resources],
        )


def fhir_json(report: ReportInput) -> bytes:
    """:func:`to_fhir_bundle` as compact UTF-8 JSON (media type :data:`FHIR_JSON`).

    Keys come in the order the FHIR specification lists the elements, so the same report
    gives the same bytes.
    """
    return to_fhir_bundle(report).model_dump_json().encode("utf-8")


def _person_name(pn: str) -> str:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` as "Prefix Given Middle Family Suffix"
    (the alphabetic group only; PS3.5 6.2.1)."""
    parts = [*pn.split("=", 1)[0].split("^"), "", "", "", ""][:5]
    family, given, middle, prefix, suffix = (p.strip() for p in parts)
    return " ".join(p for p in (prefix, given, middle, family, suffix) if p)


def _study_date(da: str) -> date | None:
    """DICOM DA ``YYYYMMDD`` as a date; None when the tag is empty.

    Raises:
        ReportError: ``da`` is not a valid DA.
    """
    text = da.strip()
    if not text:
        return None
    error = f"study.study_date {da!r} is not a DICOM date (YYYYMMDD)"
    if not re.fullmatch(r"[0-9]{8}", text):
        raise ReportError(error)
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError as exc:  # 20240231
        raise ReportError(error) from exc


def _check(report: ReportInput) -> None:
    """What FHIR needs and fhir.resources does not check (it accepts a blank string)."""
    study = report.study
    for name, value in (
        ("job_id", report.job_id),
        ("study.tenant", study.tenant),
        ("study.patient_id", study.patient_id),
    ):
        if not value.strip():
            raise ReportError(f"{name} is empty")
    if not _is_uid(study.study_instance_uid):
        raise ReportError(f"study.study_instance_uid {study.study_instance_uid!r} is not a UID")
    if report.preread.study_instance_uid != study.study_instance_uid:
        raise ReportError(
            f"preread.study_instance_uid {report.preread.study_instance_uid} is not "
            f"study.study_instance_uid {study.study_instance_uid}"
        )
    if report.finished_at.utcoffset() is None:
        raise ReportError("finished_at has no time zone")
    _study_date(study.study_date)
    seen: set[str] = set()
    for finding in report.preread.findings:
        if not _is_uid(finding.tracking_uid) or finding.tracking_uid in seen:
            raise ReportError(
                f"finding {finding.label}: tracking_uid {finding.tracking_uid!r} is not a UID "
                "or not unique"
            )
        seen.add(finding.tracking_uid)


def _is_uid(text: str) -> bool:
    return len(text) <= 64 and _OID.fullmatch(text) is not None


@contextmanager
def _validating(resource: str) -> Iterator[None]:
    """Turn fhir.resources' ValidationError into a ReportError naming ``resource``."""
    try:
        yield
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ReportError(
            f"cannot encode the FHIR {resource}: {exc.error_count()} error(s), "
            f"first at {exc.title}.{where}: {first['msg']}"
        ) from exc


def _uuid(report: ReportInput, role: str) -> str:
    """The uuid of the resource playing ``role`` (or of a finding's tracking UID)."""
    return str(uuid.uuid5(_NAMESPACE, f"{report.job_id}\n{role}"))


def _url(report: ReportInput, role: str) -> str:
    return f"urn:uuid:{_uuid(report, role)}"


def _observation_role(finding: FindingOut) -> str:
    return f"observation {finding.tracking_uid}"


def _issued(report: ReportInput) -> datetime:
    return report.finished_at.astimezone(UTC)


def _effective(report: ReportInput) -> date | None:
    """The study date: a FHIR dateTime with a time needs a zone, and DICOM TM has none."""
    return _study_date(report.study.study_date)


def _coding(concept: _Concept) -> Coding:
    return Coding(
        system=_SYSTEMS[concept.scheme_designator], code=concept.value, display=concept.meaning
    )


def _concept(*concepts: _Concept, text: str | None = None) -> CodeableConcept:
    return CodeableConcept(coding=[_coding(c) for c in concepts] or None, text=text)


def _hl7(coding: tuple[str, str, str], *, text: str | None = None) -> CodeableConcept:
    """A fresh CodeableConcept of an HL7 ``(system, code, display)`` (models are mutable)."""
    system, code, display = coding
    return CodeableConcept(coding=[Coding(system=system, code=code, display=display)], text=text)


def _ai_meta() -> Meta:
    """The tag AIAST "Artificial Intelligence asserted" that every resource carries."""
    return Meta(tag=_hl7(_AI_TAG).coding)


def _tenant_system(tenant: str, what: str) -> str:
    return f"urn:preread:tenant:{quote(tenant.strip(), safe='')}:{what}"


def _subject(study: ReportStudy) -> Reference:
    """The patient, by identifier (a Patient resource is the hospital's, not ours)."""
    issuer = study.issuer_of_patient_id.strip()
    is_oid = _OID.fullmatch(issuer) is not None
    identifier = Identifier(
        system=f"urn:oid:{issuer}" if is_oid else _tenant_system(study.tenant, "patient-id"),
        value=study.patient_id.strip(),
        assigner=Reference(display=issuer) if issuer and not is_oid else None,
    )
    return Reference(
        type="Patient", identifier=identifier, display=_person_name(study.patient_name) or None
    )


def _study(study: ReportStudy) -> Reference:
    return Reference(
        type="ImagingStudy",
        identifier=Identifier(system=_DICOM_UID, value=f"urn:oid:{study.study_instance_uid}"),
        display=study.study_description.strip() or None,
    )


def _site(concept: FindingConcept, side: str | None) -> str:
    """The site in words; a lung's side when known ("left lung")."""
    if not concept.in_lung:
        return concept.site_name
    return "lung, side not determined" if side is None else f"{side} lung"


def _conclusion(report: ReportInput) -> str:
    """The one-sentence summary in DiagnosticReport.conclusion."""
    preread = report.preread
    concept = preread.concept.finding_concept()
    head = (
        "AI pre-read (preliminary, not verified by a radiologist): "
        if report.review is None
        else "AI pre-read (preliminary; the radiologist's review follows): "
    )
    by = f"{preread.model.name} {preread.model.version}"
    tail = "" if preread.comparison is None else f" {comparison_sentence(preread.comparison)}"
    if preread.lung_rads is not None:
        tail += f" {lung_rads_sentence(preread.lung_rads)}"
    if not preread.findings:
        return f"{head}no {concept.name()} was found by {by}.{tail}"
    count = len(preread.findings)
    items = "; ".join(
        f"{f.long_axis_mm:.1f} mm {_site(concept, f.lung_side)}" for f in preread.findings
    )
    return f"{head}{count} {concept.name(count)} found by {by}: {items}.{tail}"


def lung_rads_sentence(lung_rads: LungRadsOut) -> str:
    """The exam's Lung-RADS in one sentence (the FHIR conclusion, the HL7 impression)."""
    if lung_rads.category is None:
        return f"Lung-RADS {lung_rads.version}: {lung_rads.reason}."
    return (
        f"Lung-RADS {lung_rads.version} category {lung_rads.category} (AI, preliminary; 4X is "
        f"the radiologist's to assign): {lung_rads.management}"
    )


def _lung_rads_observation(report: ReportInput) -> Observation | None:
    """The exam's Lung-RADS v2022 category as an Observation of its own."""
    lung_rads = report.preread.lung_rads
    if lung_rads is None:
        return None
    category = lung_rads.category
    notes = [Annotation(text=AI_NOTICE)]
    if lung_rads.management:
        notes.append(Annotation(text=f"Management: {lung_rads.management}"))
    if lung_rads.reason:
        notes.append(Annotation(text=lung_rads.reason))
    with _validating("Observation of the Lung-RADS category"):
        return Observation(
            id=_uuid(report, "lung-rads"),
            meta=_ai_meta(),
            status="preliminary",
            category=[_hl7(_IMAGING)],
            code=_concept(codes.LUNG_RADS, text=f"Lung-RADS {lung_rads.version}"),
            subject=_subject(report.study),
            effectiveDateTime=_effective(report),  # type: ignore[arg-type]  # as in the report
            issued=_issued(report),
            device=Reference(reference=_url(report, "device"), type="Device"),
            valueCodeableConcept=None
            if category is None
            else _concept(codes.LUNG_RADS_CATEGORIES[category], text=category),
            dataAbsentReason=_hl7(_DATA_UNKNOWN, text=lung_rads.reason)
            if category is None
            else None,
            derivedFrom=[
                Reference(reference=_url(report, _observation_role(f)), type="Observation")
                for f in report.preread.findings
            ]
            or None,
            note=notes,
        )


def _follow_up_row(report: ReportInput, finding: FindingOut) -> NoduleComparisonOut | None:
    c = report.preread.comparison
    return None if c is None else next((n for n in c.nodules if n.label == finding.label), None)


def _follow_up_components(report: ReportInput, finding: FindingOut) -> list[ObservationComponent]:
    """The nodule against the prior CT: status, prior volume, volume change, doubling time,
    and the sentence (:mod:`preread.reports.followup_text`)."""
    row = _follow_up_row(report, finding)
    comparison = report.preread.comparison
    if row is None or comparison is None:
        return []
    prior_date = comparison.prior.study_date if comparison.prior else None
    out = [
        ObservationComponent(code=_concept(codes.FOLLOW_UP_STATUS), valueString=row.status),
        ObservationComponent(
            code=_concept(codes.FOLLOW_UP), valueString=nodule_sentence(row, prior_date)
        ),
    ]
    for name, value, unit, ucum in (
        (codes.PRIOR_VOLUME, row.prior_volume_mm3, "mm3", codes.CUBIC_MILLIMETER),
        (codes.VOLUME_CHANGE, row.volume_change_pct, "%", codes.PERCENT),
        (codes.VDT, row.vdt_days, "d", codes.DAY),
    ):
        if value is not None:
            out.append(_quantity(_concept(name), round(value, 1), unit, ucum))
    return out


def _prior_study(report: ReportInput, finding: FindingOut) -> list[Reference] | None:
    """derivedFrom: the prior ImagingStudy a persistent nodule was followed from (by its
    Study Instance UID: the prior's own report is another bundle)."""
    row = _follow_up_row(report, finding)
    if row is None or row.status != "persistent" or row.prior_study_uid is None:
        return None
    return [
        Reference(
            type="ImagingStudy",
            identifier=Identifier(system=_DICOM_UID, value=f"urn:oid:{row.prior_study_uid}"),
            display="prior CT",
        )
    ]


def _lung_rads_component(report: ReportInput, finding: FindingOut) -> list[ObservationComponent]:
    lung_rads = report.preread.lung_rads
    if lung_rads is None:
        return []
    row = next((n for n in lung_rads.nodules if n.label == finding.label), None)
    if row is None:
        return []
    name = _concept(codes.LUNG_RADS, text=f"Lung-RADS {lung_rads.version} category")
    if row.category is None:
        return [
            ObservationComponent(
                code=name,
                dataAbsentReason=_hl7(_DATA_UNKNOWN, text=row.reason),
            )
        ]
    return [
        ObservationComponent(
            code=name,
            valueCodeableConcept=_concept(
                codes.LUNG_RADS_CATEGORIES[row.category], text=row.category
            ),
        )
    ]


def _diagnostic_report(report: ReportInput) -> DiagnosticReport:
    findings = report.preread.findings
    concept = report.preread.concept.finding_concept()
    with _validating("DiagnosticReport"):
        return DiagnosticReport(
            id=_uuid(report, "report"),
            meta=_ai_meta(),
            identifier=_report_identifiers(report),
            status="preliminary",
            category=[_hl7(_RADIOLOGY)],
            code=_concept(codes.CT_CHEST, text=f"AI pre-read: {concept.name(2)}"),
            subject=_subject(report.study),
            # A FHIR dateTime may be a date alone; fhir_core accepts a date but types datetime.
            effectiveDateTime=_effective(report),  # type: ignore[arg-type]
            issued=_issued(report),
            imagingStudy=[_study(report.study)],
            result=[
                Reference(reference=_url(report, _observation_role(f)), type="Observation")
                for f in findings
            ]
            + (
                [Reference(reference=_url(report, "lung-rads"), type="Observation")]
                if report.preread.lung_rads is not None
                else []
            ),
            conclusion=_conclusion(report),
            conclusionCode=[_concept(concept.finding)] if findings else None,
        )


def _report_identifiers(report: ReportInput) -> list[Identifier]:
    """The job id, and the accession number (type v2-0203 ACSN) when there is one."""
    study = report.study
    identifiers = [Identifier(system="urn:preread:job", value=report.job_id)]
    if study.accession_number.strip():
        identifiers.append(
            Identifier(
                type=_hl7(_ACCESSION),
                system=_tenant_system(study.tenant, "accession-number"),
                value=study.accession_number.strip(),
            )
        )
    return identifiers


def _device(report: ReportInput) -> Device:
    """The model build; its DICOM UID is the SR's Device Observer UID (TID 1004)."""
    model = report.preread.model
    observer_uid = device_uid(ModelRef(model.id, model.version, model.name, model.sha256))
    with _validating("Device"):
        versions = [DeviceVersion(value=model.version)]
        if model.sha256:
            versions.append(DeviceVersion(type=CodeableConcept(text="sha256"), value=model.sha256))
        return Device(
            id=_uuid(report, "device"),
            meta=_ai_meta(),
            identifier=[
                Identifier(system="urn:preread:model", value=model.id),
                Identifier(system=_DICOM_UID, value=f"urn:oid:{observer_uid}"),
            ],
            manufacturer=MANUFACTURER,
            deviceName=[DeviceDeviceName(name=model.name, type="model-name")],
            type=CodeableConcept(text="AI model"),
            version=versions,
            property=[
                DeviceProperty(
                    type=CodeableConcept(text="ONNX Runtime execution provider"),
                    valueCode=[CodeableConcept(text=report.preread.provider)],
                )
            ],
        )


def _quantity(name: CodeableConcept, value: float, unit: str, ucum: Code) -> ObservationComponent:
    return ObservationComponent(
        code=name,
        valueQuantity=Quantity(
            value=Decimal(str(value)), unit=unit, system=_SYSTEMS["UCUM"], code=ucum.value
        ),
    )


def _components(finding: FindingOut) -> list[ObservationComponent]:
    """The SR's measurements, rounded as there, the centre as text, and the nodule type.

    The Lung-RADS sizes and the type are left out when the finding has none (models before
    2.0.0)."""
    x, y, z = finding.center_lps_mm
    return [
        _quantity(
            _concept(codes.LONG_AXIS, text="Long axis diameter"),
            round(finding.long_axis_mm, 2),
            "mm",
            codes.MILLIMETER,
        ),
        *(
            _quantity(_concept(name, text=text), round(value, 2), "mm", codes.MILLIMETER)
            for name, text, value in (
                (codes.AXIAL_LONG_AXIS, "Axial long axis", finding.axial_long_axis_mm),
                (codes.SHORT_AXIS, "Short axis", finding.short_axis_mm),
                (codes.MEAN_DIAMETER, "Mean diameter (Lung-RADS)", finding.mean_diameter_mm),
                (
                    codes.SOLID_COMPONENT_LONG_AXIS,
                    "Solid component long axis",
                    finding.solid_component_long_axis_mm,
                ),
            )
            if value is not None
        ),
        _quantity(
            _concept(codes.VOLUME), round(finding.volume_mm3, 1), "mm3", codes.CUBIC_MILLIMETER
        ),
        _quantity(
            _concept(codes.MEAN_ATTENUATION, text="Mean attenuation"),
            round(finding.mean_hu, 1),
            "HU",
            codes.HOUNSFIELD_UNIT,
        ),
        _quantity(
            _concept(codes.PROBABILITY, text="Certainty of finding (detection probability)"),
            round(100.0 * finding.probability, 2),
            "%",
            codes.PERCENT,
        ),
        ObservationComponent(
            code=CodeableConcept(text="Center (DICOM patient LPS, mm)"),
            valueString=f"{x:.2f}, {y:.2f}, {z:.2f}",
        ),
        *(
            []
            if finding.nodule_type is None
            else [
                ObservationComponent(
                    code=_concept(codes.NODULE_TYPE, text="Nodule type"),
                    valueCodeableConcept=_concept(
                        codes.NODULE_TYPES[finding.nodule_type], text=finding.nodule_type
                    ),
                )
            ]
        ),
    ]


def _identifiers(finding: FindingOut) -> list[Identifier]:
    return [
        Identifier(
            type=_concept(dicom_codes.DCM.TrackingUniqueIdentifier),
            system=_DICOM_UID,
            value=f"urn:oid:{finding.tracking_uid}",
        ),
        Identifier(type=_concept(dicom_codes.DCM.TrackingIdentifier), value=finding.tracking_id),
    ]


def _observation(report: ReportInput, finding: FindingOut) -> Observation:
    concept = report.preread.concept.finding_concept()
    side = finding.lung_side if concept.in_lung else None
    site: _Concept = concept.site if side is None else _LUNG_SITES[side]
    with _validating(f"Observation of finding {finding.label}"):
        return Observation(
            id=_uuid(report, _observation_role(finding)),
            meta=_ai_meta(),
            identifier=_identifiers(finding),
            status="preliminary",
            category=[_hl7(_IMAGING)],
            code=_concept(concept.finding),
            subject=_subject(report.study),
            effectiveDateTime=_effective(report),  # type: ignore[arg-type]  # as in the report
            issued=_issued(report),
            bodySite=_concept(site, text=_site(concept, side)),
            device=Reference(reference=_url(report, "device"), type="Device"),
            note=[Annotation(text=AI_NOTICE)],
            component=_components(finding)
            + _follow_up_components(report, finding)
            + _lung_rads_component(report, finding),
            derivedFrom=_prior_study(report, finding),
        )
