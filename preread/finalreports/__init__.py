"""Final radiology reports compared with the AI (issue 15, item 5).

* :mod:`.extractor` (with :mod:`.lexicon`, :mod:`.mentions`) — lung nodule mentions in a
  report's text, English and Chinese, by rules (pure); :mod:`.evaluation` measures it;
* :mod:`.hl7` and :mod:`.fhir` — an HL7 v2 ORU^R01 or a FHIR DiagnosticReport read as an
  :class:`IncomingReport` (pure); :mod:`.mllp` — the MLLP listener;
* :mod:`.intake` — :func:`receive`, the one way in, and :mod:`.store` (table
  ``final_reports``: one report per tenant and accession number, matched to its study);
* :mod:`.discrepancies` — the AI's reading against the report (pure); :mod:`.worklist` — the
  tenant's reports compared; :mod:`.exports` — JSON and a FHIR Bundle of DetectedIssues.
"""

from preread.finalreports.discrepancies import AiFinding, Discrepancy, DiscrepancyKind, compare
from preread.finalreports.errors import FinalReportError, MessageRejectedError, ReportContentError
from preread.finalreports.extractor import extract, mentions_nodule_ge6mm, summarize_text
from preread.finalreports.intake import receive
from preread.finalreports.mentions import NoduleMention, NoduleType, ReportSummary
from preread.finalreports.records import FinalReport, IncomingReport, Received
from preread.finalreports.store import FinalReportStore
from preread.finalreports.worklist import StudyComparison, tenant_comparisons

__all__ = [
    "AiFinding",
    "Discrepancy",
    "DiscrepancyKind",
    "FinalReport",
    "FinalReportError",
    "FinalReportStore",
    "IncomingReport",
    "MessageRejectedError",
    "NoduleMention",
    "NoduleType",
    "Received",
    "ReportContentError",
    "ReportSummary",
    "StudyComparison",
    "compare",
    "extract",
    "mentions_nodule_ge6mm",
    "receive",
    "summarize_text",
    "tenant_comparisons",
]
