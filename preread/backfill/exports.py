"""The lost-to-follow-up worklist as JSON, CSV or a FHIR R4 Bundle (pure functions, no I/O).

One :class:`LostCase` is one patient whose newest archived chest CT showed a nodule needing
follow-up (>= 6 mm, or a Lung-RADS exam category of 3 or more) and who has no later CT on the
PACS (:mod:`preread.backfill.worklist` makes the list). All three formats list the cases in
the same order (:func:`ordered`): Lung-RADS category, most suspicious first (4X, 4B, 4A, 3,
2, 1, 0, then none), then the largest finding, largest first, then the oldest study first.

JSON (:func:`to_json`)
    ``{"kind": "preread.lost-to-follow-up", "version": 1, "count": N, "cases": [...]}``, each
    case an object of the :class:`LostCase` fields, dates and times as ISO 8601 strings.

CSV (:func:`to_csv`)
    RFC 4180 (the :mod:`csv` module's defaults, ``\\r\\n`` line ends): a header row of the field
    names, then one row per case; no value is written as ``""``. **Formula injection guard**:
    patient ids, accession numbers and the other texts come from the hospital's PACS, and the
    file is opened in spreadsheets, which run a cell that starts with ``=``, ``+``, ``-`` or
    ``@`` (or a tab or carriage return before one) as a formula (``=HYPERLINK(...)``,
    ``=cmd|...``). Such a text value is written with a single quote ``'`` in front, which the
    spreadsheet shows as text (OWASP "CSV Injection"); the full-width ``＝ ＋ － ＠`` are
    treated the same, for spreadsheets that take them as their ASCII forms. Numbers (the
    diameter, the count) are written plainly; they are never negative.

FHIR (:func:`to_fhir`)
    A ``collection`` Bundle of FHIR R4B (4.3.0) models from ``fhir.resources.R4B``, as
    :mod:`preread.reports.fhir` uses (R4B changed nothing in Patient or Flag since R4 4.0.1, so
    an R4 server takes it as it is), validated as it is built. Per case a ``Patient`` that has
    only its identifier (no name, no birth date: the hospital holds those) and a ``Flag``
    (active, category "clinical", the finding in ``code.text``, ``period.start`` the study
    date, ``identifier`` the Study Instance UID as ``urn:dicom:uid`` / ``urn:oid:<uid>``, the
    AI-asserted tag AIAST) whose subject is the Patient's ``fullUrl``. The patient identifier's
    system is that of the PreRead report's subject: ``urn:oid:<issuer>`` when the Issuer of
    Patient ID is an OID, else ``urn:preread:tenant:<tenant>:patient-id`` (and a non-OID issuer
    as the assigner's display). Every ``fullUrl`` is ``urn:uuid:`` of a uuid5 of the tenant, the
    patient id and the Study Instance UID, so the same worklist gives a byte-identical Bundle.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError

from preread.errors import PrereadError
from preread.followup.lungrads import ORDER

__all__ = [
    "FIELDS",
    "KIND",
    "VERSION",
    "ExportError",
    "LostCase",
    "ordered",
    "to_csv",
    "to_fhir",
    "to_json",
]

KIND = "preread.lost-to-follow-up"
VERSION = 1


@dataclass(frozen=True)
class LostCase:
    """One patient who may have been lost to follow-up: the newest archived CT that showed a
    nodule needing follow-up, and no CT of the patient in the PACS after it."""

    tenant: str
    patient_id: str
    issuer_of_patient_id: str  # "" when the PACS gave none
    study_instance_uid: str
    accession_number: str  # "" when none
    study_date: dt.date
    largest_mean_diameter_mm: float  # the largest finding's mean diameter ((long + short) / 2)
    largest_type: str | None  # "solid" | "part-solid" | "ground-glass" | None (model gave none)
    nodules_ge_6mm: int
    lung_rads: str | None  # the exam's Lung-RADS v2022 category ("3", "4A", "4B", ...) or None
    model: str  # e.g. "lung-nodule 2.4.0"
    checked_at: dt.datetime  # when the PACS was asked for later CTs (timezone-aware UTC)


#: The field names, in order: the JSON keys and the CSV header.
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LostCase))


class ExportError(PrereadError):
    """The worklist cannot be written in a format (a value FHIR does not accept)."""


_RANK: dict[str, int] = {category: i for i, category in enumerate(ORDER)}  # 0 .. 4X


def _severity(category: str | None) -> int:
    """4X > 4B > 4A > 3 > 2 > 1 > 0 > none (an unknown category counts as none)."""
    return -1 if category is None else _RANK.get(category, -1)


def ordered(cases: Sequence[LostCase]) -> list[LostCase]:
    """The cases in worklist order: Lung-RADS category, most suspicious first (4X, 4B, 4A, 3,
    2, 1, 0, none); then the largest finding, largest first; then the oldest study first (ties:
    by tenant, patient id and Study Instance UID, so that the order never depends on input)."""
    return sorted(
        cases,
        key=lambda c: (
            -_severity(c.lung_rads),
            -c.largest_mean_diameter_mm,
            c.study_date,
            c.tenant,
            c.patient_id,
            c.study_instance_uid,
        ),
    )


# JSON ------------------------------------------------------------------------------------


def _json_value(value: object) -> Any:
    if isinstance(value, dt.date):  # dt.datetime too
        return value.isoformat()
    return value


def to_json(cases: Sequence[LostCase]) -> str:
    """The worklist as a JSON document (see the module docstring), UTF-8 text as it is."""
    rows = [{name: _json_value(getattr(c, name)) for name in FIELDS} for c in ordered(cases)]
    doc = {"kind": KIND, "version": VERSION, "count": len(rows), "cases": rows}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


# CSV -------------------------------------------------------------------------------------

#: A cell starting with one of these is taken as a formula by some spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def _csv_text(text: str) -> str:
    """``text`` made safe to open in a spreadsheet: quoted with ``'`` if it could be a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):  # dt.datetime too; ISO dates never start with a sign
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)  # a diameter or a count: never negative, written plainly
    return _csv_text(str(value))


def to_csv(cases: Sequence[LostCase]) -> str:
    """The worklist as CSV (RFC 4180; a header row, then one row per case), with text values
    guarded against formula injection (see the module docstring)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    for case in ordered(cases):
        writer.writerow([_csv_value(getattr(case, name)) for name in FIELDS])
    return out.getvalue()


# FHIR ------------------------------------------------------------------------------------

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:preread:lost-to-follow-up:fhir:v1")
_DICOM_UID = "urn:dicom:uid"  # FHIR's system for DICOM UIDs ("urn:oid:" values)
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")  # as in preread.reports.fhir
_THO = "http://terminology.hl7.org/CodeSystem/"
_CLINICAL = (_THO + "flag-category", "clinical", "Clinical")
_AI_TAG = (_THO + "v3-ObservationValue", "AIAST", "Artificial Intelligence asserted")


def _url(case: LostCase, role: str) -> str:
    """``urn:uuid:`` of the resource playing ``role`` for ``case``: the same case, the same."""
    seed = f"{case.tenant}\n{case.patient_id}\n{case.study_instance_uid}\n{role}"
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, seed)}"


def _coding(coding: tuple[str, str, str]) -> Coding:
    system, code, display = coding
    return Coding(system=system, code=code, display=display)


def _patient_identifier(case: LostCase) -> Identifier | None:
    """The patient's identifier, as the PreRead report names its subject (None: no PatientID)."""
    patient_id = case.patient_id.strip()
    if not patient_id:
        return None
    issuer = case.issuer_of_patient_id.strip()
    is_oid = _OID.fullmatch(issuer) is not None
    tenant_system = f"urn:preread:tenant:{quote(case.tenant.strip(), safe='')}:patient-id"
    return Identifier(
        system=f"urn:oid:{issuer}" if is_oid else tenant_system,
        value=patient_id,
        assigner=Reference(display=issuer) if issuer and not is_oid else None,
    )


def _flag_text(case: LostCase) -> str:
    """E.g. "Lung nodule 12.3 mm (Lung-RADS 4A) on CT of 2021-03-04; no later CT in the PACS"."""
    size = f" {case.largest_mean_diameter_mm:.1f} mm" if case.largest_mean_diameter_mm > 0 else ""
    category = f" (Lung-RADS {case.lung_rads})" if case.lung_rads else ""
    return (
        f"Lung nodule{size}{category} on CT of {case.study_date.isoformat()}; "
        "no later CT in the PACS"
    )


def _entries(case: LostCase) -> list[BundleEntry]:
    patient_url = _url(case, "patient")
    flag_url = _url(case, "flag")
    identifier = _patient_identifier(case)
    patient = Patient(
        id=patient_url.removeprefix("urn:uuid:"),
        identifier=[identifier] if identifier is not None else None,
    )
    flag = Flag(
        id=flag_url.removeprefix("urn:uuid:"),
        meta=Meta(tag=[_coding(_AI_TAG)]),
        identifier=[
            Identifier(system=_DICOM_UID, value=f"urn:oid:{case.study_instance_uid.strip()}")
        ],
        status="active",
        category=[CodeableConcept(coding=[_coding(_CLINICAL)])],
        code=CodeableConcept(text=_flag_text(case)),
        subject=Reference(reference=patient_url, type="Patient"),
        period=Period.model_validate({"start": case.study_date.isoformat()}),  # a date alone
    )
    return [
        BundleEntry(fullUrl=patient_url, resource=patient),
        BundleEntry(fullUrl=flag_url, resource=flag),
    ]


def to_fhir(cases: Sequence[LostCase], *, generated_at: dt.datetime) -> str:
    """The worklist as a FHIR R4 ``collection`` Bundle (JSON; see the module docstring) made at
    ``generated_at`` (timezone-aware; written in UTC).

    Raises:
        ValueError: ``generated_at`` has no timezone.
        ExportError: a case FHIR does not accept (the message says which study), or a case
            given twice.
    """
    if generated_at.tzinfo is None or generated_at.utcoffset() is None:
        raise ValueError("generated_at must be timezone-aware")
    entries: list[BundleEntry] = []
    seen: set[str] = set()
    for case in ordered(cases):
        try:
            pair = _entries(case)
        except ValidationError as exc:
            raise ExportError(
                f"study {case.study_instance_uid!r} cannot be written as FHIR: "
                f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
            ) from exc
        urls = {str(e.fullUrl) for e in pair}
        if urls & seen:
            raise ExportError(f"study {case.study_instance_uid!r} is on the worklist twice")
        seen |= urls
        entries.extend(pair)
    bundle = Bundle(
        type="collection",
        timestamp=generated_at.astimezone(dt.UTC),
        entry=entries or None,
    )
    return bundle.model_dump_json()
