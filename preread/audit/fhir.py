"""Audit records as FHIR R4B (4.3.0) AuditEvent resources, and a ``collection`` Bundle of them.

The mapping follows the DICOM audit messages (PS3.15 Annex A.5) as FHIR carries them
(http://hl7.org/fhir/R4B/auditevent-mappings.html#dicom):

=========================  ===================================================================
PreRead                    FHIR AuditEvent
=========================  ===================================================================
action                     type / subtype / action (C R U D E), table below; subtype also
                           carries the action itself (system ``urn:preread:audit-action``)
at                         recorded (UTC, microseconds)
outcome                    outcome: success 0, refused 4 (minor failure), failure 8 (serious);
                           outcomeDesc: ``detail.reason`` when there is one, else the outcome
actor                      agent: who.identifier (``urn:preread:actor``) and display, name,
                           requestor true
purpose                    agent.purposeOfUse, v3-ActReason: clinical-preread TREAT,
                           quality-review HQUALIMP, model-training and research HRESCH; text
                           is the purpose as PreRead names it (see preread.grants.Purpose)
(the system)               source: observer display "PreRead", type 4 Application Server
study_instance_uid         entity: what.identifier ``urn:dicom:uid`` / ``urn:oid:<uid>``
                           typed DCM 110180 Study Instance UID; type 2 System Object,
                           role 3 Report (as DICOM's ParticipantObject for a study)
tenant                     entity: what.identifier ``urn:preread:tenant``; type 4 Other
seq, prev_hash, hash,      entity "PreRead audit trail record": what.identifier
detail                     ``urn:preread:audit`` / seq; entity.detail ``seq``, ``prev_hash``,
                           ``hash`` and ``detail`` (canonical JSON), so that an export holds
                           what is needed to recompute the chain
=========================  ===================================================================

=====================  ===============================================  ======================
action                 type (DCM)                                       subtype (DCM), action
=====================  ===============================================  ======================
study.received         110104 DICOM Instances Transferred               C
pixels.fetch           110103 DICOM Instances Accessed                  R
inference.run          110103 DICOM Instances Accessed                  E
priors.query           110112 Query                                     E
priors.retrieve        110104 DICOM Instances Transferred               C
backfill.query         110112 Query                                     E
backfill.retrieve      110104 DICOM Instances Transferred               C
results.store          110104 DICOM Instances Transferred               C
report.read            110110 Patient Record                            R
analysis.request       110103 DICOM Instances Accessed                  E
export                 110106 Export                                    R
deid                   110103 DICOM Instances Accessed                  E
dataset.include        110106 Export                                    R
grant.create/revoke/   110113 Security Alert                            110135 Object Security
change                                                                  Attributes Changed;
                                                                        C / D / U
auth.failed            110114 User Authentication                       110122 Login, E
access.refused         110113 Security Alert                            110132 Use of
                                                                        Restricted Function, E
audit.export           110101 Audit Log Used                            R
audit.purge            110101 Audit Log Used                            D
user.sign_in           110114 User Authentication                       110122 Login, E
user.sign_out          110114 User Authentication                       110123 Logout, E
user.create/change     110113 Security Alert                            110137 User Security
                                                                        Attributes Changed;
                                                                        C / U
review.sign            110103 DICOM Instances Accessed                  C
final_report.receive   110110 Patient Record                            C
model.stage            110100 Application Activity                      U
=====================  ===============================================  ======================
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import BinaryIO

from fhir.resources.R4B.auditevent import (
    AuditEvent,
    AuditEventAgent,
    AuditEventEntity,
    AuditEventEntityDetail,
    AuditEventSource,
)
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError

from preread.audit.log import AuditAction, AuditError, AuditRecord, Outcome

__all__ = ["audit_bundle_json", "to_audit_event", "write_audit_bundle"]

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_THO = "http://terminology.hl7.org/CodeSystem/"
_ACT_REASON = _THO + "v3-ActReason"
_ACTION_SYSTEM = "urn:preread:audit-action"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:preread:audit:v1")

_TRANSFERRED = ("110104", "DICOM Instances Transferred")
_ACCESSED = ("110103", "DICOM Instances Accessed")
_EXPORT = ("110106", "Export")
_SECURITY_ALERT = ("110113", "Security Alert")
_ATTRIBUTES_CHANGED = ("110135", "Object Security Attributes Changed")
_AUDIT_LOG_USED = ("110101", "Audit Log Used")
_USER_AUTHENTICATION = ("110114", "User Authentication")
_USER_ATTRIBUTES_CHANGED = ("110137", "User Security Attributes Changed")

_TYPES: dict[AuditAction, tuple[tuple[str, str], tuple[str, str] | None, str]] = {
    AuditAction.STUDY_RECEIVED: (_TRANSFERRED, None, "C"),
    AuditAction.PIXELS_FETCH: (_ACCESSED, None, "R"),
    AuditAction.PRIORS_QUERY: (("110112", "Query"), None, "E"),
    AuditAction.PRIORS_RETRIEVE: (_TRANSFERRED, None, "C"),
    AuditAction.BACKFILL_QUERY: (("110112", "Query"), None, "E"),
    AuditAction.BACKFILL_RETRIEVE: (_TRANSFERRED, None, "C"),
    AuditAction.INFERENCE_RUN: (_ACCESSED, None, "E"),
    AuditAction.RESULTS_STORE: (_TRANSFERRED, None, "C"),
    AuditAction.REPORT_READ: (("110110", "Patient Record"), None, "R"),
    AuditAction.ANALYSIS_REQUEST: (_ACCESSED, None, "E"),
    AuditAction.EXPORT: (_EXPORT, None, "R"),
    AuditAction.DEID: (_ACCESSED, None, "E"),
    AuditAction.DATASET_INCLUDE: (_EXPORT, None, "R"),
    AuditAction.MODEL_STAGE: (("110100", "Application Activity"), None, "U"),
    AuditAction.GRANT_CREATE: (_SECURITY_ALERT, _ATTRIBUTES_CHANGED, "C"),
    AuditAction.GRANT_REVOKE: (_SECURITY_ALERT, _ATTRIBUTES_CHANGED, "D"),
    AuditAction.GRANT_CHANGE: (_SECURITY_ALERT, _ATTRIBUTES_CHANGED, "U"),
    AuditAction.AUTH_FAILED: (("110114", "User Authentication"), ("110122", "Login"), "E"),
    AuditAction.ACCESS_REFUSED: (_SECURITY_ALERT, ("110132", "Use of Restricted Function"), "E"),
    AuditAction.AUDIT_EXPORT: (_AUDIT_LOG_USED, None, "R"),
    AuditAction.AUDIT_PURGE: (_AUDIT_LOG_USED, None, "D"),
    AuditAction.USER_SIGN_IN: (_USER_AUTHENTICATION, ("110122", "Login"), "E"),
    AuditAction.USER_SIGN_OUT: (_USER_AUTHENTICATION, ("110123", "Logout"), "E"),
    AuditAction.USER_CREATE: (_SECURITY_ALERT, _USER_ATTRIBUTES_CHANGED, "C"),
    AuditAction.USER_CHANGE: (_SECURITY_ALERT, _USER_ATTRIBUTES_CHANGED, "U"),
    AuditAction.REVIEW_SIGN: (_ACCESSED, None, "C"),
    AuditAction.FINAL_REPORT_RECEIVE: (("110110", "Patient Record"), None, "C"),
}
_OUTCOMES = {Outcome.SUCCESS: "0", Outcome.REFUSED: "4", Outcome.FAILURE: "8"}
_PURPOSES = {  # PreRead's purposes of use (preread.grants.Purpose) → v3-ActReason
    "clinical-preread": ("TREAT", "treatment"),
    "quality-review": ("HQUALIMP", "health quality improvement"),
    "model-training": ("HRESCH", "healthcare research"),
    "research": ("HRESCH", "healthcare research"),
}


def to_audit_event(record: AuditRecord) -> AuditEvent:
    """``record`` as a validated FHIR R4B AuditEvent (mapping in the module docstring).

    Raises:
        AuditError: fhir.resources rejects the resource (names the record's seq).
    """
    event = record.event
    type_code, subtype, action = _TYPES[event.action]
    try:
        return AuditEvent(
            id=f"preread-audit-{record.seq}",
            type=_dcm(type_code),
            subtype=[
                *([_dcm(subtype)] if subtype else []),
                Coding(system=_ACTION_SYSTEM, code=event.action.value),
            ],
            action=action,
            recorded=record.at,
            outcome=_OUTCOMES[event.outcome],
            outcomeDesc=_outcome_text(record),
            agent=[_agent(record)],
            source=AuditEventSource(
                observer=Reference(display="PreRead"),
                type=[
                    Coding(
                        system=_THO + "security-source-type", code="4", display="Application Server"
                    )
                ],
            ),
            entity=_entities(record),
        )
    except ValidationError as exc:
        raise AuditError(
            f"audit record {record.seq} is not a valid FHIR AuditEvent: {exc}"
        ) from exc


def write_audit_bundle(
    records: Iterable[AuditRecord], out: BinaryIO, *, timestamp: datetime | None = None
) -> int:
    """Write a FHIR ``collection`` Bundle of ``records`` to ``out`` one entry at a time (an
    export of years of records never sits in memory); returns how many were written.

    Each entry's ``fullUrl`` is ``urn:uuid:`` of a uuid5 of the record's hash: the same record
    always exports the same way.
    """
    header = Bundle(type="collection", timestamp=timestamp).model_dump_json()
    out.write(header[:-1].encode("utf-8"))  # without its closing brace: entries follow
    count = 0
    for record in records:
        entry = {
            "fullUrl": f"urn:uuid:{uuid.uuid5(_NAMESPACE, record.hash)}",
            "resource": json.loads(to_audit_event(record).model_dump_json()),
        }
        out.write(b',"entry":[' if count == 0 else b",")
        out.write(json.dumps(entry, separators=(",", ":")).encode("utf-8"))
        count += 1
    out.write(b"]}" if count else b"}")  # FHIR JSON has no empty arrays
    return count


def audit_bundle_json(
    records: Iterable[AuditRecord], *, timestamp: datetime | None = None
) -> bytes:
    """:func:`write_audit_bundle` into bytes."""
    buffer = io.BytesIO()
    write_audit_bundle(records, buffer, timestamp=timestamp)
    return buffer.getvalue()


def _dcm(code: tuple[str, str]) -> Coding:
    return Coding(system=_DCM, code=code[0], display=code[1])


def _outcome_text(record: AuditRecord) -> str | None:
    reason = record.event.detail.get("reason")
    if isinstance(reason, str) and reason:
        return reason
    return None if record.event.outcome is Outcome.SUCCESS else record.event.outcome.value


def _agent(record: AuditRecord) -> AuditEventAgent:
    actor, purpose = record.event.actor, record.event.purpose
    uses = None
    if purpose is not None:
        code = _PURPOSES.get(purpose)
        coding = [Coding(system=_ACT_REASON, code=code[0], display=code[1])] if code else None
        uses = [CodeableConcept(coding=coding, text=purpose)]
    return AuditEventAgent(
        who=Reference(
            identifier=Identifier(system="urn:preread:actor", value=actor), display=actor
        ),
        name=actor,
        requestor=True,
        purposeOfUse=uses,
    )


def _entities(record: AuditRecord) -> list[AuditEventEntity]:
    event = record.event
    entities = []
    if event.study_instance_uid is not None:
        entities.append(
            AuditEventEntity(
                what=Reference(
                    identifier=Identifier(
                        type=CodeableConcept(coding=[_dcm(("110180", "Study Instance UID"))]),
                        system="urn:dicom:uid",
                        value=f"urn:oid:{event.study_instance_uid}",
                    )
                ),
                type=Coding(system=_THO + "audit-entity-type", code="2", display="System Object"),
                role=Coding(system=_THO + "object-role", code="3", display="Report"),
            )
        )
    if event.tenant is not None:
        entities.append(
            AuditEventEntity(
                what=Reference(
                    identifier=Identifier(system="urn:preread:tenant", value=event.tenant)
                ),
                type=Coding(system=_THO + "audit-entity-type", code="4", display="Other"),
                description="tenant",
            )
        )
    entities.append(_chain_entity(record))
    return entities


def _chain_entity(record: AuditRecord) -> AuditEventEntity:
    detail = json.dumps(dict(record.event.detail), sort_keys=True, separators=(",", ":"))
    values = {
        "seq": str(record.seq),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
        "detail": detail,
    }
    return AuditEventEntity(
        what=Reference(identifier=Identifier(system="urn:preread:audit", value=str(record.seq))),
        type=Coding(system=_THO + "audit-entity-type", code="2", display="System Object"),
        description="PreRead audit trail record",
        detail=[AuditEventEntityDetail(type=k, valueString=v) for k, v in values.items()],
    )
