"""The final reports' typed records: a report as received (:class:`IncomingReport`) and as
stored (:class:`FinalReport`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from preread.finalreports.mentions import NoduleMention, ReportSummary

__all__ = ["Channel", "FinalReport", "IncomingReport", "Received", "ReportStatus"]

MAX_ACCESSION_LENGTH = 64


class Channel(StrEnum):
    """How a report came: HL7 v2 ORU^R01 over MLLP, or a FHIR DiagnosticReport over the API."""

    HL7 = "hl7"
    FHIR = "fhir"


class ReportStatus(StrEnum):
    """A final report, or a correction of one (HL7 OBR-25 F/C; FHIR final vs amended,
    corrected, appended)."""

    FINAL = "final"
    CORRECTED = "corrected"


@dataclass(frozen=True)
class IncomingReport:
    """A final report as a channel received it, checked: what
    :func:`~preread.finalreports.intake.receive` stores.

    ``sender``: the sending facility (MSH-4) or the API client's id."""

    accession_number: str
    text: str
    status: ReportStatus
    channel: Channel
    sender: str

    def __post_init__(self) -> None:
        if not self.accession_number.strip():
            raise ValueError("a final report needs an accession number")
        if len(self.accession_number) > MAX_ACCESSION_LENGTH:
            raise ValueError(f"an accession number has at most {MAX_ACCESSION_LENGTH} characters")
        if not self.text.strip():
            raise ValueError("a final report needs text")


@dataclass(frozen=True)
class FinalReport:
    """A stored final report of one tenant's exam (one per accession number).

    ``version`` counts the reports received for the accession (a correction replaces the
    text); ``mentions`` are the extractor's (``extractor`` its version) and ``summary`` theirs;
    ``study_instance_uid`` is the tenant's study with this accession number (None: none yet).
    """

    id: str
    tenant: str
    accession_number: str
    version: int
    status: ReportStatus
    channel: Channel
    sender: str
    text: str
    mentions: tuple[NoduleMention, ...]
    summary: ReportSummary
    extractor: str
    study_instance_uid: str | None
    first_received_at: datetime
    received_at: datetime
    matched_at: datetime | None


@dataclass(frozen=True)
class Received:
    """What :func:`~preread.finalreports.intake.receive` did: ``report`` as stored now;
    ``created``: the first report of its accession (else a correction, a new version);
    ``repeated``: the same text and status as the stored version, sent again (a sender's
    retry): nothing changed but the time it was last received."""

    report: FinalReport
    created: bool
    repeated: bool = False
