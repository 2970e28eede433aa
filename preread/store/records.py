"""The typed objects the job store takes and returns; no ORM object ever leaves the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from preread.store.states import FINISHED, IN_PROGRESS, JobState

JsonObject = dict[str, Any]


class ModelKey(Protocol):
    """What identifies a model for the store; :class:`preread.domain.ModelRef` is one."""

    @property
    def id(self) -> str: ...

    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class StudyFingerprint:
    """What the watcher saw of a study, to tell when it changed after it was read.

    ``instances`` is the number of instances Orthanc holds for the study and ``last_update`` its
    ``LastUpdate`` tag (Orthanc's ``/studies/{id}`` answer, e.g. ``"20240131T101500"``). Two
    fingerprints that differ in anything mean "the study changed: read it again" — re-reading an
    unchanged study is safe, missing a grown one is not.
    """

    instances: int
    last_update: str = ""

    def __post_init__(self) -> None:
        if self.instances < 0:
            raise ValueError(f"instances must be >= 0, got {self.instances}")

    @property
    def token(self) -> str:
        """The text stored in the database (``"<instances>@<last_update>"``)."""
        return f"{self.instances}@{self.last_update}"

    @classmethod
    def from_token(cls, token: str) -> StudyFingerprint:
        instances, _, last_update = token.partition("@")
        return cls(int(instances), last_update)


@dataclass(frozen=True)
class StoredObject:
    """One DICOM object PreRead wrote into the study (DICOM PS3.3 C.7.3.1 / C.12.1 UIDs)."""

    series_instance_uid: str
    sop_instance_uid: str
    orthanc_series_id: str | None = None


@dataclass(frozen=True)
class JobOutputs:
    """What a job wrote (or is about to write) into Orthanc, so that it can be removed when a
    newer result supersedes it, or replaced when the same job is run again.

    ``sc`` are the Secondary Capture key images (one per finding, all in one series), ``kos``
    the Key Object Selection document (``PREREAD_OUTPUTS``: either may be off)."""

    sr: StoredObject | None = None
    seg: StoredObject | None = None
    sc: tuple[StoredObject, ...] = ()
    kos: StoredObject | None = None

    def __bool__(self) -> bool:
        return bool(self.objects)

    @property
    def objects(self) -> tuple[StoredObject, ...]:
        """Every object named, SR first."""
        return tuple(o for o in (self.sr, self.seg, *self.sc, self.kos) if o is not None)

    def merged(self, newer: JobOutputs) -> JobOutputs:
        """These outputs with every object ``newer`` names replaced by ``newer``'s."""
        return JobOutputs(
            sr=newer.sr or self.sr,
            seg=newer.seg or self.seg,
            sc=newer.sc or self.sc,
            kos=newer.kos or self.kos,
        )


@dataclass(frozen=True)
class JobUpdate:
    """Facts a worker records about the job it holds; ``None`` leaves a field as it is.

    ``timings`` (seconds per stage: fetch, decode, volume, preprocess, infer, postprocess,
    encode, store) are merged into those already recorded, and so are ``outputs``, unless
    ``replace_outputs``: then ``outputs`` are all the job wrote (an attempt that read other
    content than the one before it, whose objects it removed from Orthanc first).
    """

    series_instance_uid: str | None = None
    provider_requested: str | None = None
    provider_used: str | None = None
    provider_warning: str | None = None
    timings: Mapping[str, float] | None = None
    outputs: JobOutputs | None = None
    replace_outputs: bool = False
    acquisition: Mapping[str, Any] | None = None
    """The series' acquisition group and input statistics (:mod:`preread.monitoring`)."""


class SeriesVerdict(Protocol):
    """What the store records of a series decision (:class:`dicom_gateway.selection.SeriesDecision`
    is one)."""

    @property
    def series_instance_uid(self) -> str: ...

    @property
    def eligible(self) -> bool: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class SeriesDecision:
    """The series selection rules' verdict on one series of a study, as recorded."""

    series_instance_uid: str
    eligible: bool
    reason: str


@dataclass(frozen=True)
class JobRecord:
    """One job as stored: one study read by one model version (or waiting to be).

    ``fingerprint`` is the study as this job reads it; ``rerun_fingerprint`` is set when the
    study changed while the job was running (it will be read again when this run finishes).
    ``supersedes`` / ``superseded_by`` link the jobs of the same study and model version in time.
    All times are timezone-aware UTC.
    """

    id: str
    study_instance_uid: str
    orthanc_study_id: str
    model_id: str
    model_version: str
    state: JobState
    attempts: int
    fingerprint: StudyFingerprint
    rerun_fingerprint: StudyFingerprint | None
    series_instance_uid: str | None
    reason: str | None
    reason_code: str | None
    provider_requested: str | None
    provider_used: str | None
    provider_warning: str | None
    timings: Mapping[str, float]
    result: JsonObject | None
    findings_count: int | None
    outputs: JobOutputs
    outputs_removed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    supersedes: str | None
    superseded_by: str | None
    shadow: bool = False
    """A reading by a model version in shadow (:mod:`preread.lifecycle`): stored and
    comparable, never sent (no DICOM object, no report, no webhook)."""

    @property
    def is_current(self) -> bool:
        return self.state is not JobState.SUPERSEDED

    @property
    def in_progress(self) -> bool:
        return self.state in IN_PROGRESS

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED

    @property
    def rerun_requested(self) -> bool:
        return self.rerun_fingerprint is not None


@dataclass(frozen=True)
class EnqueueResult:
    """What :meth:`JobStore.enqueue` did.

    ``created``: a new queued job was made (dispatch it). ``superseded``: the finished job it
    replaces (the study grew). ``rerun_requested``: the current job is running on an older view
    of the study; it will be followed by a new job when it finishes. ``refreshed``: a job not yet
    started now reads the new fingerprint.
    """

    job: JobRecord
    created: bool
    superseded: JobRecord | None = None
    rerun_requested: bool = False
    refreshed: bool = False


@dataclass(frozen=True)
class FinishResult:
    """A job that reached a final state, and the job that follows it (dispatch that one) when
    the study grew while it ran; ``job`` is then already ``superseded``."""

    job: JobRecord
    follow_up: JobRecord | None = None


@dataclass(frozen=True)
class Sweep:
    """What :meth:`JobStore.requeue_expired` did with jobs whose lease expired.

    ``requeued`` and ``follow_ups`` are queued: dispatch them. ``failed`` ran out of attempts.
    """

    requeued: tuple[JobRecord, ...] = ()
    failed: tuple[JobRecord, ...] = ()
    follow_ups: tuple[JobRecord, ...] = ()

    @property
    def to_dispatch(self) -> tuple[JobRecord, ...]:
        return self.requeued + self.follow_ups


@dataclass(frozen=True)
class TenantJob:
    """A job in an operator's listing, with the tenant of its study (None: the watcher never
    recorded the study, or its sender belongs to no tenant)."""

    job: JobRecord
    tenant: str | None


@dataclass(frozen=True)
class JobPage:
    """A page of :meth:`JobStore.list_jobs`, newest change first; ``total`` counts every
    matching job."""

    items: tuple[TenantJob, ...]
    total: int
    limit: int


@dataclass(frozen=True)
class StudyFacts:
    """What the watcher learnt of a study: where it came from and its identifying tags (DICOM
    string forms, ``""`` when absent). ``tenant`` is None when its sender belongs to no tenant."""

    study_instance_uid: str
    orthanc_study_id: str
    tenant: str | None
    sender_aet: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    study_time: str
    study_description: str
    modalities: str = ""  # of the study's own series, space-separated, sorted


@dataclass(frozen=True)
class StudyRecord:
    """A study as the store knows it: its facts and when the watcher first and last saw it."""

    facts: StudyFacts
    first_seen_at: datetime
    updated_at: datetime

    @property
    def tenant(self) -> str | None:
        return self.facts.tenant


@dataclass(frozen=True)
class StudyFilter:
    """Which studies :meth:`JobStore.list_studies` returns (every given condition must hold).

    ``tenant``: only that tenant's studies (None: all, for operators); ``study_date_from`` /
    ``study_date_to``: DICOM dates ``YYYYMMDD``, inclusive; ``states``: a current job in one of
    them; ``has_findings``: a current done job with (True) or without (False) findings.
    """

    tenant: str | None = None
    states: tuple[JobState, ...] = ()
    model_id: str | None = None
    study_date_from: str | None = None
    study_date_to: str | None = None
    has_findings: bool | None = None
    include_shadow: bool = False
    """Operators' listings (re-dispatching queued jobs) see shadow readings; clients never."""


@dataclass(frozen=True)
class StudySummary:
    """One study in a listing, with its current jobs (one per model version)."""

    study_instance_uid: str
    orthanc_study_id: str
    updated_at: datetime
    jobs: tuple[JobRecord, ...]
    study: StudyRecord | None = None


@dataclass(frozen=True)
class StudyPage:
    """A page of :meth:`JobStore.list_studies`; ``total`` counts every matching study."""

    items: tuple[StudySummary, ...]
    total: int
    limit: int
    offset: int
