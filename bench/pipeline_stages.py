"""Benchmark the pre-read pipeline stage by stage: StableStudy → SR stored in Orthanc.

For one 512×512×300 phantom (the first seed from ``--seed-start`` whose series has exactly
``--slices`` slices), sent by ``storescu`` to a private Orthanc as a modality would:

* the seconds of each stage as the job records them (``fetch``, ``decode``, ``volume``,
  ``preprocess``, ``infer``, ``postprocess``, ``encode``, ``store``), their sum, and the time
  from the ``StableStudy`` change (seen by this process polling Orthanc's change log) to the job
  finished with its SR and SEG stored; what is in no stage (the watcher's poll, series
  selection, job-store writes) is shown as the difference;
* the peak memory of the PreRead process, which runs the embedded :class:`~preread.service.
  Service` (watcher + in-process runner + job store + the shipped model) alone in a child
  process of its own, so that its ``ru_maxrss`` / ``VmHWM`` is the pipeline's and not this
  script's (the phantom generation) nor Orthanc's (a separate process);
* the issue's goals side by side with the figures: fetch + decode ≤ 10 % of the total, the
  stages outside the model ≤ the model stage (``infer``), peak RSS ≤ 2.5 GB (10⁹ bytes).

One run's figures swing by ±20 % on a shared 2-core machine. ``--runs N`` repeats the whole
measurement N times on the same phantom (a fresh Orthanc and a fresh PreRead process each time,
so that every run is a first study after start, as one run is) and ends with the median and the
range of every figure, the goals judged on the medians. ``--studies N`` sends N copies of the
phantom (other UIDs) one after another to the same PreRead process: the first is a first study
after start, the later ones what a running service does study after study (the process's heap
and caches already grown); both are summarised apart.

Run: ``.venv/bin/python bench/pipeline_stages.py`` (``--help`` for the options; a quick dry run:
``--matrix 128 --slices 60``). Prints a table; asserts nothing. Needs Orthanc with its DICOMweb
plugin and DCMTK's ``storescu`` (``./run setup``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicom_gateway.client import OrthancClient
    from preread.store import JobRecord

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
STAGES = ("fetch", "decode", "volume", "preprocess", "infer", "postprocess", "encode", "store")
GB = 1e9
GOAL_FETCH_DECODE_SHARE = 0.10
GOAL_OUTSIDE_OVER_INFER = 1.0
GOAL_PEAK_RSS_GB = 2.5


# -- the PreRead process (child) ---------------------------------------------------------------


def _status_kb(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB; 0 if unavailable."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class RssSampler:
    """Samples the process's resident set (``VmRSS``) in a thread; keeps the maximum."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))


def child_main() -> int:
    """Run the embedded service against the given Orthanc until the study's job is final.

    Reads its configuration as one JSON line on stdin; writes events on stdout (``ready``
    once the model is loaded and the watcher runs, then ``done`` or ``error``); logs go to
    stderr.
    """
    import logging

    from preread.service import Service
    from preread.store.states import FINISHED

    cfg = read_child_config(
        logging.INFO,
        "%(asctime)s %(levelname)s %(name)s: %(message)s",  # as preread serve
    )
    parent = os.getppid()
    sampler = RssSampler()
    sampler.start()
    loop_errors: list[str] = []
    settings = child_settings(
        cfg, poll_interval_s=cfg["poll_interval_s"], reconcile_interval_s=3600.0
    )
    try:
        with Service(settings) as service:
            grant_phantoms(service, "bench/pipeline_stages.py")  # its own phantoms may be read
            service.start_loop(
                on_error=lambda exc: loop_errors.append(f"{type(exc).__name__}: {exc}")
            )
            model = service.models[0]
            emit(
                "ready",
                rss_kb=_status_kb("VmRSS"),
                model_id=model.id,
                model_version=model.version,
                model_sha256=model.sha256,
            )
            for study_uid in cfg["study_uids"]:  # sent one after another by the driver
                deadline = time.monotonic() + float(cfg["job_timeout_s"])
                while True:
                    jobs = service.store.current_for_study(study_uid)
                    if jobs and jobs[0].state in FINISHED:
                        seen = time.time()
                        job = jobs[0]
                        break
                    if os.getppid() != parent:
                        emit("error", message="the benchmark driver went away")
                        return 1
                    if time.monotonic() > deadline:
                        state = jobs[0].state.value if jobs else "no job yet"
                        emit(
                            "error",
                            message=f"the job did not finish within "
                            f"{cfg['job_timeout_s']:.0f} s (state: {state}; watcher errors: "
                            f"{loop_errors[-3:] or 'none'})",
                        )
                        return 1
                    time.sleep(0.05)
                _emit_done(job, seen, sampler, loop_errors)
            sampler.stop()
    except Exception as exc:
        emit("error", message=f"the PreRead service failed: {type(exc).__name__}: {exc}")
        raise
    return 0


def _emit_done(job: JobRecord, seen: float, sampler: RssSampler, loop_errors: list[str]) -> None:
    """A finished job's figures for the driver; the memory figures are the process's peak so
    far (this study's and every earlier one's)."""
    result = job.result or {}
    findings = result.get("findings")
    emit(
        "done",
        seen_done=seen,
        job_id=job.id,
        state=job.state.value,
        reason=job.reason,
        timings=dict(job.timings),
        provider_requested=job.provider_requested,
        provider_used=job.provider_used,
        provider_warning=job.provider_warning,
        created_at=job.created_at.isoformat(),
        started_at=job.started_at.isoformat() if job.started_at else None,
        finished_at=job.finished_at.isoformat() if job.finished_at else None,
        n_findings=len(findings) if isinstance(findings, list) else None,
        sr_series_id=job.outputs.sr.orthanc_series_id if job.outputs.sr else None,
        seg_series_id=job.outputs.seg.orthanc_series_id if job.outputs.seg else None,
        ru_maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        vm_hwm_kb=_status_kb("VmHWM"),
        sampled_peak_kb=max(sampler.peak_kb, _status_kb("VmRSS")),
        watcher_errors=loop_errors,
    )


# -- the driver (parent) -----------------------------------------------------------------------


@dataclass(frozen=True)
class PhantomStudy:
    seed: int
    tried: int
    shape: tuple[int, int, int]
    n_nodules: int
    study_uid: str
    patient_id: str
    ct_dir: Path
    n_files: int
    n_bytes: int


def make_phantom(
    seed_start: int, matrix: int, slices: int, max_tries: int, out: Path, copies: int = 1
) -> list[PhantomStudy]:
    """The first phantom from ``seed_start`` with exactly ``slices`` slices, written as DICOM
    ``copies`` times: the first as patient ``BENCH-<seed>``, the others as ``BENCH-<seed>-<n>``,
    so every copy has UIDs of its own (a study PreRead has not read)."""
    from training.phantom_dicom import write_phantom_study
    from training.phantoms import generate_phantom

    for tried, seed in enumerate(range(seed_start, seed_start + max_tries), start=1):
        t0 = time.perf_counter()
        phantom = generate_phantom(seed, matrix=matrix, max_slices=slices)
        n = int(phantom.volume.array.shape[0])
        print(f"  seed {seed}: {n} slices ({time.perf_counter() - t0:.1f} s)", flush=True)
        if n != slices:
            continue
        shape = tuple(int(v) for v in phantom.volume.array.shape)
        studies = []
        for copy in range(1, copies + 1):
            patient_id = f"BENCH-{seed}" + (f"-{copy}" if copy > 1 else "")
            files = write_phantom_study(phantom, out, patient_id=patient_id)
            ct = sorted(files.ct_dir.iterdir())
            studies.append(
                PhantomStudy(
                    seed=seed,
                    tried=tried,
                    shape=(shape[0], shape[1], shape[2]),
                    n_nodules=len(phantom.nodules),
                    study_uid=files.study_instance_uid,
                    patient_id=patient_id,
                    ct_dir=files.ct_dir,
                    n_files=len(ct),
                    n_bytes=sum(p.stat().st_size for p in ct),
                )
            )
        return studies
    raise BenchError(
        f"no phantom with exactly {slices} slices among seeds {seed_start}.."
        f"{seed_start + max_tries - 1} (try another --seed-start or more --max-seeds)"
    )


@dataclass(frozen=True)
class Stable:
    seq: int
    orthanc_date: str
    seen: float  # time.time() when this process saw it


def wait_stable(client: OrthancClient, study_id: str, child: Child, timeout_s: float) -> Stable:
    """Poll Orthanc's change log until the study's ``StableStudy``; note when it was seen."""
    deadline = time.monotonic() + timeout_s
    since = 0
    while True:
        page = client.changes(since=since, limit=1000)
        for change in page.changes:
            if change.is_stable_study and change.orthanc_id == study_id:
                return Stable(change.seq, change.date, time.time())
        since = page.last
        if time.monotonic() > deadline:
            raise BenchError(f"no StableStudy for study {study_id} within {timeout_s:.0f} s")
        child.check_alive("waiting for StableStudy")
        if page.done:
            time.sleep(0.02)


def _orthanc_date(text: str) -> datetime | None:
    """Orthanc's change ``Date`` (``YYYYMMDDTHHMMSS``, UTC, whole seconds)."""
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _evaluated_scans(models_dir: Path, model_id: str, version: str) -> str:
    try:
        data = json.loads((models_dir / model_id / version / "evaluation.json").read_text())
        return str(data.get("n_scans", "?"))
    except (OSError, ValueError):
        return "?"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


@dataclass(frozen=True)
class Figures:
    """What one run measured, as the report and the summary of several runs show it."""

    timings: dict[str, float]  # seconds per stage, as the job recorded them
    total: float  # StableStudy seen -> job finished_at
    peak_gb: float  # the PreRead process's peak resident memory

    @classmethod
    def of(cls, stable: Stable, done: dict[str, Any]) -> Figures:
        finished = datetime.fromisoformat(done["finished_at"]) if done["finished_at"] else None
        total = (finished.timestamp() if finished else float(done["seen_done"])) - stable.seen
        peak_kb = max(
            int(done["ru_maxrss_kb"]), int(done["vm_hwm_kb"]), int(done["sampled_peak_kb"])
        )
        timings = {k: float(v) for k, v in done["timings"].items()}
        return cls(timings=timings, total=total, peak_gb=peak_kb * 1024 / GB)

    @property
    def stage_sum(self) -> float:
        return sum(self.timings.get(s, 0.0) for s in STAGES)

    @property
    def infer(self) -> float:
        return self.timings.get("infer", 0.0)

    @property
    def outside(self) -> float:
        """The stages outside the model, their sum."""
        return self.stage_sum - self.infer

    @property
    def fetch_decode_share(self) -> float:
        return (self.timings.get("fetch", 0.0) + self.timings.get("decode", 0.0)) / self.total

    @property
    def outside_over_infer(self) -> float:
        return self.outside / self.infer if self.infer else float("inf")


def report(
    args: argparse.Namespace,
    study: PhantomStudy,
    send_s: float,
    ready: dict[str, Any],
    stable: Stable,
    done: dict[str, Any],
    sr_in_orthanc: str,
) -> int:
    """Print the figures and the goals side by side; 0 when the job was done."""
    figures = Figures.of(stable, done)
    timings, total, peak_gb = figures.timings, figures.total, figures.peak_gb
    finished = datetime.fromisoformat(done["finished_at"]) if done["finished_at"] else None
    created = datetime.fromisoformat(done["created_at"])
    seen_total = float(done["seen_done"]) - stable.seen
    stage_sum, infer, outside = figures.stage_sum, figures.infer, figures.outside
    fetch_decode = timings.get("fetch", 0.0) + timings.get("decode", 0.0)
    orthanc_stable = _orthanc_date(stable.orthanc_date)

    z, y, x = study.shape
    print()
    print("PreRead pipeline, stage by stage: StableStudy -> SR stored in Orthanc")
    print(
        f"phantom: seed {study.seed} ({study.tried} seed(s) tried from {args.seed_start}), "
        f"{z} slices of {y}x{x}, {study.n_nodules} true nodule(s); "
        f"{study.n_files} CT files, {study.n_bytes / 1e6:.0f} MB"
    )
    print(
        f"model: {ready['model_id']} {ready['model_version']} (onnx sha256 "
        f"{ready['model_sha256'][:12]}..., evaluation.json n_scans "
        f"{_evaluated_scans(args.models_dir, ready['model_id'], ready['model_version'])})"
    )
    print(
        f"provider: requested {done['provider_requested']}, used {done['provider_used']}"
        + (f" (warning: {done['provider_warning']})" if done["provider_warning"] else "")
    )
    print(
        f"machine: {os.cpu_count()} CPU core(s); Orthanc StableAge {args.stable_age} s, "
        f"watcher poll {args.poll_interval} s"
    )
    print(
        f"sent: {study.n_files} instances by storescu in {send_s:.2f} s "
        f"({study.n_files / send_s:.0f} instances/s)"
    )
    print(
        f"job {done['job_id']}: {done['state']}"
        + (f" ({done['reason']})" if done["reason"] else "")
        + f"; findings: {done['n_findings']}; SR in Orthanc: {sr_in_orthanc}"
    )
    print()
    print(f"{'stage':<44}{'seconds':>9}{'% of total':>12}")
    for s in STAGES:
        v = timings.get(s)
        shown = f"{v:>9.2f}{100 * v / total:>11.1f}%" if v is not None else f"{'-':>9}{'':>12}"
        print(f"{s:<44}{shown}")
    print(f"{'sum of the stages':<44}{stage_sum:>9.2f}{100 * stage_sum / total:>11.1f}%")
    rest = total - stage_sum
    print(f"{'in no stage (watcher, selection, DB)':<44}{rest:>9.2f}{100 * rest / total:>11.1f}%")
    print(f"{'total: StableStudy seen -> job finished_at':<44}{total:>9.2f}{100.0:>11.1f}%")
    print()
    print(f"StableStudy seen -> job final, seen by the PreRead process: {seen_total:.2f} s")
    if finished:
        print(f"job created_at -> finished_at: {(finished - created).total_seconds():.2f} s")
        if orthanc_stable:
            print(
                f"Orthanc's StableStudy date -> finished_at: "
                f"{(finished - orthanc_stable).total_seconds():.0f} s (whole seconds)"
            )
    print(f"StableStudy: change {stable.seq}, Orthanc date {stable.orthanc_date}")
    print()
    print("peak memory of the PreRead process (service + model + job; Orthanc not included):")
    print(
        f"  ru_maxrss {int(done['ru_maxrss_kb']) * 1024 / GB:.2f} GB, "
        f"VmHWM {int(done['vm_hwm_kb']) * 1024 / GB:.2f} GB, "
        f"sampled VmRSS max {int(done['sampled_peak_kb']) * 1024 / GB:.2f} GB; "
        f"after model load, before the study: {int(ready['rss_kb']) * 1024 / GB:.2f} GB"
    )
    print()
    share_sum = fetch_decode / stage_sum if stage_sum else float("nan")
    ratio_all = (total - infer) / infer if infer else float("inf")
    _goals(
        figures.fetch_decode_share,
        figures.outside_over_infer,
        peak_gb,
        share_details=(f"{'  (of the sum of the stages)':<44}{100 * share_sum:>17.1f}%",),
        ratio_details=(
            f"  (outside the model: {outside:.2f} s; infer: {infer:.2f} s)",
            f"{'  (total - infer) / infer, incl. no stage':<44}{ratio_all:>17.2f}x",
        ),
    )
    if done["watcher_errors"]:
        print(f"watcher errors during the run: {done['watcher_errors']}")
    return 0 if done["state"] == "done" else 1


def _goals(
    share: float,
    ratio: float,
    peak_gb: float,
    *,
    share_details: tuple[str, ...] = (),
    ratio_details: tuple[str, ...] = (),
) -> None:
    """The goals table; ``*_details``: lines printed under that goal's row."""
    print(f"{'goal':<44}{'figure':>18}{'target':>10}  result")
    print(
        f"{'(fetch + decode) / total':<44}{100 * share:>17.1f}%{'<= 10 %':>10}  "
        f"{_met(share <= GOAL_FETCH_DECODE_SHARE)}"
    )
    for line in share_details:
        print(line)
    print(
        f"{'stages outside the model / infer':<44}{ratio:>17.2f}x{'<= 1':>10}  "
        f"{_met(ratio <= GOAL_OUTSIDE_OVER_INFER)}"
    )
    for line in ratio_details:
        print(line)
    print(
        f"{'peak RSS of the PreRead process':<44}{peak_gb:>15.2f} GB{'<= 2.5 GB':>10}  "
        f"{_met(peak_gb <= GOAL_PEAK_RSS_GB)}"
    )


def summary(runs: list[Figures], title: str) -> None:
    """The median and the range of every figure over ``runs``; the goals on the medians."""

    def row(name: str, values: list[float], unit: str = "", scale: float = 1.0) -> None:
        v = [x * scale for x in values]
        spread = f"{min(v):.2f}-{max(v):.2f}{unit}"
        print(f"{name:<44}{statistics.median(v):>9.2f}{unit:<2}{spread:>18}")

    print()
    print(f"{title}: median and range over {len(runs)}")
    print(f"{'stage':<44}{'median':>9}{'':<2}{'range':>18}")
    for s in STAGES:
        row(s, [r.timings.get(s, 0.0) for r in runs])
    row("sum of the stages", [r.stage_sum for r in runs])
    row("in no stage (watcher, selection, DB)", [r.total - r.stage_sum for r in runs])
    row("total: StableStudy seen -> job finished_at", [r.total for r in runs])
    row("(fetch + decode) / total", [r.fetch_decode_share for r in runs], " %", 100.0)
    row("stages outside the model / infer", [r.outside_over_infer for r in runs], " x")
    row("peak RSS of the PreRead process", [r.peak_gb for r in runs], " GB")
    print()
    _goals(
        statistics.median(r.fetch_decode_share for r in runs),
        statistics.median(r.outside_over_infer for r in runs),
        statistics.median(r.peak_gb for r in runs),
    )


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="preread-bench-"))
    try:
        print(f"work folder: {work}{' (kept)' if args.keep else ''}")
        print(
            f"phantom: searching seeds from {args.seed_start} for exactly {args.slices} slices "
            f"at {args.matrix}x{args.matrix}",
            flush=True,
        )
        studies = make_phantom(
            args.seed_start, args.matrix, args.slices, args.max_seeds, work / "study", args.studies
        )
        first = studies[0]
        print(f"phantom: seed {first.seed}, shape {first.shape}, written to {first.ct_dir}")
        if len(studies) > 1:
            print(f"  and {len(studies) - 1} copies under other patient IDs (other UIDs)")
        measured: list[list[Figures]] = []  # per run, per study
        failed = 0
        for n in range(1, args.runs + 1):
            if args.runs > 1:
                print(f"\n-- run {n} of {args.runs} --", flush=True)
            codes, figures = run_once(args, studies, work / f"run-{n}")
            failed += sum(code != 0 for code in codes)
            measured.append(figures)
        if args.studies > 1:
            summary(
                [run[0] for run in measured],
                "the first study after start (a fresh Orthanc and PreRead process each run)",
            )
            summary(
                [f for run in measured for f in run[1:]],
                "the later studies, read by a process that has read one before",
            )
        elif args.runs > 1:
            summary(
                [run[0] for run in measured], "over the runs (a fresh Orthanc and PreRead each)"
            )
        return 1 if failed else 0
    finally:
        remove_work(work, keep=args.keep)


def run_once(
    args: argparse.Namespace, studies: list[PhantomStudy], work: Path
) -> tuple[list[int], list[Figures]]:
    """One measurement: a fresh Orthanc and PreRead process, the studies sent one after
    another, each one's job reported; per study, the exit code (0: the job was done) and the
    figures."""
    from dicom_gateway.orthanc_server import DicomPeer, OrthancConfig, OrthancServer
    from dicom_gateway.source import orthanc_id

    child: Child | None = None
    server: OrthancServer | None = None
    codes: list[int] = []
    figures: list[Figures] = []
    try:
        server = OrthancServer(
            OrthancConfig(
                storage_dir=work / "orthanc",
                stable_age_s=args.stable_age,
                dicom_modalities=(DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),),
            )
        )
        server.start()
        print(f"orthanc: {server.url}, DICOM port {server.dicom_port}, AET {server.aet}")
        child = Child(
            __file__,
            child_config(
                server,
                work / "preread",
                args.models_dir,
                poll_interval_s=args.poll_interval,
                study_uids=[study.study_uid for study in studies],
                job_timeout_s=args.timeout,
            ),
            work / "preread.log",
        )
        ready = child.event(args.ready_timeout, "ready (model loaded, watcher running)")
        print(
            f"preread: ready, pid {child.process.pid}, "
            f"RSS {int(ready['rss_kb']) * 1024 / GB:.2f} GB",
            flush=True,
        )
        for number, study in enumerate(studies, start=1):
            if len(studies) > 1:
                print(f"\n- study {number} of {len(studies)} ({study.patient_id})", flush=True)
            send_s = send(study.ct_dir, server.aet, server.dicom_port, timeout_s=args.send_timeout)
            print(f"sent: {study.n_files} instances in {send_s:.2f} s", flush=True)
            study_id = orthanc_id(study.patient_id, study.study_uid)
            with server.client() as client:
                stable = wait_stable(client, study_id, child, args.stable_age + args.stable_timeout)
                print(f"StableStudy seen (change {stable.seq}); waiting for the job", flush=True)
                done = child.event(args.timeout + 60, "finished job")
                sr_in_orthanc = "no"
                if done["sr_series_id"]:
                    sr = client.series(done["sr_series_id"])
                    sr_in_orthanc = f"yes ({sr.modality}, {sr.instance_count} instance)"
            codes.append(report(args, study, send_s, ready, stable, done, sr_in_orthanc))
            figures.append(Figures.of(stable, done))
        return codes, figures
    finally:
        if child is not None:
            child.stop()
        if server is not None:
            server.stop()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> int:
    ap = argparse.ArgumentParser(
        description="PreRead pipeline stages: StableStudy -> SR stored in Orthanc, peak memory"
    )
    ap.add_argument("--seed-start", type=int, default=424_242, help="first phantom seed tried")
    ap.add_argument("--max-seeds", type=int, default=40, help="seeds tried before giving up")
    ap.add_argument("--slices", type=int, default=300, help="exact slice count of the phantom")
    ap.add_argument("--matrix", type=int, default=512, help="rows = columns of the phantom")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--stable-age", type=int, default=1, help="Orthanc's StableAge (s)")
    ap.add_argument("--poll-interval", type=float, default=0.2, help="watcher poll (s)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="StableStudy -> job final (s)")
    ap.add_argument("--ready-timeout", type=float, default=300.0, help="service start (s)")
    ap.add_argument("--send-timeout", type=float, default=600.0, help="storescu (s)")
    ap.add_argument("--stable-timeout", type=float, default=60.0, help="beyond StableAge (s)")
    ap.add_argument(
        "--runs",
        type=_positive,
        default=1,
        help="measure N times (fresh Orthanc and PreRead each) and end with medians and ranges",
    )
    ap.add_argument(
        "--studies",
        type=_positive,
        default=1,
        help="send N copies of the phantom (other UIDs) one after another to the same PreRead "
        "process: the first study after start, then the steady state",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work folder (study, logs)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main()
    return run_bench(
        run, args, cleaned="Orthanc, the PreRead process and the folders were cleaned up"
    )


if __name__ == "__main__":
    sys.exit(main())
