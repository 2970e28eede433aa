"""``preread demo``: a hospital sends phantom chest CTs; PreRead reads them back into Orthanc.

1. starts the embedded service (a private Orthanc with a generated hardened configuration, the
   job store, the watcher, the workers and the API);
2. writes a few phantom chest-CT studies and sends them with dcmtk's ``storescu`` as the
   hospital's modality would (C-STORE, calling AE ``HOSPITAL``);
3. waits until each study has its pre-read, and reports, per study: nodules found vs the
   phantom's truth, the time from the study becoming stable to the SR stored, and the
   execution provider that ran the model;
4. follow-up reading (on by default): a second private Orthanc plays the hospital's PACS
   (AE ``PACS``, set as ``PREREAD_PRIORS_PEER``) and holds the baseline of a follow-up phantom
   pair (:mod:`training.followup_phantoms`); the follow-up study is sent like the others, its
   job C-FINDs and C-MOVEs the baseline from the PACS and compares, and the demo reports, per
   nodule, the comparison (status, volumes, change, doubling time, Lung-RADS) beside the
   pair's truth (``followup-truth.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from dicom_gateway.orthanc_server import OrthancConfig, OrthancServer, free_port, pacs_config
from preread.grants import Grant, GrantSpec, Purpose
from preread.service import Service
from preread.settings import Settings
from preread.store import JobRecord, JobState

FINAL = {JobState.DONE, JobState.FAILED, JobState.NOT_APPLICABLE, JobState.NOT_AUTHORIZED}


@dataclass(frozen=True)
class DemoRow:
    study: str
    slices: int
    state: str
    truth_nodules: int
    truth_ge6mm: int
    found: int
    found_ge6mm_hit: int
    false_positives: int
    stable_to_sr_s: float | None
    provider: str
    reason: str | None
    #: the exam's Lung-RADS v2022 category ("-": not assessed; "n/d": not determinable)
    lung_rads: str = "-"


class DemoError(RuntimeError):
    pass


def send_with_storescu(folder: Path, *, aet_calling: str, aet_called: str, port: int) -> None:
    """C-STORE every file under ``folder``, the way a modality or PACS would."""
    exe = shutil.which("storescu")
    if exe is None:
        raise DemoError("storescu (dcmtk) is not installed: run ./run setup")
    cmd = [
        exe,
        "-aet",
        aet_calling,
        "-aec",
        aet_called,
        "+sd",
        "+r",
        "-R",
        "127.0.0.1",
        str(port),
        str(folder),
    ]
    env = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK: no Nagle delay per PDU (~10x faster)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise DemoError(f"storescu failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


@dataclass(frozen=True)
class TruthNodule:
    center_lps_mm: tuple[float, float, float]
    long_axis_mm: float
    calcified: bool = False  # benign: not to be reported (a finding on it is a false positive)


def read_truth(path: Path) -> tuple[int, list[TruthNodule]]:
    """Slice count and nodules of a phantom's truth.json."""
    doc = json.loads(path.read_text())
    nodules = [
        TruthNodule(
            (
                float(n["center_lps_mm"][0]),
                float(n["center_lps_mm"][1]),
                float(n["center_lps_mm"][2]),
            ),
            float(n["long_axis_mm"]),
            bool(n.get("calcified", False)),
        )
        for n in doc["nodules"]
    ]
    return int(doc["n_slices"]), nodules


def truth_hits(centre: Any, truth: list[TruthNodule]) -> list[int]:
    """The nodules of ``truth`` a finding centred at ``centre`` (LPS mm) hits: it lies within
    max(radius, 2 mm) of a nodule that is not calcified (calcified nodules are benign: a
    finding there is a false positive)."""
    point = np.asarray(centre, dtype=float)
    return [
        i
        for i, n in enumerate(truth)
        if not n.calcified
        and float(np.linalg.norm(point - np.asarray(n.center_lps_mm)))
        <= max(n.long_axis_mm / 2, 2.0)
    ]


def row_for(job: JobRecord, truth: list[TruthNodule], slices: int) -> DemoRow:
    """Compare a job's findings with the truth (:func:`truth_hits`)."""
    findings = list((job.result or {}).get("findings", []))
    hits: set[int] = set()
    fps = 0
    for f in findings:
        near = truth_hits(f["center_lps_mm"], truth)
        hits.update(near)
        fps += 0 if near else 1
    seconds = (job.finished_at - job.created_at).total_seconds() if job.finished_at else None
    return DemoRow(
        study=job.study_instance_uid,
        slices=slices,
        state=job.state.value,
        truth_nodules=sum(1 for n in truth if not n.calcified),
        truth_ge6mm=sum(1 for n in truth if n.long_axis_mm >= 6 and not n.calcified),
        found=len(findings),
        found_ge6mm_hit=sum(1 for i in hits if truth[i].long_axis_mm >= 6),
        false_positives=fps,
        stable_to_sr_s=seconds,
        provider=job.provider_used or "-",
        reason=job.reason,
        lung_rads=_lung_rads(job),
    )


def _lung_rads(job: JobRecord) -> str:
    rads = (job.result or {}).get("lung_rads")
    if not isinstance(rads, dict):
        return "-"
    return str(rads.get("category") or "n/d")


DEMO_SENDER = "HOSPITAL"


def demo_grant(service: Service, senders: tuple[str, ...] = (DEMO_SENDER,)) -> Grant:
    """The clinical-preread grant of the demo's own sources (its phantoms, sent as AE HOSPITAL;
    with the follow-up part, also the priors the demo's PACS sends): the one already in force
    that covers all of ``senders``, else a new one for a year."""
    tenant = service.settings.tenant_of(DEMO_SENDER) or "default"
    now = datetime.now(UTC)
    for grant in service.grants.list(
        tenant=tenant, purpose=Purpose.CLINICAL_PREREAD, active_at=now
    ):
        if set(senders) <= set(grant.spec.sender_aets) and grant.spec.study_uids is None:
            return grant
    return service.grants.create(
        GrantSpec(
            tenant=tenant,
            purpose=Purpose.CLINICAL_PREREAD,
            valid_from=now,
            valid_to=now + timedelta(days=365),
            legal_basis="PreRead demo: synthetic phantom studies, no patient data",
            issued_by="preread demo",
            sender_aets=senders,
        )
    )


def wait_for_jobs(
    service: Service, uids: Collection[str], timeout_s: float, *, shadow: bool = False
) -> dict[str, JobRecord]:
    """The final job of each study in ``uids`` (``shadow``: its finished reading by a version
    in shadow), waiting up to ``timeout_s`` for them."""
    deadline = time.monotonic() + timeout_s
    done: dict[str, JobRecord] = {}
    while len(done) < len(uids):
        if time.monotonic() > deadline:
            missing = sorted(set(uids) - set(done))
            what = "shadow reading" if shadow else "pre-read"
            raise DemoError(f"no {what} after {timeout_s:.0f} s for {missing}")
        for uid in uids:
            if uid in done:
                continue
            jobs = service.store.current_for_study(uid, include_shadow=shadow)
            final = [j for j in jobs if j.shadow == shadow and j.state in FINAL]
            if final:
                done[uid] = final[0]
        time.sleep(0.5)
    return done


def run_demo(
    service: Service,
    *,
    count: int,
    seed: int,
    matrix: int = 512,
    max_slices: int | None = None,
    timeout_s: float = 900.0,
    on_status: Callable[[str], None] | None = None,
) -> list[DemoRow]:
    """Send ``count`` phantom studies to the service's Orthanc and wait for their pre-reads."""
    sent = send_studies(
        service,
        count=count,
        seed=seed,
        matrix=matrix,
        max_slices=max_slices,
        timeout_s=timeout_s,
        on_status=on_status,
    )
    return [row_for(s.job, s.truth, s.slices) for s in sent]


@dataclass(frozen=True)
class SentStudy:
    """A phantom study sent to the service, its truth and its final reading."""

    study_instance_uid: str
    slices: int
    truth: list[TruthNodule]
    job: JobRecord


def send_studies(
    service: Service,
    *,
    count: int,
    seed: int,
    matrix: int = 512,
    max_slices: int | None = None,
    timeout_s: float = 900.0,
    on_status: Callable[[str], None] | None = None,
) -> list[SentStudy]:
    """Write ``count`` phantom studies (seeds ``seed``…), C-STORE them to the service's private
    Orthanc as AE HOSPITAL and wait for each one's final reading."""
    from training.phantom_dicom import write_phantoms

    orthanc = service.orthanc
    if orthanc is None:
        raise DemoError("the demo sends to its private Orthanc; unset PREREAD_ORTHANC_URL")
    say = on_status or (lambda _m: None)
    incoming = service.settings.data_dir / "demo" / f"seed-{seed}"
    shutil.rmtree(incoming, ignore_errors=True)
    say(f"writing {count} phantom chest CT studies")
    studies = write_phantoms(incoming, count, seed, matrix=matrix, max_slices=max_slices)
    say("sending them with storescu (C-STORE, AE HOSPITAL)")
    for st in studies:
        send_with_storescu(
            st.ct_dir, aet_calling=DEMO_SENDER, aet_called=orthanc.aet, port=orthanc.dicom_port
        )
    wanted = {st.study_instance_uid: st for st in studies}
    say("waiting for the pre-reads")
    done = wait_for_jobs(service, wanted, timeout_s)
    out = []
    for uid, st in wanted.items():
        slices, truth = read_truth(st.truth_path)
        out.append(SentStudy(uid, slices, truth, done[uid]))
    return out


# -- follow-up reading: a prior on the hospital's PACS ---------------------------------------

#: The AE title of the demo's second Orthanc, which plays the hospital's PACS
PACS_AET = "PACS"
#: A follow-up pair (:func:`training.followup_phantoms.follow_up_pair`; outside the evaluation's
#: seeds, ≥ 970000) of 1.25 mm slices, 271-282 days apart: a new solid nodule and persistent
#: solid ones, two of 7 and 11 mm growing with doubling times of about 300-350 days. Capped at
#: ``--max-slices 64`` the pair differs (its nodules fit the shorter range); lung-nodule 2.4.0
#: finds every nodule of the truth in both studies either way.
FOLLOW_UP_SEED = 991_001


def follow_up_setup(settings: Settings) -> tuple[Settings, OrthancConfig]:
    """The settings that make the demo's PACS PreRead's priors peer, and that PACS's config.

    PreRead's Orthanc gets a fixed DICOM port (the PACS must know where to send what it is
    asked to move); the PACS, on a free port with its storage under the demo's folder, lists
    PreRead as a node that may C-FIND and C-MOVE. The priors arrive with the PACS's AE title as
    their sender: it is mapped to the tenant of the demo's sender (the grant must cover it
    too: :func:`demo_grant` with both)."""
    preread_port = settings.orthanc_dicom_port or free_port()
    pacs_port = free_port()
    while pacs_port == preread_port:  # pragma: no cover - the OS hands out another port
        pacs_port = free_port()
    storage = settings.data_dir / "demo" / "pacs"
    shutil.rmtree(storage, ignore_errors=True)  # the PACS holds this run's prior only
    storage.mkdir(parents=True)
    pacs = pacs_config(
        storage,
        pacs_port,
        aet=PACS_AET,
        preread_aet=settings.orthanc_aet,
        preread_port=preread_port,
    )
    tenants = dict(settings.tenants)
    tenant = settings.tenant_of(DEMO_SENDER)
    if tenant is not None and settings.tenant_of(PACS_AET) != tenant:
        tenants[PACS_AET] = tenant
    update = {
        "priors_peer": f"{PACS_AET}@127.0.0.1:{pacs_port}",
        "orthanc_dicom_port": preread_port,
        "tenants": tenants,
    }
    return settings.model_copy(update=update), pacs


@dataclass(frozen=True)
class FollowUpRow:
    """One nodule of the follow-up pair: the comparison's (``status`` "-": not found) beside
    the truth's (``truth`` "-": no nodule of the truth there, a false positive)."""

    truth: str
    status: str
    truth_status: str
    prior_volume_mm3: float | None
    volume_mm3: float | None
    change_pct: float | None
    vdt_days: float | None
    vdt_band: str | None
    truth_vdt_days: float | None
    lung_rads: str
    truth_lung_rads: str


@dataclass(frozen=True)
class FollowUpReport:
    """The follow-up study's pre-read against its prior, and the pair's truth."""

    study: str
    state: str
    #: the comparison's status (compared, no-prior, unavailable, not-configured; "-": none)
    comparison: str
    reason: str | None
    #: the prior compared with: its StudyInstanceUID and StudyDate (ISO)
    prior: str | None
    prior_date: str | None
    days: int | None
    truth_days: int
    lung_rads: str
    truth_lung_rads: str
    rows: tuple[FollowUpRow, ...]


def _near(centre: Any, truth_centre: Any, diameter: Any) -> bool:
    if centre is None or truth_centre is None or diameter is None:
        return False
    distance = np.linalg.norm(np.asarray(centre, dtype=float) - np.asarray(truth_centre))
    return float(distance) <= max(float(diameter) / 2, 2.0)


def follow_up_report(job: JobRecord, truth: Mapping[str, Any]) -> FollowUpReport:
    """The follow-up job's comparison (``job.result``) beside ``truth`` (followup-truth.json):
    a nodule of the comparison is that of the truth within max(radius, 2 mm) of its centre (in
    the follow-up; a resolved one: in the baseline)."""
    result = job.result or {}
    comparison = result.get("comparison") or {}
    centres = {f["label"]: f["center_lps_mm"] for f in result.get("findings", [])}
    rads = result.get("lung_rads") or {}
    categories = {n["label"]: n.get("category") or "n/d" for n in rads.get("nodules", [])}
    unmatched = list(truth.get("nodules", []))
    rows: list[FollowUpRow] = []
    for n in comparison.get("nodules", []):
        if n["status"] == "resolved":
            at, where, size = n.get("prior_center_lps_mm"), "baseline_center_lps_mm", "baseline"
        else:
            at, where, size = centres.get(n["label"]), "follow_up_center_lps_mm", "follow_up"
        t = next((t for t in unmatched if _near(at, t[where], t[f"{size}_diameter_mm"])), None)
        if t is not None:
            unmatched.remove(t)
        rows.append(
            FollowUpRow(
                truth="-" if t is None else str(t["key"]),
                status=str(n["status"]),
                truth_status="-" if t is None else str(t["status"]),
                prior_volume_mm3=n.get("prior_volume_mm3"),
                volume_mm3=n.get("volume_mm3"),
                change_pct=n.get("volume_change_pct"),
                vdt_days=n.get("vdt_days"),
                vdt_band=n.get("vdt_band"),
                truth_vdt_days=None if t is None else t.get("vdt_days"),
                lung_rads=str(categories.get(n["label"], "-")),
                truth_lung_rads=str((t or {}).get("follow_up_lung_rads") or "-"),
            )
        )
    for t in unmatched:  # missed by the model (or not matched by the comparison)
        rows.append(
            FollowUpRow(
                truth=str(t["key"]),
                status="-",
                truth_status=str(t["status"]),
                prior_volume_mm3=None,
                volume_mm3=None,
                change_pct=None,
                vdt_days=None,
                vdt_band=None,
                truth_vdt_days=t.get("vdt_days"),
                lung_rads="-",
                truth_lung_rads=str(t.get("follow_up_lung_rads") or "-"),
            )
        )
    rows.sort(key=lambda r: (r.truth == "-", r.truth))
    prior = comparison.get("prior") or {}
    days = [n["days_between"] for n in comparison.get("nodules", []) if n.get("days_between")]
    return FollowUpReport(
        study=job.study_instance_uid,
        state=job.state.value,
        comparison=str(comparison.get("status") or "-"),
        reason=comparison.get("reason") or job.reason,
        prior=prior.get("study_instance_uid"),
        prior_date=prior.get("study_date"),
        days=days[0] if days else None,
        truth_days=int(truth["days_between"]),
        lung_rads=_lung_rads(job),
        truth_lung_rads=str(truth.get("follow_up_exam_lung_rads") or "-"),
        rows=tuple(rows),
    )


def run_follow_up(
    service: Service,
    pacs: OrthancServer,
    *,
    seed: int = FOLLOW_UP_SEED,
    matrix: int = 512,
    max_slices: int | None = None,
    timeout_s: float = 900.0,
    on_status: Callable[[str], None] | None = None,
) -> FollowUpReport:
    """Put the baseline of the follow-up pair of ``seed`` on ``pacs`` (as acquired months
    before), send the follow-up study to the service's Orthanc with storescu (AE HOSPITAL),
    wait for its pre-read (which fetches the baseline from the PACS and compares) and report
    the comparison beside the pair's truth."""
    from training.followup_phantoms import follow_up_pair, write_follow_up_pair

    orthanc = service.orthanc
    if orthanc is None:
        raise DemoError("the demo sends to its private Orthanc; unset PREREAD_ORTHANC_URL")
    say = on_status or (lambda _m: None)
    folder = service.settings.data_dir / "demo" / f"follow-up-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    say("writing a follow-up pair (baseline and follow-up CT of one patient)")
    pair = follow_up_pair(seed, matrix=matrix, max_slices=max_slices)
    baseline, follow_up = write_follow_up_pair(pair, folder)
    say(f"putting the baseline on the hospital's PACS (AE {pacs.aet})")
    files = sorted(baseline.ct_dir.iterdir())
    with pacs.client() as client:
        for start in range(0, len(files), 32):
            client.store([p.read_bytes() for p in files[start : start + 32]])
    say("sending the follow-up study with storescu (C-STORE, AE HOSPITAL)")
    send_with_storescu(
        follow_up.ct_dir, aet_calling=DEMO_SENDER, aet_called=orthanc.aet, port=orthanc.dicom_port
    )
    say("waiting for the follow-up's pre-read (with its prior from the PACS)")
    uid = follow_up.study_instance_uid
    job = wait_for_jobs(service, [uid], timeout_s)[uid]
    truth = json.loads((baseline.study_dir.parent / "followup-truth.json").read_text())
    return follow_up_report(job, truth)


def follow_up_table(report: FollowUpReport) -> Table:
    """The demo's second table: the follow-up study against its prior, beside the truth."""

    def num(value: float | None, fmt: str = ".0f") -> str:
        return "-" if value is None else format(value, fmt)

    t = Table(
        title="Follow-up: the pre-read compared with its prior from the PACS "
        "(AI-generated, preliminary)"
    )
    for col in (
        "truth",
        "status (truth)",
        "volume mm³ prior → now",
        "change %",
        "VDT days (band)",
        "truth VDT",
        "Lung-RADS (truth)",
    ):
        t.add_column(col)
    for r in report.rows:
        t.add_row(
            r.truth,
            f"{r.status} ({r.truth_status})",
            f"{num(r.prior_volume_mm3)} → {num(r.volume_mm3)}",
            num(r.change_pct, "+.0f"),
            "-" if r.vdt_days is None else f"{r.vdt_days:.0f} ({r.vdt_band})",
            num(r.truth_vdt_days),
            f"{r.lung_rads} ({r.truth_lung_rads})",
        )
    return t


def follow_up_lines(report: FollowUpReport) -> list[str]:
    """What the table leaves out: the study, the comparison's status and prior, the exam's
    Lung-RADS category (and the truth's), the reason when not compared."""
    prior = f" with the prior …{report.prior[-12:]}" if report.prior else ""
    when = f" of {report.prior_date}, {report.days} days before" if report.prior_date else ""
    lines = [
        f"follow-up …{report.study[-12:]} ({report.state}): comparison {report.comparison}"
        f"{prior}{when} (truth: {report.truth_days} days); exam Lung-RADS {report.lung_rads} "
        f"(truth {report.truth_lung_rads})"
    ]
    if report.reason:
        lines.append(f"{report.study}: {report.reason}")
    return lines
