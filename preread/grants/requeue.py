"""A new grant lets studies that waited for one be read: their ``not_authorized`` jobs go back
to the queue (the service dispatches them; a CLI-made grant is picked up by its next sweep)."""

from __future__ import annotations

from datetime import UTC, datetime

from preread.grants.matching import StudyScope, covers
from preread.grants.purposes import Purpose
from preread.grants.records import Grant
from preread.store import JobRecord, JobState, JobStore, StudyFilter, StudySummary


def queue_newly_covered(
    store: JobStore, grant: Grant, at: datetime | None = None
) -> list[JobRecord]:
    """Re-queue the current ``not_authorized`` jobs of the grant's tenant that it covers."""
    if grant.purpose is not Purpose.CLINICAL_PREREAD:
        return []  # only clinical pre-reads are jobs
    moment = at or datetime.now(UTC)
    where = StudyFilter(tenant=grant.tenant, states=(JobState.NOT_AUTHORIZED,), include_shadow=True)
    waiting: list[StudySummary] = []
    offset = 0
    while True:  # read them all first: re-queued studies leave the filter
        page = store.list_studies(where=where, limit=200, offset=offset)
        waiting.extend(page.items)
        offset += page.limit
        if offset >= page.total:
            break
    queued: list[JobRecord] = []
    for item in waiting:
        if item.study is None or not covers(
            grant, StudyScope.of(item.study.facts), Purpose.CLINICAL_PREREAD, moment
        ):
            continue
        queued += [store.retry(j.id) for j in item.jobs if j.state is JobState.NOT_AUTHORIZED]
    return queued
