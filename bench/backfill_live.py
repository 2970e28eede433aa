"""Benchmark: does re-reading the archive slow the live studies down?

Run: ``./run bench backfill`` (``.venv/bin/python bench/backfill_live.py``; ``--quick`` for a
sanity run: 10 archived studies, 2 live rounds of each kind; ``--help`` for the options).
Prints a table and the ratio; asserts nothing. Needs Orthanc with its DICOMweb plugin and
DCMTK's ``storescu``.

Two real Orthancs: PreRead's (AE title PREREAD, StableAge 2 s) and one playing the hospital
PACS (PACS), which holds ``--archive`` (default 50) archived chest CTs of 2024, each of its own
patient (phantoms of 512 × 512, ``--archive-slices`` slices). Two PreRead processes share one
SQLite job store, as a deployment beside its own Orthanc runs them:

* the **live service** (``preread serve`` without the API: the change-feed watcher and the
  in-process worker with the shipped default model, a clinical-preread grant for the sender);
* the **backfill**, ``preread backfill run --tenant default --from 2024-01-01 --to
  2024-12-31`` (``PREREAD_PRIORS_PEER`` names the PACS; a quality-review grant), started
  halfway: it C-FINDs the range, C-MOVEs and reads one study at a time, only while no live
  job waits, niced.

A live round sends one chest CT (``--slices`` slices of 512 × 512, new UIDs each round) as
the hospital (``storescu``) and measures **stable → SR stored**: from the moment Orthanc
reports the study stable (its ``StableStudy`` change) to the job's finish in the store (SR and
SEG stored in Orthanc). Rounds: ``--rounds`` idle (no backfill), ``--rounds`` while the
backfill runs (each after a random 0–4 s wait, so the study arrives at any point of a backfill
reading), then ``--rounds`` idle again. The issue's goal: the median with the backfill
running ≤ 1.2 × the idle median. Also printed: how many archived studies the backfill read
and how long it waited for live jobs.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import (  # bench/harness.py
    HOSPITAL_AET,
    BenchError,
    Child,
    child_config,
    child_settings,
    emit,
    phantom_grant,
    read_child_config,
    remove_work,
    run_bench,
    send,
)

if TYPE_CHECKING:
    from dicom_gateway.client import OrthancClient
    from dicom_gateway.orthanc_server import OrthancServer

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 1.2
PACS_NAME, PACS_AET, PREREAD_AET = "pacs", "PACS", "PREREAD"
FIRST, LAST = dt.date(2024, 1, 1), dt.date(2024, 12, 31)


def child_main() -> int:
    """The live service on the Orthanc named on stdin (watcher + in-process worker)."""
    import signal
    import threading

    from preread.service import Service

    settings = child_settings(read_child_config())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Service(settings) as service:
        service.start_loop()
        emit("ready")
        stop.wait()
    return 0


def _env(server: OrthancServer, data_dir: Path, models_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREREAD_DATA_DIR": str(data_dir),
        "PREREAD_MODELS_DIR": str(models_dir),
        "PREREAD_ORTHANC_URL": server.url,
        "PREREAD_ORTHANC_USERNAME": server.username,
        "PREREAD_ORTHANC_PASSWORD": server.password,
        "PREREAD_PRIORS_PEER": PACS_NAME,
        "COLUMNS": "250",  # its progress lines unwrapped in the log
    }


def _series(folder: Path) -> list[Any]:
    import pydicom

    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


def _copy(template: list[Any], patient_id: str, day: dt.date, out: Path) -> str:
    """The template series written to ``out`` as a new study of ``patient_id`` on ``day``."""
    from pydicom.uid import generate_uid

    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out.mkdir(parents=True)
    for n, source in enumerate(template):
        ds = source.copy()
        ds.file_meta = copy.deepcopy(source.file_meta)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID = patient_id
        ds.StudyDate = ds.SeriesDate = day.strftime("%Y%m%d")
        ds.AccessionNumber = f"ACC-{patient_id}"[:16]
        ds.save_as(out / f"{n:04d}.dcm", enforce_file_format=True)
    return str(study)


@dataclass(frozen=True)
class Round:
    kind: str  # idle-before | backfill | idle-after
    seconds: float  # stable -> SR stored
    load: float


def _stable_at(client: OrthancClient, study_uid: str, since: int, timeout_s: float) -> float:
    """Follow the change log until the study's ``StableStudy``; the monotonic time seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page = client.changes(since=since, limit=1000)
        for change in page.changes:
            if change.is_stable_study and client.study(change.orthanc_id).study_instance_uid == (
                study_uid
            ):
                return time.monotonic()
        since = page.last
        if page.done:
            time.sleep(0.05)
    raise BenchError(f"no StableStudy for the live study within {timeout_s:.0f} s")


def _done_at(jobs: Any, study_uid: str, timeout_s: float) -> float:
    from preread.store import JobState

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = jobs.current_for_study(study_uid)
        if current and current[0].state is JobState.DONE:
            return time.monotonic()
        if current and current[0].state in (JobState.FAILED, JobState.NOT_APPLICABLE):
            raise BenchError(f"the live study's job ended {current[0].state}: {current[0].reason}")
        time.sleep(0.05)
    raise BenchError(f"the live study was not read within {timeout_s:.0f} s")


def live_round(
    kind: str, folder: Path, study_uid: str, server: OrthancServer, client: Any, jobs: Any
) -> Round:
    load = os.getloadavg()[0]
    page = client.changes(since=0, limit=1000)
    while not page.done:  # to the end of the log: only this round's changes follow
        page = client.changes(since=page.last, limit=1000)
    since = page.last
    send(folder, server.aet, server.dicom_port)
    stable = _stable_at(client, study_uid, since, 120)
    done = _done_at(jobs, study_uid, 900)
    return Round(kind, done - stable, load)


def run(args: argparse.Namespace) -> int:
    from dicom_gateway.orthanc_server import (
        DicomPeer,
        OrthancConfig,
        OrthancServer,
        free_port,
        pacs_config,
    )
    from preread.audit import AuditLog
    from preread.grants import GrantSpec, GrantStore, Purpose
    from preread.store import JobStore, default_url
    from training.phantom_dicom import write_phantom_study
    from training.phantoms import generate_phantom

    work = Path(tempfile.mkdtemp(prefix="preread-bench-backfill-"))
    backfill: subprocess.Popen[str] | None = None
    live: Child | None = None
    try:
        print("writing the phantoms ...", flush=True)
        live_ph = generate_phantom(args.seed, matrix=512, max_slices=args.slices)
        live_template = _series(write_phantom_study(live_ph, work / "live-template").ct_dir)
        arch_ph = generate_phantom(args.seed + 1, matrix=512, max_slices=args.archive_slices)
        arch_template = _series(write_phantom_study(arch_ph, work / "archive-template").ct_dir)
        rounds_of = ("idle-before", "backfill", "idle-after")
        live_studies = [
            (kind, work / f"live-{kind}-{i}") for kind in rounds_of for i in range(args.rounds)
        ]
        live_uids = {
            folder: _copy(live_template, f"LIVE-{n}", dt.date.today(), folder)
            for n, (_, folder) in enumerate(live_studies)
        }
        archive = [
            _copy(
                arch_template,
                f"ARCH-{n:03d}",
                FIRST + dt.timedelta(days=(7 * n) % 360),
                work / "archive" / f"{n:03d}",
            )
            for n in range(args.archive)
        ]
        preread_port, pacs_port = free_port(), free_port()
        preread_cfg = OrthancConfig(
            storage_dir=work / "preread-orthanc",
            dicom_port=preread_port,
            aet=PREREAD_AET,
            stable_age_s=2,
            dicom_modalities=(
                DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),
                DicomPeer(PACS_NAME, PACS_AET, "127.0.0.1", pacs_port),
            ),
        )
        pacs_cfg = pacs_config(
            work / "pacs-orthanc",
            pacs_port,
            aet=PACS_AET,
            preread_aet=PREREAD_AET,
            preread_port=preread_port,
        )
        data = work / "preread"
        with (
            OrthancServer(preread_cfg) as server,
            OrthancServer(pacs_cfg) as pacs,
            server.client(timeout=60) as client,
            JobStore.create(default_url(data)) as jobs,
        ):
            jobs.migrate()
            grants = GrantStore(jobs.engine, audit=AuditLog(jobs.engine))
            grants.create(phantom_grant("bench/backfill_live.py"))
            now = dt.datetime.now(dt.UTC)
            grants.create(
                GrantSpec(
                    tenant="default",
                    purpose=Purpose.QUALITY_REVIEW,
                    valid_from=now - dt.timedelta(minutes=1),
                    valid_to=now + dt.timedelta(days=1),
                    legal_basis="benchmark: synthetic phantoms, no patient data",
                    issued_by="bench/backfill_live.py",
                    sender_aets=(PACS_AET,),
                )
            )
            print(f"storing {len(archive)} archived studies on the PACS ...", flush=True)
            with pacs.client(timeout=120) as upload:  # the PACS takes no C-STORE from PreRead
                for folder in sorted((work / "archive").iterdir()):
                    upload.store([p.read_bytes() for p in sorted(folder.iterdir())])
            env = _env(server, data, args.models_dir)
            live = Child(__file__, child_config(server, data, args.models_dir), work / "live.log")
            live.event(300, "ready")
            warm = work / "live-warm-up"
            warm_uid = _copy(live_template, "LIVE-WARM", dt.date.today(), warm)
            live_round("warm-up", warm, warm_uid, server, client, jobs)
            rounds: list[Round] = []
            backfill_log = (work / "backfill.log").open("w")
            for kind, folder in live_studies:
                if kind == "backfill" and backfill is None:
                    backfill = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "preread"),
                            "backfill",
                            "run",
                            "--tenant",
                            "default",
                            "--from",
                            FIRST.isoformat(),
                            "--to",
                            LAST.isoformat(),
                        ],
                        env=env,
                        stdout=backfill_log,
                        stderr=subprocess.STDOUT,
                        text=True,
                        cwd=ROOT,
                    )
                    _wait_reading(work / "backfill.log", backfill, 300)
                if kind == "idle-after" and backfill is not None and backfill.poll() is None:
                    print("waiting for the backfill to finish ...", flush=True)
                    backfill.wait(timeout=args.archive * 120)
                if kind == "backfill":
                    time.sleep(random.Random(folder.name).uniform(0, 4))
                    if backfill is not None and backfill.poll() is not None:
                        raise BenchError(
                            "the backfill finished before the live rounds beside it: "
                            "give it more studies (--archive)"
                        )
                r = live_round(kind, folder, live_uids[folder], server, client, jobs)
                print(f"  {kind}: stable -> SR {r.seconds:.1f} s", flush=True)
                rounds.append(r)
            backfill_log.close()
            return report(args, rounds, work / "backfill.log")
    finally:
        if backfill is not None and backfill.poll() is None:
            backfill.terminate()
            backfill.wait(timeout=30)
        if live is not None:
            live.stop()
        remove_work(work, keep=args.keep)


def _wait_reading(log: Path, process: subprocess.Popen[str], timeout_s: float) -> None:
    """Until the backfill has found its studies and read its first one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the backfill exited ({process.returncode}):\n{log.read_text()}")
        if ": done" in log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise BenchError(f"the backfill read no study within {timeout_s:.0f} s")


def report(args: argparse.Namespace, rounds: list[Round], backfill_log: Path) -> int:
    print()
    print("A live study's stable -> SR time, idle and with the archive being re-read")
    print(
        f"live study: {args.slices} slices of 512x512; archive: {args.archive} studies of "
        f"{args.archive_slices} slices on a second Orthanc (the PACS); machine: "
        f"{os.cpu_count()} CPU core(s)"
    )
    print()
    print(f"{'round':>5}  {'kind':<12}{'stable->SR s':>13}{'load 1m':>9}")
    for i, r in enumerate(rounds, start=1):
        print(f"{i:>5}  {r.kind:<12}{r.seconds:>13.1f}{r.load:>9.2f}")
    idle = [r.seconds for r in rounds if r.kind != "backfill"]
    busy = [r.seconds for r in rounds if r.kind == "backfill"]
    m_idle, m_busy = statistics.median(idle), statistics.median(busy)
    ratio = m_busy / m_idle
    lines = backfill_log.read_text(errors="replace").splitlines()
    print()
    print(f"median idle (before and after): {m_idle:.1f} s")
    print(f"median with the backfill running: {m_busy:.1f} s")
    print(
        f"ratio backfill / idle: {ratio:.2f}  (goal <= {GOAL_RATIO}: "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'})"
    )
    summary = [line for line in lines if line.startswith("run ")]
    print(f"backfill: {summary[-1] if summary else 'no summary (see its log: --keep)'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="live stable->SR with and without a backfill")
    ap.add_argument("--seed", type=int, default=990_100, help="phantom seed (live; +1 archive)")
    ap.add_argument("--slices", type=int, default=200, help="slices of the live study")
    ap.add_argument("--archive", type=int, default=50, help="archived studies to re-read")
    ap.add_argument("--archive-slices", type=int, default=120, help="slices of each")
    ap.add_argument("--rounds", type=int, default=3, help="live rounds of each kind")
    ap.add_argument("--quick", action="store_true", help="10 archived studies, 2 rounds each")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main()
    if args.quick:
        args.archive, args.rounds, args.slices, args.archive_slices = 10, 2, 100, 80
    return run_bench(
        run,
        args,
        tools=("storescu", "Orthanc"),
        cleaned="Orthancs, PreRead and the folders were cleaned up",
    )


if __name__ == "__main__":
    sys.exit(main())
