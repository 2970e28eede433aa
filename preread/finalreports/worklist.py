"""The tenant's final reports, each compared with the AI's reading of its study.

:func:`tenant_comparisons` first matches the reports that came before their study
(:meth:`~preread.finalreports.store.FinalReportStore.match_pending`), then takes, for each
report, its study's current jobs (:meth:`~preread.store.JobStore.current_for_study`, which
leaves shadow readings out) and :func:`compare_report` compares the newest done job whose
result reads lung nodules (a result whose concept is another finding is not comparable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from preread.finalreports.discrepancies import AiFinding, Discrepancy, ai_findings, compare
from preread.finalreports.records import FinalReport
from preread.finalreports.store import FinalReportStore
from preread.store import JobRecord, JobState, JobStore

__all__ = ["ComparisonState", "StudyComparison", "compare_report", "tenant_comparisons"]

NODULE_CODE = "27925004"  # SNOMED CT "Nodule": the lung-nodule models' finding type
LUNG_CODE = "39607008"  # SNOMED CT "Lung structure"


class ComparisonState(StrEnum):
    COMPARED = "compared"
    UNMATCHED = "unmatched"
    """No study of the tenant carries the report's accession number (yet)."""
    AWAITING_AI = "awaiting-ai"
    """The study has no finished AI reading of lung nodules (yet)."""


@dataclass(frozen=True)
class StudyComparison:
    report: FinalReport
    state: ComparisonState
    job: JobRecord | None = None
    ai: tuple[AiFinding, ...] = ()
    discrepancies: tuple[Discrepancy, ...] = ()

    @property
    def model(self) -> str | None:
        return None if self.job is None else f"{self.job.model_id} {self.job.model_version}"


def _reads_lung_nodules(job: JobRecord) -> bool:
    result = job.result or {}
    concept = result.get("concept")
    if concept is None:  # results stored before concepts were recorded: lung nodules
        return True
    if not isinstance(concept, dict):
        return False
    finding = concept.get("finding") or {}
    site = concept.get("site") or {}
    return (
        isinstance(finding, dict)
        and finding.get("code") == NODULE_CODE
        and (not isinstance(site, dict) or site.get("code") in (None, LUNG_CODE))
    )


def compare_report(report: FinalReport, jobs: Sequence[JobRecord]) -> StudyComparison:
    """``report`` against the newest done, non-shadow job of ``jobs`` that reads lung nodules
    (the reading the report API shows: :attr:`preread.results.StudyView.done`)."""
    if report.study_instance_uid is None:
        return StudyComparison(report, ComparisonState.UNMATCHED)
    job = max(
        (
            j
            for j in jobs
            if j.state is JobState.DONE and j.result and not j.shadow and _reads_lung_nodules(j)
        ),
        key=lambda j: (j.finished_at or j.updated_at, j.id),
        default=None,
    )
    if job is None or job.result is None:
        return StudyComparison(report, ComparisonState.AWAITING_AI)
    findings = ai_findings(job.result)
    return StudyComparison(
        report, ComparisonState.COMPARED, job, findings, compare(findings, report.mentions)
    )


def tenant_comparisons(
    jobs: JobStore, reports: FinalReportStore, tenant: str
) -> list[StudyComparison]:
    """Every final report of ``tenant``, the latest received first, compared."""
    reports.match_pending(tenant)
    out = []
    for report in reports.list(tenant):
        current = (
            jobs.current_for_study(report.study_instance_uid)
            if report.study_instance_uid is not None
            else ()
        )
        out.append(compare_report(report, current))
    return out
