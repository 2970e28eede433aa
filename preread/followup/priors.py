"""The current study against the patient's priors, as the job runner makes it (I/O here).

:func:`compare_with_priors` is what :mod:`preread.jobs` calls after the current study was read
and before its reports are encoded, when ``PREREAD_PRIORS_PEER`` names the hospital's PACS:

1. **find** — the PACS is asked (C-FIND, :class:`~dicom_gateway.priors.PriorsSource`) for the
   patient's CT studies dated before the current one (PatientID and IssuerOfPatientID of the
   current study); :func:`~dicom_gateway.priors.choose_priors` picks the newest and the earliest
   (the baseline). None: ``no-prior``.
2. **authorize** — each prior must belong to the current study's tenant and be covered by a
   clinical-preread grant of that tenant, like any study PreRead reads. A prior recorded for
   another tenant is never read. The grant is checked before the prior is retrieved (with what
   the PACS said of it; the PACS's AE title as the sender, when known) and again, on what
   arrived, before any pixel of it is fetched.
3. **retrieve** — a prior not yet in PreRead's Orthanc is moved there (C-MOVE) and recorded in
   the job store with the tenant of its sender (the PACS), as the watcher records any study.
4. **read** — a prior that PreRead already read (a ``done`` job of the same model with its
   result JSON) gives its findings, tracking UIDs and Lung-RADS categories from that result;
   any other is read here with the same predictor and series rules (:func:`~preread.pipeline.
   analyze`), nothing being written into it. Either way its lung surface comes from its
   volume with the model's own lung mask (:func:`lung_surface`).
5. **compare** — :func:`~preread.followup.comparison.compare` (registration, matching, growth).

Every access to a prior is audited with the grant that allowed it, under the prior's
StudyInstanceUID (``for_study``: the study being read): ``priors.query`` (the C-FIND, under the
current study), ``priors.retrieve``, ``pixels.fetch``, ``inference.run``; a refusal as
``access.refused``.

Nothing here may fail the current study's reading: whatever goes wrong (PACS down, a retrieve
that failed, no grant for the prior, a prior of another tenant, a prior that cannot be read or
registered, the audit trail away) gives a ``unavailable`` comparison with the reason. Reasons
never hold a patient identifier (StudyInstanceUIDs do appear).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from dicom_gateway.checks import SeriesLimits
from dicom_gateway.client import OrthancClient
from dicom_gateway.errors import GatewayError
from dicom_gateway.priors import (
    OrthancPriors,
    PriorCandidate,
    PriorsSource,
    PriorsUnavailableError,
    choose_priors,
)
from dicom_gateway.selection import is_preread_series, select_series
from dicom_gateway.source import SeriesInfo, StudyInfo, StudySource
from dicom_gateway.volume import assemble_volume
from inference.errors import InferenceError
from inference.lungs import lung_mask
from inference.predict import Prediction, Predictor
from inference.preprocess import to_model_grid
from preread.audit import AuditAction, Outcome
from preread.audit.chain import Json
from preread.domain import (
    Comparison,
    Finding,
    LungRadsCategory,
    ModelRef,
    PriorRole,
    PriorStudy,
    Volume,
)
from preread.errors import PrereadError
from preread.followup.comparison import PriorReading, compare
from preread.followup.registration import mask_surface_points
from preread.grants import Grant, GrantStore, Purpose, StudyScope
from preread.pipeline import analyze, candidate, content_uid_seed
from preread.reports.json import PreReadOut
from preread.reports.uids import new_tracking_uid
from preread.settings import Settings
from preread.store import JobRecord, JobState, JobStore, StoreError
from preread.watcher import study_facts, survey

__all__ = [
    "PRIORS_PEER_NAME",
    "CurrentReading",
    "PriorAccess",
    "PriorAudit",
    "PriorsOutcome",
    "PriorsSetup",
    "compare_with_priors",
    "lung_surface",
    "parse_date",
    "priors_setup",
]

log = logging.getLogger(__name__)

Surface = npt.NDArray[np.float64]

#: The PACS's name in the private Orthanc's DicomModalities (PREREAD_PRIORS_PEER=AET@host:port)
PRIORS_PEER_NAME = "preread-priors"


@dataclass(frozen=True)
class PriorsSetup:
    """Where priors come from: the PACS as a :class:`PriorsSource`, its name in PreRead's
    Orthanc (``PREREAD_PRIORS_PEER``) and, when known, its AE title (the sender a retrieved
    prior will have: the grant is checked against it before the retrieval)."""

    source: PriorsSource
    peer: str
    peer_aet: str | None = None


@dataclass(frozen=True)
class CurrentReading:
    """The study being read, as the comparison needs it."""

    tenant: str
    study_instance_uid: str
    patient_id: str
    issuer_of_patient_id: str | None
    study_date: datetime.date | None
    findings: tuple[Finding, ...]
    lung_surface_lps_mm: Surface
    #: the tracking UID a current finding has as a new nodule (the current result's own)
    new_tracking_uid: Callable[[Finding], str]
    #: the grant that allowed reading the current study (the C-FIND is made under it)
    grant_id: str


class PriorAudit(Protocol):
    """Records one access of the job (``study``: the prior's StudyInstanceUID; None: the
    current study's)."""

    def __call__(
        self, action: AuditAction, outcome: Outcome, *, study: str | None = None, **detail: Json
    ) -> None: ...


@dataclass(frozen=True)
class PriorAccess:
    """What reading the priors may use: the job's store, Orthanc, grants, audit and model."""

    store: JobStore
    source: StudySource
    grants: GrantStore
    audit: PriorAudit
    predictor: Predictor
    tenant_of: Callable[[str], str | None]
    limits: SeriesLimits
    created: datetime.datetime
    #: whether a prior read here gets Lung-RADS categories (the current one is a screening exam)
    lung_rads: bool = False


@dataclass(frozen=True)
class PriorsOutcome:
    """The comparison, and the newest prior's Lung-RADS category of each nodule by tracking UID
    (for stepped management, :func:`~preread.followup.lungrads.assess`)."""

    comparison: Comparison
    prior_categories: Mapping[str, LungRadsCategory]


def priors_setup(settings: Settings, client: OrthancClient) -> PriorsSetup | None:
    """Where the priors come from, per ``PREREAD_PRIORS_PEER`` (None: unset, not compared):
    C-FIND and C-MOVE through PreRead's Orthanc (``client``), the moved studies sent to
    ``PREREAD_ORTHANC_AET``. With the private Orthanc the peer is :data:`PRIORS_PEER_NAME`
    (its DicomModalities entry, made by :mod:`preread.service`), else the named modality of
    ``PREREAD_ORTHANC_URL``'s Orthanc (its AE title unknown here)."""
    if settings.priors_peer is None:
        return None
    address = settings.priors_peer_address()
    peer = settings.priors_peer if address is None else PRIORS_PEER_NAME
    source = OrthancPriors(
        client,
        peer,
        target_aet=settings.orthanc_aet,
        timeout_s=settings.priors_timeout_s,
        dicom_timeout_s=settings.priors_dicom_timeout_s,
    )
    return PriorsSetup(source, peer, address[0] if address else None)


class _Unavailable(Exception):
    """A prior cannot be had now; the message is the comparison's reason. ``permanent``: the
    cause is in the studies themselves (reading them again gives the same answer)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def parse_date(value: str) -> datetime.date | None:
    """A DICOM DA (``YYYYMMDD``) as a date; None when absent or not a valid date."""
    text = value.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def lung_surface(
    volume: Volume, predictor: Predictor, prediction: Prediction | None = None
) -> Surface:
    """The LPS points (N, 3) of the lungs' surface in ``volume``: from the lung mask the model
    made (``prediction.lungs``), else with the same lung-mask code on the model's grid."""
    lungs = prediction.lungs if prediction is not None else None
    if lungs is None:
        model_input = to_model_grid(volume, predictor.package.card.input)
        lungs = lung_mask(model_input.hu, model_input.geometry)
    return mask_surface_points(lungs.mask, lungs.geometry)


def compare_with_priors(
    setup: PriorsSetup, current: CurrentReading, access: PriorAccess
) -> PriorsOutcome:
    """The comparison of ``current`` with its priors (see the module docstring); never raises
    for a fault of the priors' path: it becomes an ``unavailable`` comparison."""
    retryable = True
    try:
        return _compare(setup, current, access)
    except _Unavailable as exc:
        reason, retryable = str(exc), not exc.permanent
    except PriorsUnavailableError as exc:
        reason = str(exc)
    except (GatewayError, InferenceError, PrereadError) as exc:  # PreRead's messages: no PHI
        reason = f"a prior could not be read: {exc}"
    except Exception as exc:  # a fault of the priors' path never costs the current reading
        log.exception("study %s: the comparison with priors failed", current.study_instance_uid)
        reason = f"the comparison with priors failed ({type(exc).__name__})"
    log.info("study %s: comparison unavailable: %s", current.study_instance_uid, reason)
    return PriorsOutcome(Comparison("unavailable", reason=reason, retryable=retryable), {})


def _compare(setup: PriorsSetup, current: CurrentReading, access: PriorAccess) -> PriorsOutcome:
    if current.study_date is None:
        raise _Unavailable(
            "the study has no valid StudyDate: its priors cannot be told apart", permanent=True
        )
    access.audit(
        AuditAction.PRIORS_QUERY,
        Outcome.SUCCESS,
        grant_id=current.grant_id,
        peer=setup.peer,
        before=current.study_date.isoformat(),
    )
    found = setup.source.find_priors(
        current.patient_id,
        current.issuer_of_patient_id,
        current.study_date,
        current.study_instance_uid,
    )
    newest, earliest = choose_priors(found)
    if newest is None:
        return PriorsOutcome(Comparison("no-prior"), {})
    previous, categories = _read_prior(setup, current, access, newest, "previous")
    baseline = None
    if earliest is not None:
        try:
            baseline, _ = _read_prior(setup, current, access, earliest, "baseline")
        except (_Unavailable, PriorsUnavailableError, GatewayError, InferenceError) as exc:
            log.info(
                "study %s: compared without the baseline %s: %s",
                current.study_instance_uid,
                earliest.study_instance_uid,
                exc,
            )
    comparison = compare(
        current.findings,
        current.lung_surface_lps_mm,
        current.study_date,
        previous,
        baseline,
        current.new_tracking_uid,
    )
    return PriorsOutcome(comparison, categories if comparison.status == "compared" else {})


# -- one prior --------------------------------------------------------------------------------


def _read_prior(
    setup: PriorsSetup,
    current: CurrentReading,
    access: PriorAccess,
    prior: PriorCandidate,
    role: PriorRole,
) -> tuple[PriorReading, dict[str, LungRadsCategory]]:
    """Authorize, retrieve and read one prior."""
    uid = prior.study_instance_uid
    recorded = access.store.study(uid)
    if recorded is not None:
        _same_tenant(recorded.tenant, current, access, uid)
    # before the retrieval, on what the PACS said of the prior
    sender = recorded.facts.sender_aet if recorded is not None else setup.peer_aet
    allowed: Grant | None = None
    if sender is not None:
        allowed = _grant(
            current,
            access,
            StudyScope(
                tenant=current.tenant,
                study_instance_uid=uid,
                sender_aet=sender,
                modalities=tuple(sorted(set(prior.modalities))),
                study_date=prior.study_date.strftime("%Y%m%d") if prior.study_date else "",
            ),
        )
    orthanc_id = access.source.find_study(uid)
    if orthanc_id is None:
        access.audit(
            AuditAction.PRIORS_RETRIEVE,
            Outcome.SUCCESS,
            study=uid,
            grant_id=allowed.id if allowed is not None else None,
            peer=setup.peer,
            for_study=current.study_instance_uid,
        )
        setup.source.retrieve(uid)
        orthanc_id = access.source.find_study(uid)
        if orthanc_id is None:
            raise _Unavailable(f"the prior {uid} is not in PreRead's Orthanc after its retrieval")
    study = access.source.study(orthanc_id)
    seen = survey(access.source, study)
    recorded = access.store.study(uid)
    if recorded is None:  # as the watcher records it: the tenant of its sender (the PACS)
        recorded = access.store.record_study(
            study_facts(study, seen, access.tenant_of(seen.sender))
        )
    _same_tenant(recorded.tenant, current, access, uid)
    series = [access.source.series(sid) for sid in study.series_ids]
    own = [s for s in series if not is_preread_series(s.modality, s.series_description)]
    # before any pixel, on what arrived
    grant = _grant(
        current,
        access,
        StudyScope(
            tenant=current.tenant,
            study_instance_uid=uid,
            sender_aet=recorded.facts.sender_aet,
            modalities=tuple(sorted({s.modality for s in own if s.modality})),
            study_date=study.study_date,
        ),
    )
    study_date = parse_date(study.study_date) or prior.study_date
    if study_date is None:
        raise _Unavailable(f"the prior {uid} has no valid StudyDate", permanent=True)
    stored = _stored_result(access, uid)
    if stored is not None:
        return _from_result(access, current, grant, study, own, stored, study_date, role)
    return _read_here(access, current, grant, study, own, seen.fingerprint.token, study_date, role)


def _same_tenant(
    tenant: str | None, current: CurrentReading, access: PriorAccess, uid: str
) -> None:
    if tenant == current.tenant:
        return
    reason = f"the prior {uid} was recorded for another tenant (or none): not read"
    access.audit(
        AuditAction.ACCESS_REFUSED,
        Outcome.REFUSED,
        study=uid,
        reason=reason,
        for_study=current.study_instance_uid,
    )
    raise _Unavailable(reason)


def _grant(current: CurrentReading, access: PriorAccess, scope: StudyScope) -> Grant:
    grant, why = access.grants.covering(scope, Purpose.CLINICAL_PREREAD)
    if grant is not None:
        return grant
    reason = f"no valid clinical-preread grant covers the prior {scope.study_instance_uid}: {why}"
    access.audit(
        AuditAction.ACCESS_REFUSED,
        Outcome.REFUSED,
        study=scope.study_instance_uid,
        reason=reason,
        for_study=current.study_instance_uid,
    )
    raise _Unavailable(reason)


def _stored_result(access: PriorAccess, uid: str) -> JobRecord | None:
    """The prior's ``done`` job of the current model (its version first) with a result."""
    card = access.predictor.package.card
    try:
        jobs = access.store.current_for_study(uid, card.id)
    except StoreError as exc:
        log.info("prior %s: the job store could not be read (%s): read here", uid, exc)
        return None
    done = [j for j in jobs if j.state is JobState.DONE and j.result]
    done.sort(key=lambda j: (j.model_version != card.version, -j.updated_at.timestamp()))
    return done[0] if done else None


def _series_of(own: list[SeriesInfo], series_uid: str, uid: str) -> SeriesInfo:
    match = next((s for s in own if s.series_instance_uid == series_uid), None)
    if match is None:
        raise _Unavailable(f"the series {series_uid} read in the prior {uid} is not in Orthanc")
    return match


def _fetch(
    access: PriorAccess,
    current: CurrentReading,
    grant: Grant,
    study: StudyInfo,
    series: SeriesInfo,
) -> list[Dataset]:
    uid, series_uid = study.study_instance_uid, series.series_instance_uid
    n_images = max(series.instance_count, series.sample.number_of_frames)
    if n_images > access.limits.max_slices:  # never fetched
        raise _Unavailable(
            f"the prior {uid}'s series {series_uid} has {n_images} images, more than "
            f"{access.limits.max_slices} (PREREAD_MAX_SERIES_SLICES)",
            permanent=True,
        )
    access.audit(
        AuditAction.PIXELS_FETCH,
        Outcome.SUCCESS,
        study=uid,
        grant_id=grant.id,
        series=series_uid,
        for_study=current.study_instance_uid,
    )
    return list(access.source.series_datasets(uid, series_uid))


def _from_result(
    access: PriorAccess,
    current: CurrentReading,
    grant: Grant,
    study: StudyInfo,
    own: list[SeriesInfo],
    job: JobRecord,
    study_date: datetime.date,
    role: PriorRole,
) -> tuple[PriorReading, dict[str, LungRadsCategory]]:
    """A prior PreRead read before: findings and tracking UIDs from its result JSON, the lung
    surface from the series that was read."""
    out = PreReadOut.model_validate(job.result)
    series = _series_of(own, out.series_instance_uid, study.study_instance_uid)
    datasets = _fetch(access, current, grant, study, series)
    volume = assemble_volume(datasets, release_pixel_data=True, limits=access.limits)
    findings = tuple(
        Finding(
            label=f.label,
            center_lps_mm=f.center_lps_mm,
            long_axis_mm=f.long_axis_mm,
            volume_mm3=f.volume_mm3,
            probability=f.probability,
            mean_hu=f.mean_hu,
            voxel_count=0,  # not in the JSON; the comparison uses the volume
            lung_side=f.lung_side,
            nodule_type=f.nodule_type,
            axial_long_axis_mm=f.axial_long_axis_mm,
            short_axis_mm=f.short_axis_mm,
            solid_component_long_axis_mm=f.solid_component_long_axis_mm,
        )
        for f in out.findings
    )
    categories: dict[str, LungRadsCategory] = {}
    if out.lung_rads is not None:
        categories = {
            n.tracking_uid: n.category for n in out.lung_rads.nodules if n.category is not None
        }
    reading = PriorReading(
        study=PriorStudy(
            study_instance_uid=study.study_instance_uid,
            study_date=study_date,
            role=role,
            series_instance_uid=out.series_instance_uid,
            model=ModelRef(out.model.id, out.model.version, out.model.name, out.model.sha256),
        ),
        findings=findings,
        tracking_uids={f.label: f.tracking_uid for f in out.findings},
        lung_surface_lps_mm=lung_surface(volume, access.predictor),
    )
    return reading, categories


def _read_here(
    access: PriorAccess,
    current: CurrentReading,
    grant: Grant,
    study: StudyInfo,
    own: list[SeriesInfo],
    fingerprint: str,
    study_date: datetime.date,
    role: PriorRole,
) -> tuple[PriorReading, dict[str, LungRadsCategory]]:
    """A prior PreRead has no result of: read here with the same model and series rules;
    nothing is written into it. Its tracking UIDs are those a job of the same content and
    model would give its findings (the same seed)."""
    uid = study.study_instance_uid
    predictor = access.predictor
    card = predictor.package.card
    selection = select_series([candidate(s) for s in own], card.series_rules)
    if selection.chosen is None:
        raise _Unavailable(
            f"the prior {uid} has no series the model reads: {selection.reason}", permanent=True
        )
    series = _series_of(own, selection.chosen.series_instance_uid, uid)
    datasets = _fetch(access, current, grant, study, series)
    analysis = analyze(
        datasets,
        predictor,
        created=access.created,
        limits=access.limits,
        lung_rads=access.lung_rads,
    )
    access.audit(
        AuditAction.INFERENCE_RUN,
        Outcome.SUCCESS,
        study=uid,
        grant_id=grant.id,
        model=f"{card.id} {card.version}",
        provider=analysis.prediction.session_info.provider,
        findings=len(analysis.result.findings),
        for_study=current.study_instance_uid,
    )
    result = analysis.result
    seed = content_uid_seed(uid, card.id, card.version, fingerprint)
    uids = {f.label: str(new_tracking_uid(result, f, uid_seed=seed)) for f in result.findings}
    categories: dict[str, LungRadsCategory] = {}
    if result.lung_rads is not None:
        categories = {
            uids[n.label]: n.category
            for n in result.lung_rads.nodules
            if n.category is not None and n.label in uids
        }
    reading = PriorReading(
        study=PriorStudy(
            study_instance_uid=uid,
            study_date=study_date,
            role=role,
            series_instance_uid=result.series_instance_uid,
            model=result.model,
        ),
        findings=result.findings,
        tracking_uids=uids,
        lung_surface_lps_mm=lung_surface(analysis.volume, predictor, analysis.prediction),
    )
    return reading, categories
