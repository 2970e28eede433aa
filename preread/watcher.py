"""The change-feed watcher: every stable study becomes a job, exactly once per content.

It follows Orthanc's ``/changes`` log from a cursor kept in the job store. The jobs made from a
page of changes and the cursor after that page are committed in one transaction, so a watcher
restarted at any point neither misses nor repeats a study. Because the change log is bounded
(Orthanc forgets old changes) and a cursor can be reset, :meth:`Watcher.reconcile` sweeps every
stable study now and then and enqueues those without a current job for the content they have.

Each study is recorded with its tenant — that of the AE title that sent it (Orthanc's
``RemoteAET``), through ``tenant_of`` (settings: ``PREREAD_TENANTS``, ``PREREAD_DEFAULT_TENANT``)
— and the identifying tags the reports need, in the same transaction as its jobs.

A study's *fingerprint* counts its instances, excluding PreRead's own SR/SEG series (storing a
result must not look like new images), plus a digest of its series: a study that receives more
images gets a new fingerprint and is read again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from dicom_gateway.errors import ResourceNotFoundError
from dicom_gateway.selection import is_preread_series
from dicom_gateway.source import StudyInfo, StudySource
from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.domain import ModelRef
from preread.lifecycle.lineup import Reading
from preread.store import (
    JobRecord,
    JobState,
    JobStore,
    StudyFacts,
    StudyFingerprint,
    Transaction,
)

log = logging.getLogger(__name__)
CURSOR = "orthanc-changes"


@dataclass(frozen=True)
class Survey:
    """What the watcher learns of a study from its series (PreRead's own excluded): the
    fingerprint, the sender — the calling AE title that sent the first of its own series by
    C-STORE (``""`` when none came by DICOM: STOW-RS, REST, a folder) — and the modalities."""

    fingerprint: StudyFingerprint
    sender: str
    modalities: tuple[str, ...]


def fingerprint(source: StudySource, study: StudyInfo) -> StudyFingerprint:
    """Instances of the study's own series (PreRead's excluded) and a digest of them."""
    return survey(source, study).fingerprint


def survey(source: StudySource, study: StudyInfo) -> Survey:
    """The study's :class:`Survey` (one request per series, no pixel data)."""
    parts: list[str] = []
    senders: list[tuple[str, str]] = []
    modalities: set[str] = set()
    instances = 0
    for sid in study.series_ids:
        s = source.series(sid)
        if is_preread_series(s.modality, s.series_description):
            continue
        instances += s.instance_count
        parts.append(f"{s.series_instance_uid}:{s.instance_count}")
        if s.modality:
            modalities.add(s.modality)
        if s.remote_aet:
            senders.append((s.series_instance_uid, s.remote_aet.strip()))
    digest = hashlib.sha256("|".join(sorted(parts)).encode()).hexdigest()[:16]
    return Survey(
        fingerprint=StudyFingerprint(instances=instances, last_update=digest),
        sender=min(senders)[1] if senders else "",
        modalities=tuple(sorted(modalities)),
    )


def study_facts(info: StudyInfo, seen: Survey, tenant: str | None) -> StudyFacts:
    """What the store keeps of a study (for the tenant checks and the reports)."""
    return StudyFacts(
        study_instance_uid=info.study_instance_uid,
        orthanc_study_id=info.orthanc_id,
        tenant=tenant,
        sender_aet=seen.sender,
        patient_id=info.patient_id,
        issuer_of_patient_id="",  # not among Orthanc's main tags; the reports fall back
        patient_name=info.patient_name,
        patient_birth_date=info.patient_birth_date,
        patient_sex=info.patient_sex,
        accession_number=info.accession_number,
        study_date=info.study_date,
        study_time=info.study_time,
        study_description=info.study_description,
        modalities=" ".join(seen.modalities),
    )


@runtime_checkable
class ReadingSource(Protocol):
    """Which model versions read each study now (:class:`preread.lifecycle.LiveLineup`)."""

    def readings(self) -> tuple[Reading, ...]: ...


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
        models: Sequence[ModelRef] | ReadingSource,
        dispatch: Callable[[str], None],
        *,
        tenant_of: Callable[[str], str | None],
        audit: AuditLog,
        page_size: int = 100,
    ) -> None:
        self.source = source
        self.store = store
        self.models = models if isinstance(models, ReadingSource) else list(models)
        self.dispatch = dispatch
        self.tenant_of = tenant_of
        self.audit = audit
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
            readings = self._readings()  # outside the transaction: it reads the stages
            with self.store.transaction() as tx:  # the jobs and the cursor, together
                for info, surveyed in seen:
                    new_jobs += self._enqueue(tx, info, surveyed, readings)
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
            surveyed = survey(self.source, info)
            readings = self._readings()
            with self.store.transaction() as tx:
                created += self._enqueue(tx, info, surveyed, readings)
        for job in created:
            self.dispatch(job.id)
        return len(created)

    def analyze(self, study_instance_uid: str) -> tuple[JobRecord, ...]:
        """Read a study now, on request: record it, enqueue the jobs its content needs (as the
        change feed would) and send failed ones back to the queue. Returns its current jobs.

        Idempotent: a study whose current jobs already read its current content gets no new
        job (the models are deterministic: reading the same images again gives the same
        result). Raises :class:`ResourceNotFoundError` when Orthanc has no such study.
        """
        orthanc_study = self.source.find_study(study_instance_uid)
        if orthanc_study is None:
            raise ResourceNotFoundError("study", study_instance_uid)
        info = self.source.study(orthanc_study)
        seen, readings = survey(self.source, info), self._readings()
        with self.store.transaction() as tx:
            created = self._enqueue(tx, info, seen, readings)
        retried = [
            self.store.retry(job.id)
            for job in self.store.current_for_study(study_instance_uid)
            if job.state is JobState.FAILED
        ]
        for job in [*created, *retried]:
            self.dispatch(job.id)
        return self.store.current_for_study(study_instance_uid)

    def _look(self, study_id: str) -> tuple[StudyInfo, Survey] | None:
        try:
            info = self.source.study(study_id)
            return info, survey(self.source, info)
        except ResourceNotFoundError:
            log.info("study %s was deleted before it could be read", study_id)
            return None

    def _enqueue(
        self, tx: Transaction, info: StudyInfo, seen: Survey, readings: tuple[Reading, ...]
    ) -> list[JobRecord]:
        fp = seen.fingerprint
        if fp.instances == 0:
            return []  # only PreRead's own series: nothing to read
        if tx.held_by_backfill(info.study_instance_uid):
            return []  # an archived study a backfill moved here to read (preread.backfill)
        recorded = tx.record_study(study_facts(info, seen, self.tenant_of(seen.sender)))
        if recorded.first_seen_at == recorded.updated_at:  # new: received, audited with it
            self.audit.record(
                AuditEvent(
                    actor="system:watcher",
                    action=AuditAction.STUDY_RECEIVED,
                    outcome=Outcome.SUCCESS,
                    tenant=recorded.tenant,
                    study_instance_uid=info.study_instance_uid,
                    detail={"sender_aet": seen.sender, "instances": fp.instances},
                ),
                session=tx.session,
            )
        out = []
        for reading in readings:
            res = tx.enqueue(
                info.study_instance_uid, info.orthanc_id, reading.model, fp, shadow=reading.shadow
            )
            if res.created:
                out.append(res.job)
        return out

    def _readings(self) -> tuple[Reading, ...]:
        """The versions that read each study now: all for real (a fixed list), or as the
        model stages say (the active version, and those in shadow)."""
        if isinstance(self.models, ReadingSource):
            return self.models.readings()
        return tuple(Reading(m) for m in self.models)
