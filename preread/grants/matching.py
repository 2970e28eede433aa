"""Whether a grant covers a use of a study: pure functions over typed records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from preread.grants.purposes import Purpose
from preread.grants.records import Grant
from preread.store.records import StudyFacts


@dataclass(frozen=True)
class StudyScope:
    """What a grant's scope is compared with: where the study came from and what it is."""

    tenant: str
    study_instance_uid: str
    sender_aet: str
    modalities: tuple[str, ...]
    study_date: str  # DICOM DA or "" when absent

    @classmethod
    def of(cls, facts: StudyFacts) -> StudyScope:
        """The scope of a study as the watcher recorded it."""
        return cls(
            tenant=facts.tenant or "",
            study_instance_uid=facts.study_instance_uid,
            sender_aet=facts.sender_aet,
            modalities=tuple(facts.modalities.split()),
            study_date=facts.study_date,
        )


def coverage_problem(grant: Grant, study: StudyScope, purpose: Purpose, at: datetime) -> str | None:
    """Why ``grant`` does not cover ``purpose`` on ``study`` at ``at``; None when it does."""
    spec = grant.spec
    if grant.revoked_at is not None and grant.revoked_at <= at:
        return f"grant {grant.id} was revoked"
    if not spec.valid_from <= at < spec.valid_to:
        return (
            f"grant {grant.id} is valid from {spec.valid_from:%Y-%m-%d} to {spec.valid_to:%Y-%m-%d}"
        )
    if spec.tenant != study.tenant:
        return f"grant {grant.id} is for another source"
    if spec.purpose is not purpose:
        return f"grant {grant.id} is for {spec.purpose.value}"
    if spec.sender_aets and study.sender_aet not in spec.sender_aets:
        return f"grant {grant.id} does not cover the sender {study.sender_aet or '(none)'!r}"
    if spec.modalities and not set(study.modalities) & set(spec.modalities):
        shown = " ".join(study.modalities) or "(none)"
        return f"grant {grant.id} covers {' '.join(spec.modalities)}, not {shown}"
    if spec.study_date_from or spec.study_date_to:
        if not study.study_date:
            return f"grant {grant.id} covers a date range; the study has no StudyDate"
        if spec.study_date_from and study.study_date < spec.study_date_from:
            return f"grant {grant.id} covers studies from {spec.study_date_from}"
        if spec.study_date_to and study.study_date > spec.study_date_to:
            return f"grant {grant.id} covers studies until {spec.study_date_to}"
    if spec.study_uids is not None and study.study_instance_uid not in spec.study_uids:
        return f"grant {grant.id} lists other studies"
    return None


def covers(grant: Grant, study: StudyScope, purpose: Purpose, at: datetime) -> bool:
    return coverage_problem(grant, study, purpose, at) is None


def first_covering(
    grants: Iterable[Grant], study: StudyScope, purpose: Purpose, at: datetime
) -> tuple[Grant | None, str]:
    """The first of ``grants`` covering ``purpose`` on ``study`` at ``at``, else None and why
    none does."""
    problems = []
    for grant in grants:
        problem = coverage_problem(grant, study, purpose, at)
        if problem is None:
            return grant, ""
        problems.append(problem)
    if not problems:
        return None, f"no valid {purpose.value} grant for the source {study.tenant!r}"
    return None, "; ".join(problems[:3])
