"""Benchmark scale-out throughput: the same 12 studies read by 1 and by 2 ``preread worker``s.

Run: ``./run bench workers`` (``.venv/bin/python bench/worker_scaling.py``; ``--quick`` for a
sanity run: 3 studies of 256×256×≤80; ``--help`` for the options). Prints a table; asserts
nothing. Needs Orthanc with its DICOMweb plugin, DCMTK's ``storescu``, and the machine's
PostgreSQL (``--pg``, trust auth) and Redis (``--redis``, database 7 by default, flushed).

What it does, once per round (1 worker, then 2 workers), each round from scratch:

* a fresh private Orthanc (StableAge 1 s), a fresh PostgreSQL database (created, migrated,
  given the grant that authorizes the phantom sender ``HOSPITAL``, dropped afterwards) and a
  flushed Redis database (the broker; its own queue, ``PREREAD_QUEUE=preread.bench.workers``);
* the same 12 phantom chest CTs — the demo's: seeds 990000…990011 at 512×512 with their natural
  slice counts (0.625–2.5 mm slices) — sent by ``storescu`` (C-STORE, ``TCP_NODELAY=1``) and
  waited for until Orthanc reports every study stable;
* N ``preread worker`` processes (Celery, pool solo, ``PREREAD_INTRA_OP_THREADS=1``), each
  waited for until its model is loaded and it answers a Celery ping; then one ``preread
  watch`` (the leader), which finds the 12 stable studies on its first poll of ``/changes``
  and dispatches 12 jobs at once.

Measured: from the first job's ``created_at`` (dispatch) to the last job's ``finished_at`` (SR
and SEG stored in Orthanc), as the job store records them; studies per hour = 12 / that; the
scaling ratio = studies/h with 2 workers / with 1 (the issue's goal: ≥ 1.7 on this 2-core
machine). Also printed per round: the median of the jobs' own seconds, the load average and
the CPU time of other processes during the round (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dicom_gateway.orthanc_server import OrthancServer
    from preread.store import JobRecord, JobStore

from harness import (  # bench/harness.py
    HOSPITAL_AET,
    BenchError,
    phantom_grant,
    remove_work,
    run_bench,
    send,
)

ROOT = Path(__file__).resolve().parent.parent
GOAL_SCALING = 1.7


@dataclass(frozen=True)
class Study:
    seed: int
    study_uid: str
    ct_dir: Path
    slices: int
    n_bytes: int


@dataclass(frozen=True)
class Round:
    workers: int
    n_jobs: int
    states: dict[str, int]
    wall_s: float
    job_s_median: float
    send_s: float
    load_before: float
    load_after: float
    busy_cores: float
    ours_cores: float

    @property
    def per_hour(self) -> float:
        return self.n_jobs / self.wall_s * 3600.0


def make_studies(
    out: Path, count: int, seed: int, matrix: int, max_slices: int | None
) -> list[Study]:
    from training.phantom_dicom import write_phantom_study
    from training.phantoms import generate_phantom

    studies = []
    for s in range(seed, seed + count):
        t0 = time.perf_counter()
        phantom = generate_phantom(s, matrix=matrix, max_slices=max_slices)
        files = write_phantom_study(phantom, out)
        ct = sorted(files.ct_dir.iterdir())
        studies.append(
            Study(
                s,
                files.study_instance_uid,
                files.ct_dir,
                len(ct),
                sum(p.stat().st_size for p in ct),
            )
        )
        print(f"  phantom {s}: {len(ct)} slices ({time.perf_counter() - t0:.1f} s)", flush=True)
    return studies


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@contextmanager
def database(pg: str, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``name`` (dropped on exit); yields its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(f"postgresql+psycopg://{pg}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"postgresql://{pg}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def authorize(store: JobStore) -> None:
    """The grant that lets the phantom sender's studies be read (as the demo's)."""
    from preread.audit import AuditLog
    from preread.grants import GrantStore

    GrantStore(store.engine, audit=AuditLog(store.engine)).create(
        phantom_grant("bench/worker_scaling.py")
    )


def wait_stable(server: OrthancServer, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with server.client() as client:
        while True:
            stable = sum(1 for s in client.studies() if s.is_stable)
            if stable >= n:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"only {stable} of {n} studies stable after {timeout_s:.0f} s")
            time.sleep(0.2)


class Processes:
    """The round's ``preread worker`` / ``watch`` processes, logs in the work folder."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.exe = str(Path(sys.executable).parent / "preread")

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [self.exe, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise BenchError(f"{name} exited (status {proc.returncode}):\n{tail}")

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def wait_workers(broker: str, n: int, procs: Processes, timeout_s: float) -> None:
    """Until ``n`` Celery workers answer a ping (their models are loaded before they consume)."""
    from preread.scale import make_celery
    from preread.settings import Settings

    app = make_celery(Settings(), broker)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            procs.check()
            replies = app.control.ping(timeout=1.0) or []
            if len(replies) >= n:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{len(replies)} of {n} workers answered within {timeout_s:.0f} s")
    finally:
        app.close()


def run_round(args: argparse.Namespace, studies: list[Study], workers: int, work: Path) -> Round:
    from dicom_gateway.orthanc_server import DicomPeer, OrthancConfig, OrthancServer
    from preread.store import JobState, JobStore

    final = {JobState.DONE, JobState.FAILED, JobState.NOT_APPLICABLE, JobState.NOT_AUTHORIZED}
    folder = work / f"round-{workers}"
    folder.mkdir()
    server = OrthancServer(
        OrthancConfig(
            storage_dir=folder / "orthanc",
            stable_age_s=1,
            dicom_modalities=(DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),),
        )
    )
    server.start()
    procs: Processes | None = None
    try:
        with database(args.pg, f"preread_bench_workers_{os.getpid()}_{workers}") as db_url:
            flush_redis(args.redis)
            with JobStore.create(db_url) as store:
                store.migrate()
                authorize(store)
                send_s = sum(send(s.ct_dir, server.aet, server.dicom_port) for s in studies)
                print(f"  sent {len(studies)} studies in {send_s:.1f} s", flush=True)
                wait_stable(server, len(studies), 120)
                env = {
                    **os.environ,
                    "PREREAD_ORTHANC_URL": server.url,
                    "PREREAD_ORTHANC_USERNAME": server.username,
                    "PREREAD_ORTHANC_PASSWORD": server.password,
                    "PREREAD_DATABASE_URL": db_url,
                    "PREREAD_BROKER_URL": args.redis,
                    "PREREAD_QUEUE": args.queue,
                    "PREREAD_INTRA_OP_THREADS": "1",
                    "PREREAD_DATA_DIR": str(folder / "data"),
                    "PREREAD_MODELS_DIR": str(args.models_dir),
                }
                procs = Processes(env, folder)
                for i in range(workers):
                    procs.start(f"worker-{i + 1}", "worker")
                wait_workers(args.redis, workers, procs, 180)
                print(f"  {workers} worker(s) ready; starting the watcher", flush=True)
                load_before = os.getloadavg()[0]
                busy0, total0 = cpu_ticks()
                ours0 = sum(process_cpu_s(p.pid) for _, p in procs.procs)
                procs.start("watch", "watch")
                deadline = time.monotonic() + args.timeout
                jobs: list[JobRecord] = []
                while True:
                    procs.check()
                    jobs = [j for s in studies for j in store.current_for_study(s.study_uid)[:1]]
                    if len(jobs) == len(studies) and all(j.state in final for j in jobs):
                        break
                    if time.monotonic() > deadline:
                        seen = [j.state.value for j in jobs]
                        raise BenchError(f"jobs not final after {args.timeout:.0f} s: {seen}")
                    time.sleep(0.5)
                busy1, total1 = cpu_ticks()
                ours1 = sum(process_cpu_s(p.pid) for _, p in procs.procs)
                load_after = os.getloadavg()[0]
    finally:
        if procs is not None:
            procs.stop()
        server.stop()
    created = min(j.created_at for j in jobs)
    finished = max(j.finished_at or j.updated_at for j in jobs)
    wall = (finished - created).total_seconds()
    job_s = [
        (j.finished_at - j.started_at).total_seconds()
        for j in jobs
        if j.finished_at and j.started_at
    ]
    states: dict[str, int] = {}
    for j in jobs:
        states[j.state.value] = states.get(j.state.value, 0) + 1
    elapsed_ticks = (total1 - total0) or 1
    ncpu = os.cpu_count() or 1
    span = max(wall, 1e-6)
    return Round(
        workers=workers,
        n_jobs=len(jobs),
        states=states,
        wall_s=wall,
        job_s_median=statistics.median(job_s) if job_s else float("nan"),
        send_s=send_s,
        load_before=load_before,
        load_after=load_after,
        busy_cores=(busy1 - busy0) / elapsed_ticks * ncpu,
        ours_cores=(ours1 - ours0) / span,
    )


def report(args: argparse.Namespace, studies: list[Study], rounds: list[Round]) -> int:
    slices = [s.slices for s in studies]
    print()
    print("PreRead scale-out: the same studies read by 1 and by 2 Celery workers")
    print(
        f"studies: {len(studies)} phantoms, seeds {studies[0].seed}..{studies[-1].seed}, "
        f"{args.matrix}x{args.matrix}, {min(slices)}-{max(slices)} slices "
        f"(total {sum(slices)} instances, {sum(s.n_bytes for s in studies) / 1e6:.0f} MB)"
    )
    print(
        f"machine: {os.cpu_count()} CPU core(s); workers: pool solo, PREREAD_INTRA_OP_THREADS=1; "
        f"broker {args.redis} queue {args.queue}; store PostgreSQL {args.pg}"
    )
    print()
    header = (
        f"{'workers':>7}{'jobs':>6}{'dispatch->done s':>18}{'studies/h':>11}"
        f"{'median job s':>14}{'load 1m':>12}{'busy cores':>12}{'ours':>7}"
    )
    print(header)
    for r in rounds:
        print(
            f"{r.workers:>7}{r.n_jobs:>6}{r.wall_s:>18.1f}{r.per_hour:>11.0f}"
            f"{r.job_s_median:>14.1f}{r.load_before:>6.2f}->{r.load_after:<4.2f}"
            f"{r.busy_cores:>12.2f}{r.ours_cores:>7.2f}"
        )
    for r in rounds:
        if set(r.states) != {"done"}:
            print(f"  {r.workers} worker(s): job states {r.states}")
    print(
        "  (busy cores: the whole machine's during the round; ours: the workers' and the "
        "watcher's CPU; the difference is Orthanc, PostgreSQL, Redis and other users)"
    )
    one = next(r for r in rounds if r.workers == 1)
    two = next(r for r in rounds if r.workers == 2)
    ratio = two.per_hour / one.per_hour
    print()
    print(
        f"scaling 2 workers / 1 worker: {ratio:.2f}x  (goal >= {GOAL_SCALING}: "
        f"{'met' if ratio >= GOAL_SCALING else 'NOT met'})"
    )
    return 0 if all(set(r.states) == {"done"} for r in rounds) else 1


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="preread-bench-workers-"))
    try:
        print(f"work folder: {work}{' (kept)' if args.keep else ''}")
        print(f"phantoms: {args.count} from seed {args.seed}", flush=True)
        studies = make_studies(
            work / "studies", args.count, args.seed, args.matrix, args.max_slices
        )
        rounds = []
        for workers in (1, 2):
            print(f"round: {workers} worker(s)", flush=True)
            r = run_round(args, studies, workers, work)
            print(f"  {r.n_jobs} jobs in {r.wall_s:.1f} s ({r.per_hour:.0f} studies/h)", flush=True)
            rounds.append(r)
        return report(args, studies, rounds)
    finally:
        remove_work(work, keep=args.keep)


def main() -> int:
    ap = argparse.ArgumentParser(description="Scale-out: 12 studies with 1 and with 2 workers")
    ap.add_argument("--count", type=int, default=12, help="phantom studies")
    ap.add_argument("--seed", type=int, default=990_000, help="first seed (the demo's)")
    ap.add_argument("--matrix", type=int, default=512, help="rows = columns")
    ap.add_argument("--max-slices", type=int, default=None, help="cap the slice count")
    ap.add_argument("--quick", action="store_true", help="3 studies, 256x256, <= 80 slices")
    ap.add_argument("--pg", default="127.0.0.1:5432", help="PostgreSQL host:port (trust auth)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/7", help="broker (flushed)")
    ap.add_argument("--queue", default="preread.bench.workers", help="PREREAD_QUEUE (own queue)")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per round (s)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    if args.quick:
        args.count, args.matrix, args.max_slices = 3, 256, 80
    return run_bench(
        run,
        args,
        tools=("storescu", "Orthanc"),
        cleaned="processes, databases and folders cleaned up",
    )


if __name__ == "__main__":
    sys.exit(main())
