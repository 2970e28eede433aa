"""The final reports' errors, and what each becomes at the edges.

FinalReportError (a :class:`~preread.errors.PrereadError`)
├── ReportContentError    the report is not one PreRead can compare: no accession number, no
│                         text, not final, a FHIR field wrong (HTTP 422; HL7 ACK ``AE``)
└── MessageRejectedError  the HL7 message itself is refused: not HL7, not ORU^R01, a sending
                          facility of no tenant (HL7 ACK ``AR``)

Each message names what was wrong (the field, the segment), never the report's text.
"""

from __future__ import annotations

from preread.errors import PrereadError

__all__ = ["FinalReportError", "MessageRejectedError", "ReportContentError"]


class FinalReportError(PrereadError):
    """Base of the final reports' errors."""

    hl7_error_code = "207"
    """HL7 table 0357 (message error condition codes): 207 application internal error."""

    def __init__(self, message: str, *, hl7_error_code: str | None = None) -> None:
        super().__init__(message)
        if hl7_error_code is not None:
            self.hl7_error_code = hl7_error_code


class ReportContentError(FinalReportError):
    """The report cannot be compared (422; HL7 ``AE``); the message names the field."""

    hl7_error_code = "101"  # required field missing


class MessageRejectedError(FinalReportError):
    """The HL7 message is refused as a whole (HL7 ``AR``); the message says why."""

    hl7_error_code = "200"  # unsupported message type
