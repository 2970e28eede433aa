"""Benchmark the watcher's overhead on Orthanc: 300 instances sent with and without PreRead.

Run: ``./run bench watcher`` (``.venv/bin/python bench/watcher_overhead.py``; ``--quick`` for a
sanity run: 60 slices of 256×256, 2 rounds each; ``--help`` for the options). Prints a table;
asserts nothing. Needs Orthanc with its DICOMweb plugin and DCMTK's ``storescu``.

The series: one phantom chest CT (seed 990000, 512×512, capped at 300 slices of 0.625 mm:
300 instances, ~150 MB), sent by ``storescu`` (C-STORE, ``TCP_NODELAY=1``, as the hospital
``HOSPITAL``) to a fresh private Orthanc (StableAge 2 s) in every round; the rounds alternate
*without* and *with* PreRead watching (default 6 of each, after one discarded warm-up send).

"Watching" is the embedded PreRead as ``preread serve`` runs it against an existing Orthanc,
in a process of its own: the change-feed watcher polling ``/changes`` at the default interval
(``PREREAD_POLL_INTERVAL_S``, 1 s), the job store (SQLite), the in-process runner with the
model loaded, and a grant for the sender. During the send the watcher follows the change feed
(one ``NewInstance`` change per instance); when the study becomes stable (after the send) it
reads the study (fetch, inference, SR + SEG stored). Each round waits for that read to end
before the next round, so a read never overlaps a send: the send time shows what watching
costs Orthanc while images arrive, and the read's seconds are printed beside it.

Measured: ``storescu``'s wall time per round; the median of each mode; the ratio with/without
(the issue's goal: ≤ 1.05, at most 5 % slower). Also printed: the load average over the rounds
(the machine is shared; a disturbed round shows as an outlier beside its medians).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (  # bench/harness.py
    HOSPITAL_AET,
    BenchError,
    Child,
    child_config,
    child_settings,
    emit,
    grant_phantoms,
    read_child_config,
    remove_work,
    run_bench,
    send,
)

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 1.05


def child_main() -> int:
    """PreRead watching the Orthanc named on stdin; emits ``ready`` then ``job`` per final job."""
    from preread.service import Service
    from preread.store.states import FINISHED

    cfg = read_child_config()
    settings = child_settings(cfg)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Service(settings) as service:
        grant_phantoms(service, "bench/watcher_overhead.py")
        service.start_loop()
        emit("ready", poll_interval_s=settings.poll_interval_s)
        reported = False
        while not stop.wait(0.1):
            jobs = service.store.current_for_study(cfg["study_uid"])
            if jobs and jobs[0].state in FINISHED and not reported:
                job = jobs[0]
                seconds = (
                    (job.finished_at - job.created_at).total_seconds() if job.finished_at else None
                )
                emit("job", state=job.state.value, seconds=seconds, reason=job.reason)
                reported = True
    return 0


@dataclass(frozen=True)
class Sent:
    mode: str
    seconds: float
    read_s: float | None
    load: float


def one_round(
    args: argparse.Namespace, mode: str, ct_dir: Path, study_uid: str, folder: Path
) -> Sent:
    from dicom_gateway.orthanc_server import DicomPeer, OrthancConfig, OrthancServer

    folder.mkdir()
    server = OrthancServer(
        OrthancConfig(
            storage_dir=folder / "orthanc",
            stable_age_s=2,
            dicom_modalities=(DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),),
        )
    )
    server.start()
    child: Child | None = None
    try:
        if mode == "with":
            child = Child(
                __file__,
                child_config(server, folder / "preread", args.models_dir, study_uid=study_uid),
                folder / "preread.log",
            )
            child.event(300, "ready")
            time.sleep(1.0)  # let its start-up settle: the watcher is polling now
        load = os.getloadavg()[0]
        seconds = send(ct_dir, server.aet, server.dicom_port)
        read_s = None
        if child is not None:
            job = child.event(args.read_timeout, "finished read")
            if job["state"] != "done":
                raise BenchError(f"PreRead's read ended {job['state']}: {job['reason']}")
            read_s = job["seconds"]
        return Sent(mode, seconds, read_s, load)
    finally:
        if child is not None:
            child.stop()
        server.stop()


def report(args: argparse.Namespace, n_files: int, n_bytes: int, rounds: list[Sent]) -> int:
    without = [r.seconds for r in rounds if r.mode == "without"]
    with_ = [r.seconds for r in rounds if r.mode == "with"]
    reads = [r.read_s for r in rounds if r.read_s is not None]
    print()
    print("Overhead of PreRead watching Orthanc while a series arrives (storescu, TCP_NODELAY=1)")
    print(
        f"series: {n_files} instances, {n_bytes / 1e6:.0f} MB, {args.matrix}x{args.matrix}; "
        f"a fresh Orthanc (StableAge 2 s) per round; watcher poll 1 s (the default)"
    )
    print(f"machine: {os.cpu_count()} CPU core(s)")
    print()
    print(f"{'round':>5}  {'mode':<8}{'send s':>8}{'inst/s':>8}{'read s':>8}{'load 1m':>9}")
    for i, r in enumerate(rounds, start=1):
        read = f"{r.read_s:>8.1f}" if r.read_s is not None else f"{'-':>8}"
        print(
            f"{i:>5}  {r.mode:<8}{r.seconds:>8.2f}{n_files / r.seconds:>8.0f}{read}{r.load:>9.2f}"
        )
    m_without, m_with = statistics.median(without), statistics.median(with_)
    ratio = m_with / m_without
    print()
    print(f"median send without PreRead: {m_without:.2f} s ({n_files / m_without:.0f} inst/s)")
    print(f"median send with PreRead watching: {m_with:.2f} s ({n_files / m_with:.0f} inst/s)")
    if reads:
        print(
            f"median read after stable (job created -> SR stored): {statistics.median(reads):.1f} s"
        )
    print(
        f"ratio with / without: {ratio:.3f}  ({100 * (ratio - 1):+.1f} %; goal <= +5 %: "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'})"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from training.phantom_dicom import write_phantom_study
    from training.phantoms import generate_phantom

    work = Path(tempfile.mkdtemp(prefix="preread-bench-watcher-"))
    try:
        phantom = generate_phantom(args.seed, matrix=args.matrix, max_slices=args.slices)
        files = write_phantom_study(phantom, work / "study")
        ct = sorted(files.ct_dir.iterdir())
        n_bytes = sum(p.stat().st_size for p in ct)
        print(f"series: {len(ct)} instances, {n_bytes / 1e6:.0f} MB in {files.ct_dir}", flush=True)
        if len(ct) != args.slices:
            print(f"note: seed {args.seed} has {len(ct)} slices, not {args.slices}")
        one_round(args, "without", files.ct_dir, files.study_instance_uid, work / "warm-up")
        rounds = []
        for i in range(args.rounds):
            for mode in ("without", "with") if i % 2 == 0 else ("with", "without"):
                r = one_round(
                    args, mode, files.ct_dir, files.study_instance_uid, work / f"r{i}-{mode}"
                )
                read = f", read {r.read_s:.1f} s" if r.read_s is not None else ""
                print(f"  round {i + 1} {mode}: sent in {r.seconds:.2f} s{read}", flush=True)
                rounds.append(r)
        return report(args, len(ct), n_bytes, rounds)
    finally:
        remove_work(work, keep=args.keep)


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Orthanc receiving 300 instances, with/without PreRead"
    )
    ap.add_argument("--seed", type=int, default=990_000, help="phantom seed (400 slices uncapped)")
    ap.add_argument("--slices", type=int, default=300, help="slice cap: instances sent")
    ap.add_argument("--matrix", type=int, default=512, help="rows = columns")
    ap.add_argument("--rounds", type=int, default=6, help="sends in each mode")
    ap.add_argument("--quick", action="store_true", help="60 slices of 256x256, 2 rounds each")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--read-timeout", type=float, default=900.0, help="stable -> SR (s)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main()
    if args.quick:
        args.slices, args.matrix, args.rounds = 60, 256, 2
    return run_bench(
        run,
        args,
        tools=("storescu", "Orthanc"),
        cleaned="Orthanc, PreRead and the folders were cleaned up",
    )


if __name__ == "__main__":
    sys.exit(main())
