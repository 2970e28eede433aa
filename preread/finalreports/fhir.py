"""A FHIR R4 DiagnosticReport read as a final report — pure.

The resource is validated with fhir.resources (its R4B models: R4B changed nothing in
DiagnosticReport's elements used here), then:

================  =============================================================================
element           use
================  =============================================================================
resourceType      ``DiagnosticReport``
status            ``final``, ``amended``, ``corrected`` or ``appended`` (the last three: a
                  correction); ``registered``/``partial``/``preliminary``/… are refused
identifier        the accession number: the identifier whose ``type`` has the coding ``ACSN``
                  (system ``http://terminology.hl7.org/CodeSystem/v2-0203``, as FHIR's
                  ImagingStudy and ServiceRequest carry it); exactly one value
conclusion        report text, and
presentedForm     each attachment whose ``contentType`` is ``text/plain`` (charset parameter,
                  default UTF-8) with inline ``data`` (base64); others (PDF, ``url``) are not read
================  =============================================================================

The text is the presented forms' texts then the conclusion, joined by blank lines (the
extractor merges a nodule named in both). Every problem is a
:class:`~preread.finalreports.errors.ReportContentError` naming the element.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from pydantic import ValidationError

from preread.finalreports.errors import ReportContentError
from preread.finalreports.records import (
    MAX_ACCESSION_LENGTH,
    Channel,
    IncomingReport,
    ReportStatus,
)

__all__ = ["ACCESSION_SYSTEM", "ACCESSION_TYPE", "from_diagnostic_report"]

ACCESSION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACCESSION_TYPE = "ACSN"
_STATUSES = {
    "final": ReportStatus.FINAL,
    "amended": ReportStatus.CORRECTED,
    "corrected": ReportStatus.CORRECTED,
    "appended": ReportStatus.CORRECTED,
}


def from_diagnostic_report(resource: Mapping[str, Any], sender: str) -> IncomingReport:
    """The final report a DiagnosticReport (JSON, as parsed) holds, sent by ``sender``.

    Raises:
        ReportContentError: not a valid DiagnosticReport, not final, no accession number, or
            no text (the message names the element).
    """
    if resource.get("resourceType") != "DiagnosticReport":
        raise ReportContentError(
            f"resourceType is {resource.get('resourceType')!r}, not 'DiagnosticReport'"
        )
    try:
        report = DiagnosticReport.model_validate(dict(resource))
    except ValidationError as exc:
        problems = "; ".join(
            f"DiagnosticReport.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()[:3]
        )
        raise ReportContentError(f"not a valid FHIR DiagnosticReport: {problems}") from None
    except (TypeError, ValueError) as exc:
        raise ReportContentError(f"not a valid FHIR DiagnosticReport: {exc}") from None
    status = _STATUSES.get(str(report.status or ""))
    if status is None:
        raise ReportContentError(
            f"DiagnosticReport.status is {report.status or '(missing)'!r}: only final reports "
            f"({', '.join(_STATUSES)}) are compared"
        )
    return IncomingReport(_accession(report), _text(report), status, Channel.FHIR, sender)


def _accession(report: DiagnosticReport) -> str:
    values = {
        (identifier.value or "").strip()
        for identifier in report.identifier or []
        if identifier.type is not None
        and any(
            c.code == ACCESSION_TYPE and c.system in (ACCESSION_SYSTEM, None)
            for c in identifier.type.coding or []
        )
    }
    if not values or values == {""}:
        raise ReportContentError(
            "DiagnosticReport.identifier: no identifier of type ACSN (the accession number, "
            f"type.coding {ACCESSION_SYSTEM}|{ACCESSION_TYPE}) with a value"
        )
    if len(values) > 1:
        raise ReportContentError(
            f"DiagnosticReport.identifier: {len(values)} different accession numbers (type "
            "ACSN): a report is of one exam"
        )
    value = values.pop()
    if len(value) > MAX_ACCESSION_LENGTH:
        raise ReportContentError(
            f"DiagnosticReport.identifier: the accession number is over {MAX_ACCESSION_LENGTH} "
            "characters"
        )
    return value


def _text(report: DiagnosticReport) -> str:
    parts = []
    for i, form in enumerate(report.presentedForm or []):
        kind, _, params = (form.contentType or "").partition(";")
        if kind.strip().lower() != "text/plain" or form.data is None:
            continue
        charset = "utf-8"
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
        where = f"DiagnosticReport.presentedForm[{i}]"
        try:
            codecs.lookup(charset)
            text = bytes(form.data).decode(charset)
        except LookupError:
            raise ReportContentError(f"{where}.contentType: unknown charset {charset!r}") from None
        except UnicodeDecodeError:
            raise ReportContentError(f"{where}.data is not text in {charset}") from None
        if "\x00" in text:
            raise ReportContentError(f"{where}.data holds a NUL byte: not plain text")
        parts.append(text.strip())
    if report.conclusion and report.conclusion.strip():
        parts.append(report.conclusion.strip())
    text = "\n\n".join(p for p in parts if p)
    if not text:
        raise ReportContentError(
            "no report text: DiagnosticReport.conclusion is empty and no presentedForm is "
            "text/plain with data"
        )
    return text
