"""``preread demo``: a hospital sends phantom chest CTs; PreRead reads them back into Orthanc.

1. starts the embedded service (a private Orthanc with a generated hardened configuration, the
   job store, the watcher, the workers and the API);
2. writes a few phantom chest-CT studies and sends them with dcmtk's ``storescu`` as the
   hospital's modality would (C-STORE, calling AE ``HOSPITAL``);
3. waits until each study has its pre-read, and reports, per study: nodules found vs the
   phantom's truth, the time from the study becoming stable to the SR stored, and the
   execution provider that ran the model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from preread.grants import Grant, GrantSpec, Purpose
from preread.service import Service
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


def row_for(job: JobRecord, truth: list[TruthNodule], slices: int) -> DemoRow:
    """Compare a job's findings with the truth: a hit lies within max(radius, 2 mm) of a
    nodule that is not calcified (calcified nodules are benign: a finding there is a false
    positive)."""
    findings = list((job.result or {}).get("findings", []))
    hits: set[int] = set()
    fps = 0
    for f in findings:
        centre = np.asarray(f["center_lps_mm"], dtype=float)
        near = [
            i
            for i, n in enumerate(truth)
            if not n.calcified
            and float(np.linalg.norm(centre - np.asarray(n.center_lps_mm)))
            <= max(n.long_axis_mm / 2, 2.0)
        ]
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


def demo_grant(service: Service) -> Grant:
    """The clinical-preread grant of the demo's own source (its phantoms, sent as AE HOSPITAL):
    the one already in force, else a new one for a year."""
    tenant = service.settings.tenant_of(DEMO_SENDER) or "default"
    now = datetime.now(UTC)
    for grant in service.grants.list(
        tenant=tenant, purpose=Purpose.CLINICAL_PREREAD, active_at=now
    ):
        if DEMO_SENDER in grant.spec.sender_aets and grant.spec.study_uids is None:
            return grant
    return service.grants.create(
        GrantSpec(
            tenant=tenant,
            purpose=Purpose.CLINICAL_PREREAD,
            valid_from=now,
            valid_to=now + timedelta(days=365),
            legal_basis="PreRead demo: synthetic phantom studies, no patient data",
            issued_by="preread demo",
            sender_aets=(DEMO_SENDER,),
        )
    )


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
    deadline = time.monotonic() + timeout_s
    done: dict[str, JobRecord] = {}
    while len(done) < len(wanted):
        if time.monotonic() > deadline:
            missing = sorted(set(wanted) - set(done))
            raise DemoError(f"no pre-read after {timeout_s:.0f} s for {missing}")
        for uid in wanted:
            if uid in done:
                continue
            jobs = service.store.current_for_study(uid)
            if jobs and jobs[0].state in FINAL:
                done[uid] = jobs[0]
        time.sleep(0.5)
    rows = []
    for uid, st in wanted.items():
        slices, truth = read_truth(st.truth_path)
        rows.append(row_for(done[uid], truth, slices))
    return rows
