"""Run one job: one study read by one model version, from Orthanc back into the same study.

:func:`run_job` is the task boundary: the in-process runner calls it in a thread, a Celery
worker will call the same function with the same arguments. It is idempotent:

* a job that is done, superseded or held by another worker is left alone (``claim`` says no);
* the SR and SEG UIDs (and those of the key images and KOS, ``PREREAD_OUTPUTS``) are derived
  from what was read (study, model id and version, the study's fingerprint) and recorded
  *before* they are stored, so a worker killed half way and run again
  — or a second job for the same content, even from a fresh database — stores the very same
  instances (Orthanc keeps one copy);
* a result that supersedes an older one is stored first, then the older series are deleted
  (one already gone counts as deleted);
* an attempt that reads other content than the attempt before it (the study grew in between)
  first deletes what that attempt may have stored under its own UIDs, so the study never holds
  two results of one job.

Every outcome is recorded: ``done`` with the UIDs written, ``not_applicable`` with each series'
reason, ``failed`` with a reason naming the series. Nothing is written to the study unless the
whole SR and SEG were built.

A *shadow* job (a model version in shadow, :mod:`preread.lifecycle`) is read the same way up
to the model's result, which is recorded with the job and goes nowhere else: no SR, SEG or
other object is built or stored, no comparison with priors is made (no PACS query on its
behalf), and its finish queues no webhook.

Faults that may pass (:class:`TransientError`): Orthanc unreachable or answering 5xx, Orthanc
not storing the results (STOW-RS retried in the job first, :data:`STORE_RETRY_DELAYS_S`: the
UIDs are fixed, so a retry after a lost answer stores nothing twice), the audit trail or the
job store unavailable (PostgreSQL restarting, a full disk). The job is tried again within the
store's attempt limit; at the last attempt it ends ``failed`` with the fault as its reason
(``results_not_stored``, ``orthanc_unavailable``, ``audit_unavailable``,
``store_unavailable``). A lease that could not be released because the store was away is
released by the next run of the job in this process, before it claims the job again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from dicom_gateway.checks import SeriesLimits
from dicom_gateway.errors import (
    DicomFileError,
    GatewayError,
    OrthancError,
    ResourceNotFoundError,
    SeriesError,
)
from dicom_gateway.selection import is_preread_series, select_series
from dicom_gateway.source import StudySource, orthanc_id
from inference.errors import InferenceError
from inference.predict import Predictor
from preread.audit import AuditAction, AuditError, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Json
from preread.domain import Comparison, LungRadsCategory
from preread.errors import PrereadError
from preread.followup.priors import (
    CurrentReading,
    PriorAccess,
    PriorsSetup,
    compare_with_priors,
    lung_surface,
    parse_date,
)
from preread.followup.screening import LungRadsPolicy
from preread.grants import GrantStore, Purpose, StudyScope
from preread.monitoring.acquisition import acquisition_of
from preread.outputs import ALL_OUTPUTS, Output
from preread.pipeline import Analysis, analyze, candidate, content_uid_seed, encode, with_comparison
from preread.reports import InstanceRef, ReportError, to_json
from preread.reports.uids import new_tracking_uid, revised_seed
from preread.store import (
    FinishResult,
    IllegalTransitionError,
    JobNotFoundError,
    JobOutputs,
    JobRecord,
    JobState,
    JobStore,
    JobUpdate,
    LeaseLostError,
    StoredObject,
    StoreError,
)
from preread.watcher import study_facts, survey

log = logging.getLogger(__name__)

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
STORE_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 2.0)
"""Seconds to wait before each further STOW-RS of a job's results when Orthanc did not store
them (5xx, no answer, instances refused: a full disk); then the attempt ends."""
RELEASED_LEASE_S = 0.001
"""What a released lease is shortened to: it has expired by the time anyone sweeps."""


class TransientError(Exception):
    """A fault that may pass (Orthanc, the audit trail or the job store unavailable): the job's
    lease is given up and the job is tried again, within the store's attempt limit."""


class ResultsNotStoredError(PrereadError):
    """Orthanc did not store a job's SR and SEG, even after :data:`STORE_RETRY_DELAYS_S`."""


@dataclass(frozen=True)
class JobContext:
    """What a worker needs to run jobs (built once per process, passed in)."""

    store: JobStore
    source: StudySource
    predictor_for: Callable[[str, str], Predictor]  # (model id, version) -> Predictor
    owner: str
    grants: GrantStore
    audit: AuditLog
    lease_s: float = 600.0
    tenant_of: Callable[[str], str | None] = lambda _sender: None  # settings.tenant_of
    #: what one series may be (settings' PREREAD_MAX_SERIES_*); checked before pixels are fetched
    series_limits: SeriesLimits = field(default_factory=SeriesLimits)
    store_retry_delays_s: tuple[float, ...] = STORE_RETRY_DELAYS_S
    #: jobs whose lease a transient fault left held (the store was away): released first
    #: when this process runs the job again
    leases_to_release: set[str] = field(default_factory=set)
    #: what a reading writes into the study (settings' PREREAD_OUTPUTS; SR and SEG always)
    outputs: frozenset[Output] = ALL_OUTPUTS
    #: which studies are screening exams with a Lung-RADS category (PREREAD_LUNG_RADS)
    lung_rads: LungRadsPolicy = field(default_factory=LungRadsPolicy)
    #: the hospital's PACS to compare with the patient's priors (PREREAD_PRIORS_PEER; None:
    #: not configured, the comparison is ``not-configured``)
    priors: PriorsSetup | None = None
    #: whether a queued job's model version may still read (model id, version, shadow) ->
    #: (yes, why not): :meth:`preread.lifecycle.LiveLineup.may_run`; None: always
    may_run: Callable[[str, str, bool], tuple[bool, str]] | None = None


def run_job(job_id: str, ctx: JobContext) -> FinishResult | None:
    """Run ``job_id`` to a final state; ``None`` when there was nothing to do.

    The result's ``follow_up`` is a job to dispatch next (the study grew while this one ran).

    Raises :class:`TransientError` for a fault that may pass (see the module docstring): the
    lease is given up at once, so a retry claims the job again, up to the store's attempt
    limit. A run that lost its job to another (its lease ran out, e.g. a sweeper's clock
    jumped ahead) stops without writing more and returns ``None``.
    """
    if job_id in ctx.leases_to_release and _release(job_id, ctx):
        ctx.leases_to_release.discard(job_id)
    try:
        job = ctx.store.claim(job_id, ctx.owner, ctx.lease_s)
    except (JobNotFoundError, LeaseLostError, IllegalTransitionError):
        raise
    except StoreError as exc:
        log.warning("job %s: will retry: the job store is unavailable", job_id)
        raise TransientError(f"the job store is unavailable: {exc}") from exc
    if job is None:
        return None
    try:
        return _run(job, ctx)
    except (SeriesError, DicomFileError, ReportError) as exc:
        return ctx.store.finish_failed(job.id, ctx.owner, str(exc), _code(exc))
    except InferenceError as exc:
        return ctx.store.finish_failed(job.id, ctx.owner, str(exc), "inference")
    except ResourceNotFoundError as exc:
        return ctx.store.finish_failed(job.id, ctx.owner, str(exc), "study_gone")
    except (LeaseLostError, IllegalTransitionError) as exc:
        log.warning("job %s: lost to another run, which finishes it: %s", job.id, exc)
        return None
    except (GatewayError, AuditError, ResultsNotStoredError, StoreError) as exc:
        # no unaudited access and nothing half recorded: try again later
        return _retry_later(job, ctx, exc)


def _retry_later(job: JobRecord, ctx: JobContext, exc: Exception) -> FinishResult:
    """End this attempt after a transient fault: ``failed`` with the fault as its reason at
    the last attempt (when the store takes it), else raise :class:`TransientError`."""
    code, reason = _fault(exc)
    if job.attempts >= ctx.store.max_attempts:
        try:
            return ctx.store.finish_failed(
                job.id,
                ctx.owner,
                f"{reason} (attempt {job.attempts} of {ctx.store.max_attempts}: given up; "
                "PREREAD_JOB_MAX_ATTEMPTS)",
                code,
            )
        except (LeaseLostError, IllegalTransitionError):
            raise TransientError(reason) from exc  # finished by another run meanwhile
        except StoreError as error:
            log.warning("job %s: could not record the failure: %s", job.id, type(error).__name__)
    log.warning("job %s: will retry: %s (%s)", job.id, code, type(exc).__name__)
    if not _release(job.id, ctx):
        ctx.leases_to_release.add(job.id)
    raise TransientError(reason) from exc


def _fault(exc: Exception) -> tuple[str, str]:
    """The reason code and text of a transient fault."""
    if isinstance(exc, ResultsNotStoredError):
        return "results_not_stored", str(exc)
    if isinstance(exc, AuditError):
        return "audit_unavailable", f"the audit trail could not be written: {exc}"
    if isinstance(exc, StoreError):
        return "store_unavailable", f"the job store is unavailable: {exc}"
    return "orthanc_unavailable", f"Orthanc is unavailable: {exc}"


def _release(job_id: str, ctx: JobContext) -> bool:
    """End this process's lease on the job now, so that a retry may claim it at once; False
    when the store could not be reached (the lease stays until it runs out)."""
    try:
        ctx.store.renew_lease(job_id, ctx.owner, RELEASED_LEASE_S)
    except (JobNotFoundError, LeaseLostError, IllegalTransitionError):
        return True  # not ours any more: nothing to release
    except StoreError:
        return False
    return True


def _code(exc: Exception) -> str:
    return "encoding" if isinstance(exc, ReportError) else "unreadable_series"


def _run(job: JobRecord, ctx: JobContext) -> FinishResult:
    store, source, owner = ctx.store, ctx.source, ctx.owner
    recorded = store.study(job.study_instance_uid)
    if recorded is None:  # a job queued before studies were recorded (schema 0001)
        found = source.study(job.orthanc_study_id)
        seen = survey(source, found)
        recorded = store.record_study(study_facts(found, seen, ctx.tenant_of(seen.sender)))
    if recorded.tenant is None:
        sender = recorded.facts.sender_aet
        return store.finish_not_applicable(
            job.id,
            owner,
            f"the study's sender (AE title {sender or '<none: not sent by DICOM>'!r}) belongs "
            "to no tenant (PREREAD_TENANTS, PREREAD_DEFAULT_TENANT): not read",
            (),
            reason_code="no_tenant",
        )
    if ctx.may_run is not None:  # a rollback or a promotion since the job was queued
        allowed, why = ctx.may_run(job.model_id, job.model_version, job.shadow)
        if not allowed:
            log.info("job %s: not read (%s)", job.id, why)
            return store.finish_not_applicable(
                job.id, owner, why, (), reason_code="model_withdrawn"
            )
    study = source.study(job.orthanc_study_id)
    series = [source.series(sid) for sid in study.series_ids]
    own = [s for s in series if not is_preread_series(s.modality, s.series_description)]
    # the authorization, before any pixel is read
    scope = StudyScope(
        tenant=recorded.tenant,
        study_instance_uid=job.study_instance_uid,
        sender_aet=recorded.facts.sender_aet,
        modalities=tuple(sorted({s.modality for s in own if s.modality})),
        study_date=study.study_date,
    )
    grant, why = ctx.grants.covering(scope, Purpose.CLINICAL_PREREAD)
    audit = _Auditor(ctx.audit, job, recorded.tenant)
    if grant is None:
        log.info("job %s: not authorized (%s)", job.id, why)
        reason = f"no valid clinical-preread grant covers this study: {why}"
        audit(AuditAction.ACCESS_REFUSED, Outcome.REFUSED, reason=reason)
        return store.finish_not_authorized(job.id, owner, reason)
    predictor = ctx.predictor_for(job.model_id, job.model_version)
    timings: dict[str, float] = {}
    selection = select_series([candidate(s) for s in own], predictor.package.card.series_rules)
    store.record_decisions(job.id, selection.decisions)
    if selection.chosen is None:
        return store.finish_not_applicable(job.id, owner, selection.reason, selection.decisions)
    series_uid = selection.chosen.series_instance_uid
    store.record(job.id, owner, JobUpdate(series_instance_uid=series_uid))
    limits = ctx.series_limits
    if selection.chosen.n_images > limits.max_slices:  # never fetched
        raise SeriesError(
            series_uid,
            f"{selection.chosen.n_images} images, more than the limit of {limits.max_slices} "
            "slices per series (PREREAD_MAX_SERIES_SLICES)",
        )

    audit(AuditAction.PIXELS_FETCH, Outcome.SUCCESS, grant_id=grant.id, series=series_uid)
    t0 = time.perf_counter()
    datasets = source.series_datasets(study.study_instance_uid, series_uid)
    timings["fetch"] = time.perf_counter() - t0
    store.advance(job.id, owner, JobState.INFERRING, JobUpdate(timings=timings))

    screening = ctx.lung_rads.applies(recorded.facts.sender_aet, datasets[0] if datasets else None)
    analysis = analyze(
        datasets, predictor, created=job.created_at, limits=limits, lung_rads=screening
    )
    info = analysis.prediction.session_info
    audit(
        AuditAction.INFERENCE_RUN,
        Outcome.SUCCESS,
        grant_id=grant.id,
        model=f"{job.model_id} {job.model_version}",
        provider=info.provider,
        findings=len(analysis.result.findings),
        shadow=job.shadow,
    )
    if info.warning:
        log.warning("job %s: %s", job.id, info.warning)
    previous = store.get(job.supersedes) if job.supersedes else None
    seed = uid_seed(job, previous)
    ran = JobUpdate(
        provider_requested=",".join(info.requested_providers),
        provider_used=info.provider,
        provider_warning=info.warning,
        timings=timings,
        acquisition=acquisition_of(datasets[0], analysis.volume).to_json(),  # for monitoring
    )
    if job.shadow:  # stored to be compared, never sent: nothing is written to the study
        timings.update(analysis.timings)
        store.advance(job.id, owner, JobState.WRITING, ran)
        return store.finish_done(job.id, owner, to_json(analysis.result, uid_seed=seed))
    t0 = time.perf_counter()
    analysis = _compared(analysis, job, ctx, grant.id, recorded.tenant, datasets, screening, seed)
    if ctx.priors is not None:
        timings["priors"] = time.perf_counter() - t0
    older = store.outputs_to_remove(job.id)
    previous_sr = next((o.outputs.sr for o in older if o.outputs.sr is not None), None)
    supersedes = (
        InstanceRef(
            study.study_instance_uid,
            previous_sr.series_instance_uid,
            previous_sr.sop_instance_uid,
            COMPREHENSIVE_3D_SR,
        )
        if previous_sr
        else None
    )
    encoded = encode(analysis, datasets, uid_seed=seed, supersedes=supersedes, outputs=ctx.outputs)
    timings.update(analysis.timings)
    key_images, kos = encoded.key_images, encoded.kos
    outputs = JobOutputs(
        sr=_stored(study.patient_id, study.study_instance_uid, encoded.sr.series_instance_uid,
                   encoded.sr.sop_instance_uid),
        seg=_stored(study.patient_id, study.study_instance_uid, encoded.seg.series_instance_uid,
                    encoded.seg.sop_instance_uid) if encoded.seg else None,
        sc=tuple(
            _stored(study.patient_id, study.study_instance_uid, key_images.series_instance_uid,
                    sop)
            for sop in key_images.sop_instance_uids
        ) if key_images else (),
        kos=_stored(study.patient_id, study.study_instance_uid, kos.series_instance_uid,
                    kos.sop_instance_uid) if kos else None,
    )  # fmt: skip
    # an earlier attempt that read other content may have stored its results (a lost STOW
    # answer, a worker killed after storing): remove them before recording these
    for stale in _stale(job.outputs, outputs):
        _delete_series(source, stale.orthanc_series_id)
    store.advance(
        job.id,
        owner,
        JobState.WRITING,
        # the outputs recorded before storing: a re-run replaces, never doubles
        dataclasses.replace(ran, outputs=outputs, replace_outputs=True),
    )
    audit(
        AuditAction.RESULTS_STORE,
        Outcome.SUCCESS,
        grant_id=grant.id,
        sr=encoded.sr.sop_instance_uid,
        seg=encoded.seg.sop_instance_uid if encoded.seg else None,
        sc=list(key_images.sop_instance_uids) if key_images else [],
        kos=kos.sop_instance_uid if kos else None,
    )
    t0 = time.perf_counter()
    _store_results(source, encoded.datasets, ctx.store_retry_delays_s)
    timings["store"] = time.perf_counter() - t0
    for old in older:
        for series_id in _series_ids(old.outputs.objects):
            _delete_series(source, series_id)
        store.mark_outputs_removed(old.id)
    return store.finish_done(
        job.id, owner, to_json(analysis.result, uid_seed=seed), JobUpdate(timings=timings)
    )


def _compared(
    analysis: Analysis,
    job: JobRecord,
    ctx: JobContext,
    grant_id: str,
    tenant: str,
    datasets: list[Dataset],
    screening: bool,
    seed: str,
) -> Analysis:
    """``analysis`` with its comparison with the patient's priors (``not-configured`` without
    ``ctx.priors``) and its Lung-RADS assessed with it. A fault of the priors' path gives an
    ``unavailable`` comparison: it never fails the current reading."""
    categories: dict[str, LungRadsCategory] = {}
    if ctx.priors is None:
        comparison = Comparison("not-configured")
    else:
        result = analysis.result
        first = datasets[0] if datasets else Dataset()
        try:
            surface = lung_surface(analysis.volume, _predictor(ctx, job), analysis.prediction)
        except Exception as exc:
            log.warning("job %s: no lung surface for the comparison: %s", job.id, exc)
            surface = np.zeros((0, 3))
        outcome = compare_with_priors(
            ctx.priors,
            CurrentReading(
                tenant=tenant,
                study_instance_uid=job.study_instance_uid,
                patient_id=str(first.get("PatientID", "") or ""),
                issuer_of_patient_id=str(first.get("IssuerOfPatientID", "") or "") or None,
                study_date=parse_date(str(first.get("StudyDate", "") or "")),
                findings=result.findings,
                lung_surface_lps_mm=surface,
                new_tracking_uid=lambda f: str(new_tracking_uid(result, f, uid_seed=seed)),
                grant_id=grant_id,
            ),
            PriorAccess(
                store=ctx.store,
                source=ctx.source,
                grants=ctx.grants,
                audit=_Auditor(ctx.audit, job, tenant),
                predictor=_predictor(ctx, job),
                tenant_of=ctx.tenant_of,
                limits=ctx.series_limits,
                created=job.created_at,
                lung_rads=screening,
            ),
        )
        comparison, categories = outcome.comparison, dict(outcome.prior_categories)
    return with_comparison(analysis, comparison, categories, lung_rads=screening)


def retry_comparisons(
    store: JobStore, dispatch: Callable[[str], None], first_delay_s: float, max_retries: int
) -> int:
    """The reconcile sweep's part for comparisons: studies read while their priors could not
    be had (the PACS down) are read again, with back-off (:meth:`JobStore.retry_comparisons`),
    and their new jobs dispatched. Returns how many."""
    again = store.retry_comparisons(first_delay_s, max_retries)
    for job in again:
        dispatch(job.id)
    if again:
        log.info("reading %d study(ies) again for their comparison with priors", len(again))
    return len(again)


def _predictor(ctx: JobContext, job: JobRecord) -> Predictor:
    return ctx.predictor_for(job.model_id, job.model_version)


def _store_results(
    source: StudySource, datasets: list[Dataset], delays_s: tuple[float, ...]
) -> None:
    """STOW-RS the SR and SEG, again after each of ``delays_s`` while Orthanc does not store
    them (no answer, 5xx, instances refused). Their UIDs are fixed: an instance stored by a try
    whose answer was lost is simply stored again (Orthanc keeps one copy). A client error
    (4xx: our request or our login) is not retried here.

    Raises :class:`ResultsNotStoredError` (with Orthanc's last answer) when every try failed.
    """
    for attempt in range(len(delays_s) + 1):
        try:
            source.store(datasets)
            return
        except OrthancError as exc:
            status = exc.status
            client_error = status is not None and 400 <= status < 500
            if client_error and status not in (408, 409, 429):
                raise
            if attempt == len(delays_s):
                raise ResultsNotStoredError(
                    f"Orthanc did not store the results (SR, SEG) in {attempt + 1} tries: {exc}"
                ) from exc
            log.warning(
                "results not stored (try %d of %d): %s", attempt + 1, len(delays_s) + 1, exc
            )
            time.sleep(delays_s[attempt])


def _stale(earlier: JobOutputs, now: JobOutputs) -> list[StoredObject]:
    """Objects an earlier attempt recorded in series this attempt does not write (one per
    series: the key images share theirs)."""
    keep = set(_series_ids(now.objects))
    stale: dict[str, StoredObject] = {}
    for o in earlier.objects:
        if o.orthanc_series_id and o.orthanc_series_id not in keep:
            stale.setdefault(o.orthanc_series_id, o)
    return list(stale.values())


def _series_ids(objects: tuple[StoredObject, ...]) -> list[str]:
    """The Orthanc ids of the series holding ``objects``, each once, in order."""
    return list(dict.fromkeys(o.orthanc_series_id for o in objects if o.orthanc_series_id))


def _delete_series(source: StudySource, orthanc_series_id: str | None) -> None:
    """Delete a series PreRead wrote; one already gone is what was wanted."""
    if not orthanc_series_id:
        return
    try:
        source.delete_series(orthanc_series_id)
    except ResourceNotFoundError:
        log.info("series %s was already deleted", orthanc_series_id)


class _Auditor:
    """Records one job's accesses: actor ``worker:<owner>``, purpose clinical-preread."""

    def __init__(self, log_: AuditLog, job: JobRecord, tenant: str) -> None:
        self._log, self._job, self._tenant = log_, job, tenant

    def __call__(
        self, action: AuditAction, outcome: Outcome, *, study: str | None = None, **detail: Json
    ) -> None:
        """Record ``action`` on the job's study, or on ``study`` (a prior's StudyInstanceUID)."""
        self._log.record(
            AuditEvent(
                actor=f"worker:{self._job.lease_owner or 'unknown'}",
                action=action,
                outcome=outcome,
                tenant=self._tenant,
                purpose=Purpose.CLINICAL_PREREAD.value,
                study_instance_uid=study or self._job.study_instance_uid,
                detail={"job_id": self._job.id, **detail},
            )
        )


def uid_seed(job: JobRecord, previous: JobRecord | None = None) -> str:
    """The seed of a result's UIDs: the same content read by the same model gives the same UIDs
    (a retried job rewrites, never doubles). A job that reads again the content of the job it
    supersedes (``previous``: its comparison with priors was unavailable) makes a revised
    result, whose SR must differ from, and supersede, the one it replaces: its seed names
    that job."""
    seed = content_uid_seed(
        job.study_instance_uid, job.model_id, job.model_version, job.fingerprint.token
    )
    if previous is not None and previous.fingerprint == job.fingerprint:
        return revised_seed(seed, previous.id)  # its findings keep their tracking UIDs
    return seed


def _stored(patient_id: str, study_uid: str, series_uid: str, sop_uid: str) -> StoredObject:
    return StoredObject(series_uid, sop_uid, orthanc_id(patient_id, study_uid, series_uid))
