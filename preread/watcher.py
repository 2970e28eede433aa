"""The change-feed watcher: every stable study becomes a job, exactly once per content.

It follows Orthanc's ``/changes`` log from a cursor kept in the job store. The jobs made from a
page of changes and the cursor after that page are committed in one transaction, so a watcher
restarted at any point neither misses nor repeats a study. Because the change log is bounded
(Orthanc forgets old changes) and a cursor can be reset, :meth:`Watcher.reconcile` sweeps every
stable study now and then and enqueues those without a current job for the content they have.

A study's *fingerprint* counts its instances, excluding PreRead's own SR/SEG series (storing a
result must not look like new images), plus a digest of its series: a study that receives more
images gets a new fingerprint and is read again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dicom_gateway.errors import ResourceNotFoundError
from dicom_gateway.selection import is_preread_series
from dicom_gateway.source import StudyInfo, StudySource
from preread.domain import ModelRef
from preread.store import JobRecord, JobStore, StudyFingerprint, Transaction

log = logging.getLogger(__name__)
CURSOR = "orthanc-changes"


def fingerprint(source: StudySource, study: StudyInfo) -> StudyFingerprint:
    """Instances of the study's own series (PreRead's excluded) and a digest of them."""
    parts: list[str] = []
    instances = 0
    for sid in study.series_ids:
        s = source.series(sid)
        if is_preread_series(s.modality, s.series_description):
            continue
        instances += s.instance_count
        parts.append(f"{s.series_instance_uid}:{s.instance_count}")
    digest = hashlib.sha256("|".join(sorted(parts)).encode()).hexdigest()[:16]
    return StudyFingerprint(instances=instances, last_update=digest)


@dataclass
class WatchStats:
    pages: int = 0
    stable_studies: int = 0
    created: int = 0


class Watcher:
    """Turns stable studies into jobs for each model; ``dispatch`` gets every new job id."""

    def __init__(
        self,
        source: StudySource,
        store: JobStore,
        models: Sequence[ModelRef],
        dispatch: Callable[[str], None],
        *,
        page_size: int = 100,
    ) -> None:
        self.source = source
        self.store = store
        self.models = list(models)
        self.dispatch = dispatch
        self.page_size = page_size

    def poll(self) -> WatchStats:
        """Follow the change log to its end; commit jobs and the cursor page by page."""
        stats = WatchStats()
        while True:
            since = self.store.get_cursor(CURSOR) or 0
            page = self.source.changes(since=since, limit=self.page_size)
            new_jobs: list[JobRecord] = []
            studies = sorted({c.orthanc_id for c in page.changes if c.is_stable_study})
            seen = [s for s in (self._look(oid) for oid in studies) if s is not None]
            with self.store.transaction() as tx:  # the jobs and the cursor, together
                for info, fp in seen:
                    new_jobs += self._enqueue(tx, info, fp)
                tx.set_cursor(CURSOR, page.last)
            stats.pages += 1
            stats.stable_studies += len(studies)
            stats.created += len(new_jobs)
            for job in new_jobs:
                self.dispatch(job.id)
            if page.done or not page.changes:
                return stats

    def reconcile(self) -> int:
        """Enqueue stable studies whose current content has no job (missed changes)."""
        created: list[JobRecord] = []
        for info in self.source.studies():
            if not info.is_stable:
                continue
            fp = fingerprint(self.source, info)
            with self.store.transaction() as tx:
                created += self._enqueue(tx, info, fp)
        for job in created:
            self.dispatch(job.id)
        return len(created)

    def _look(self, study_id: str) -> tuple[StudyInfo, StudyFingerprint] | None:
        try:
            info = self.source.study(study_id)
            return info, fingerprint(self.source, info)
        except ResourceNotFoundError:
            log.info("study %s was deleted before it could be read", study_id)
            return None

    def _enqueue(self, tx: Transaction, info: StudyInfo, fp: StudyFingerprint) -> list[JobRecord]:
        if fp.instances == 0:
            return []  # only PreRead's own series: nothing to read
        out = []
        for model in self.models:
            res = tx.enqueue(info.study_instance_uid, info.orthanc_id, model, fp)
            if res.created:
                out.append(res.job)
        return out
