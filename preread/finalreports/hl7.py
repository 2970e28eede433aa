"""HL7 v2 final reports (ORU^R01) read, and their acknowledgements (ACK) written — pure.

A hospital's RIS sends each final report as an ORU^R01 message (HL7 v2.3 – v2.8, ch. 7):

========  =====================================================================================
MSH       -3/-4 sending application/facility (-4's first component maps the sender to a tenant,
          ``PREREAD_MLLP_SENDERS``), -9 message type ``ORU^R01``, -10 control id (echoed in
          MSA-2), -12 version, -18 character set
OBR       the accession number: OBR-18 (placer field 1, as IHE Radiology and PreRead's own
          ORU carry it) or OBR-3 (filler order number), first component, as
          ``PREREAD_MLLP_ACCESSION_FIELD`` says — one field, no fallback to the other; every
          OBR of the message must carry the same one. OBR-25 result status: ``F`` (final) or
          ``C`` (corrected); empty counts as final; anything else (P, I, X…) is refused.
OBX       the report text: OBX-5 of the OBX segments whose value type (OBX-2) is TX, FT or ST,
          in order, repetitions as lines, joined by newlines; HL7 escapes (``\\F\\ \\S\\ \\T\\
          \\R\\ \\E\\ \\.br\\ \\Xhh\\``) are decoded
========  =====================================================================================

:func:`ack` writes the answer: ``MSH`` (sender and receiver swapped, ``ACK^R01^ACK``), ``MSA``
(``AA`` stored, ``AE`` an application error: the report cannot be compared or stored, ``AR``
rejected: not an ORU^R01, an unknown sender) with the text, and for AE/AR an ``ERR`` with the
HL7 error code (table 0357) and the text (ERR-8). Texts are ASCII and escaped.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from preread.finalreports.errors import MessageRejectedError, ReportContentError
from preread.finalreports.records import (
    MAX_ACCESSION_LENGTH,
    Channel,
    IncomingReport,
    ReportStatus,
)

__all__ = ["AckCode", "MessageHeader", "ack", "parse_header", "parse_report"]

AckCode = Literal["AA", "AE", "AR"]
AccessionField = Literal["OBR-18", "OBR-3"]
TEXT_TYPES = ("TX", "FT", "ST")
_STATUSES = {"": ReportStatus.FINAL, "F": ReportStatus.FINAL, "C": ReportStatus.CORRECTED}
_HEX = re.compile(r"^X([0-9A-Fa-f]{2})+$")


@dataclass(frozen=True)
class MessageHeader:
    """What an ACK needs of a message's MSH, and the sender."""

    field_separator: str
    encoding: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    control_id: str
    processing_id: str
    version: str

    @property
    def component(self) -> str:
        return self.encoding[0]


def _segments(message: str) -> list[str]:
    return [s.strip("\n") for s in re.split(r"\r\n?|\n", message) if s.strip("\n")]


def parse_header(message: str) -> MessageHeader:
    """The MSH of ``message`` (ER7, segments separated by CR).

    Raises:
        MessageRejectedError: it does not begin with an MSH segment.
    """
    segments = _segments(message)
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise MessageRejectedError(
            "not an HL7 v2 message: it does not begin with an MSH segment", hl7_error_code="100"
        )
    msh = segments[0]
    separator = msh[3]
    fields = msh.split(separator)
    encoding = fields[1] if len(fields) > 1 and len(fields[1]) >= 4 else "^~\\&"

    def field(number: int) -> str:  # MSH-n is fields[n - 1]: MSH-1 is the separator itself
        return fields[number - 1] if len(fields) >= number else ""

    component = encoding[0]
    kind = component.join(field(9).split(component)[:2])
    return MessageHeader(
        field_separator=separator,
        encoding=encoding,
        sending_application=field(3).split(component)[0],
        sending_facility=field(4).split(component)[0],
        receiving_application=field(5).split(component)[0],
        receiving_facility=field(6).split(component)[0],
        message_type=kind,
        control_id=field(10),
        processing_id=field(11).split(component)[0] or "P",
        version=field(12).split(component)[0],
    )


def parse_report(
    message: str, header: MessageHeader, accession_field: AccessionField
) -> IncomingReport:
    """The final report an ORU^R01 carries (the table in the module docstring).

    Raises:
        MessageRejectedError: the message is not an ORU^R01.
        ReportContentError: no OBR, no accession number in ``accession_field``, OBRs naming
            different ones, a result status other than final/corrected, or no report text.
    """
    if header.message_type != f"ORU{header.component}R01":
        raise MessageRejectedError(
            f"message type {header.message_type or '(empty)'} (MSH-9) is not ORU^R01: "
            "PreRead receives final reports only"
        )
    segments = [s.split(header.field_separator) for s in _segments(message)[1:]]
    obrs = [s for s in segments if s[0] == "OBR"]
    if not obrs:
        raise ReportContentError("no OBR segment: the message names no exam")
    number = int(accession_field.split("-")[1])
    accessions = {a.strip() for a in _accessions(obrs, number, header)}
    if accessions == {""}:
        raise ReportContentError(
            f"no accession number in {accession_field} "
            f"({'placer field 1' if number == 18 else 'filler order number'})"
        )
    if len(accessions) > 1:
        raise ReportContentError(
            f"the OBR segments name {len(accessions)} different accession numbers "
            f"({accession_field}): send one report per exam"
        )
    statuses = {_field(obr, 25).split(header.component)[0].strip().upper() for obr in obrs}
    unknown = sorted(statuses - set(_STATUSES))
    if unknown:
        raise ReportContentError(
            f"result status {unknown[0]!r} (OBR-25) is not final (F) or corrected (C): "
            "only final reports are compared",
            hl7_error_code="103",
        )
    lines = [
        _unescape(repetition, header)
        for obx in segments
        if obx[0] == "OBX" and _field(obx, 2).strip().upper() in TEXT_TYPES
        for repetition in _field(obx, 5).split(header.encoding[1])
    ]
    text = "\n".join(lines).strip()
    if not text:
        raise ReportContentError(
            "no report text: no OBX segment of value type TX, FT or ST has a value (OBX-5)"
        )
    accession = accessions.pop()
    if len(accession) > MAX_ACCESSION_LENGTH:
        raise ReportContentError(
            f"the accession number ({accession_field}) is over {MAX_ACCESSION_LENGTH} characters"
        )
    status = ReportStatus.CORRECTED if "C" in statuses else ReportStatus.FINAL
    return IncomingReport(accession, text, status, Channel.HL7, header.sending_facility)


def _accessions(obrs: list[list[str]], number: int, header: MessageHeader) -> list[str]:
    return [_unescape(_field(obr, number).split(header.component)[0], header) for obr in obrs]


def _field(segment: list[str], number: int) -> str:
    return segment[number] if len(segment) > number else ""


def _unescape(value: str, header: MessageHeader) -> str:
    """HL7 escape sequences decoded (v2.5.1 ch. 2.7); formatting ones become newlines or go."""
    escape = header.encoding[2] if len(header.encoding) > 2 else "\\"
    if escape not in value:
        return value
    plain = {
        "F": header.field_separator,
        "S": header.encoding[0],
        "R": header.encoding[1],
        "E": escape,
        "T": header.encoding[3] if len(header.encoding) > 3 else "&",
        ".br": "\n",
    }
    parts = value.split(escape)
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        sequence = parts[i]
        if i + 1 >= len(parts):  # an unpaired escape character: kept as it is
            out.append(escape + sequence)
            break
        if sequence in plain:
            out.append(plain[sequence])
        elif _HEX.match(sequence):
            out.append(bytes.fromhex(sequence[1:]).decode("utf-8", errors="replace"))
        out.append(parts[i + 1])
    return "".join(out)


def _escape(text: str) -> str:
    """ASCII text for an ACK field, HL7 delimiters escaped (the standard ones: the ACK's MSH-2
    is ``^~\\&``)."""
    ascii_text = text.encode("ascii", errors="replace").decode("ascii")
    ascii_text = re.sub(r"[\x00-\x1f]", " ", ascii_text)
    out = ascii_text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("&", "\\T\\").replace("~", "\\R\\")[:400]


def ack(
    header: MessageHeader | None,
    code: AckCode,
    text: str,
    *,
    error_code: str | None = None,
    now: datetime | None = None,
    control_id: str = "",
) -> str:
    """The ACK to ``header``'s message (None: one whose MSH could not be read), ER7 with CR
    segment separators; ``error_code`` (HL7 table 0357) goes into ERR for AE/AR."""
    at = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    h = header
    fields = [
        "MSH",
        "^~\\&",
        "PREREAD",
        "PREREAD",
        _escape(h.sending_application) if h else "",
        _escape(h.sending_facility) if h else "",
        at,
        "",
        "ACK^R01^ACK",
        _escape(control_id or uuid.uuid4().hex[:20]),
        _escape(h.processing_id) if h else "P",
        _escape(h.version) if h and h.version else "2.5.1",
    ]
    segments = [
        "|".join(fields),
        "|".join(["MSA", code, _escape(h.control_id) if h else "", _escape(text)]),
    ]
    if code != "AA":
        segments.append(
            "|".join(
                ["ERR", "", "", f"{error_code or '207'}^^HL70357", "E", "", "", "", _escape(text)]
            )
        )
    return "\r".join(segments) + "\r"
