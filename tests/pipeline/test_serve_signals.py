"""``preread serve`` as a real process (its own private Orthanc, SQLite, the shipped model): how it
stops and how it comes back.

* SIGTERM (what systemd, Docker and Kubernetes send) while a study is read: the job finishes
  within the grace period, the API and the private Orthanc stop (its process gone, its ports
  closed, its temporary folder with the 0600 configuration removed), exit 0.
* ``kill -9`` mid-job, then a restart: the study is read within 60 s of the restart (the lease,
  short here, is renewed while a job runs, so a long job is never taken from a live ``serve``:
  one attempt), the killed ``serve``'s Orthanc did not outlive it, and the folder it left
  (in ``<data>/run``) is removed by the restart.
* SIGTERM with no grace (``PREREAD_SHUTDOWN_GRACE_S=0``) mid-job: the job's lease is released at
  once and ``serve`` exits 0 without waiting for the model.

The studies are small phantoms (64 × 64, 60 slices) that ``lung-nodule@1.0.0`` reads in a few
seconds on one core: longer than the test's 1 s lease.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from dicom_gateway.orthanc_server import ORTHANC_BINARY, free_port
from preread.audit import AuditLog
from preread.grants import GrantStore
from preread.settings import Settings
from preread.store import JobRecord, JobState, JobStore, default_url
from preread.store.states import IN_PROGRESS
from tests.grant_support import clinical_preread
from tests.orthanc_support import HOSPITAL_AET
from tests.pipeline.conftest import MODELS_DIR
from training.phantom_dicom import StudyFiles, write_phantom_study
from training.phantoms import generate_phantom

LEASE_S = 1.0  # renewed every third of it while a job runs
GOAL_S = 60.0  # issue 12: a study interrupted by a crash is read within 60 s of the restart


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> list[StudyFiles]:
    """Two small studies, and a longer one (200 slices) that is still being read well after
    ``serve`` was told to stop."""
    out = tmp_path_factory.mktemp("serve-studies")
    return [
        write_phantom_study(
            generate_phantom(seed, matrix=matrix, max_slices=slices),
            out,
            patient_id=f"SIGNALS-{seed}",
        )
        for seed, matrix, slices in ((21, 64, 60), (22, 64, 60), (57, 32, 200))
    ]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what()}")
        time.sleep(0.05)


@dataclass
class Orthanc:
    """The private Orthanc of one ``serve``, seen from outside: its process and folder."""

    pid: int
    work_dir: Path
    http_port: int
    dicom_port: int

    def alive(self) -> bool:
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"  # a zombie is gone, its parent not having reaped it yet

    def ports_closed(self) -> bool:
        return not any(_listening(port) for port in (self.http_port, self.dicom_port))


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Serve:
    """``preread serve`` in a subprocess with a data folder of its own (SQLite, Orthanc
    storage, secrets), started and restarted on the same folder."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.log = tmp / "serve.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.store = self._authorized_store()

    def _authorized_store(self) -> JobStore:
        """The store ``serve`` will open, with the HOSPITAL sender's clinical-preread grant."""
        self.data.mkdir(parents=True)
        store = JobStore.create(default_url(self.data))
        store.migrate()
        GrantStore(store.engine, audit=AuditLog(store.engine)).create(
            clinical_preread("tests/pipeline", sender_aets=(HOSPITAL_AET,))
        )
        return store

    def start(self, **settings: str) -> Orthanc:
        """Start ``serve``; return its Orthanc once the API answers."""
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREREAD_")}
        env.update(
            PYTHONUNBUFFERED="1",
            PREREAD_DATA_DIR=str(self.data),
            PREREAD_MODELS_DIR=str(MODELS_DIR),
            PREREAD_MODELS='["lung-nodule@1.0.0"]',  # the faster model: reads of seconds
            PREREAD_INTRA_OP_THREADS="1",
            PREREAD_STABLE_AGE_S="1",
            PREREAD_POLL_INTERVAL_S="0.2",
            PREREAD_LEASE_S=str(LEASE_S),
            PREREAD_ORTHANC_HTTP_PORT=str(free_port()),
            PREREAD_ORTHANC_DICOM_PORT=str(free_port()),
            **{f"PREREAD_{k.upper()}": v for k, v in settings.items()},
        )
        with self.log.open("ab") as out:
            out.write(b"\n===== start\n")
            out.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "preread.cli", "serve", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for(self._answers, 120, lambda: f"serve did not start\n{self.tail()}")
        return self.orthanc(
            int(env["PREREAD_ORTHANC_HTTP_PORT"]), int(env["PREREAD_ORTHANC_DICOM_PORT"])
        )

    def _answers(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise AssertionError(f"serve exited with {self.popen.returncode}\n{self.tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def orthanc(self, http_port: int, dicom_port: int) -> Orthanc:
        """The one child process of ``serve`` that runs Orthanc, and its configuration's folder."""
        assert self.popen is not None
        children = []
        for task in Path(f"/proc/{self.popen.pid}/task").iterdir():
            children += (task / "children").read_text().split()
        for pid in children:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[0].decode() == str(ORTHANC_BINARY):
                work_dir = Path(argv[1].decode()).parent
                assert (work_dir / "orthanc.json").is_file(), work_dir
                return Orthanc(int(pid), work_dir, http_port, dicom_port)
        raise AssertionError(f"serve (pid {self.popen.pid}) runs no Orthanc: {children}")

    def send(self, orthanc: Orthanc, study: StudyFiles) -> None:
        """C-STORE the study's CT series as the HOSPITAL modality."""
        result = subprocess.run(
            ["storescu", "-aec", "PREREAD", "-aet", HOSPITAL_AET, "+sd", "127.0.0.1",
             str(orthanc.dicom_port), str(study.ct_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def job(self, study: StudyFiles) -> JobRecord | None:
        jobs = self.store.current_for_study(study.study_instance_uid)
        return jobs[0] if jobs else None

    def wait_for_state(
        self, study: StudyFiles, states: set[JobState], timeout_s: float = 120
    ) -> JobRecord:
        def reached() -> bool:
            job = self.job(study)
            return job is not None and job.state in states

        wait_for(reached, timeout_s, lambda: f"{self.job(study)}\n{self.tail()}")
        job = self.job(study)
        assert job is not None
        return job

    def signal(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        assert self.popen is not None
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"serve still running {timeout_s} s later\n{self.tail()}"
            ) from None

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()[-40:]
        return "--- serve log ---\n" + "\n".join(lines)

    def close(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self.store.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    if not ORTHANC_BINARY.is_file():
        pytest.fail("Orthanc is not installed (Debian: orthanc orthanc-dicomweb)")
    s = Serve(tmp_path)
    try:
        yield s
    finally:
        s.close()


def assert_gone(orthanc: Orthanc, serve: Serve) -> None:
    wait_for(lambda: not orthanc.alive(), 15, lambda: f"Orthanc {orthanc.pid} runs\n{serve.tail()}")
    wait_for(orthanc.ports_closed, 5, lambda: "Orthanc's ports still listen")


def test_the_default_lease_frees_a_crashed_job_well_within_the_goal() -> None:
    """By default a killed worker's job is queued again at most a lease and a poll after the
    crash: at most half the goal, the rest for the restart and the read (the lease is renewed
    every third of it while a job runs, so it need not outlast any study)."""
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert defaults["lease_s"] <= GOAL_S / 2 and defaults["poll_interval_s"] <= 1.0


def test_sigterm_finishes_the_running_job_and_stops_the_private_orthanc(
    serve: Serve, studies: list[StudyFiles]
) -> None:
    orthanc = serve.start(shutdown_grace_s="120")
    serve.send(orthanc, studies[0])
    serve.wait_for_state(studies[0], set(IN_PROGRESS))
    serve.signal(signal.SIGTERM)
    assert serve.wait(150) == 0, serve.tail()
    job = serve.job(studies[0])
    assert job is not None and job.state is JobState.DONE, (job, serve.tail())
    assert job.started_at is not None and job.finished_at is not None
    took = (job.finished_at - job.started_at).total_seconds()
    assert took > 2 * LEASE_S, f"a read of {took:.1f} s cannot show that the lease is renewed"
    assert job.attempts == 1, "a job longer than its lease was taken from a live serve"
    assert not orthanc.alive() and orthanc.ports_closed()
    assert not orthanc.work_dir.exists(), "the Orthanc configuration folder was left behind"


def test_killed_mid_job_the_study_is_read_soon_after_the_restart(
    serve: Serve, studies: list[StudyFiles]
) -> None:
    orthanc = serve.start()
    serve.send(orthanc, studies[1])
    serve.wait_for_state(studies[1], {JobState.INFERRING})
    serve.signal(signal.SIGKILL)
    serve.wait(10)
    assert_gone(orthanc, serve)  # the kernel told the orphaned Orthanc to stop
    left = orthanc.work_dir  # SIGKILL cleans nothing up: the next start does
    assert left.parent == serve.data / "run" and left.is_dir()

    restarted = time.monotonic()
    orthanc = serve.start(shutdown_grace_s="0")
    assert not left.exists()
    job = serve.wait_for_state(studies[1], {JobState.DONE}, timeout_s=GOAL_S)
    assert time.monotonic() - restarted < GOAL_S
    assert job.attempts == 2, job

    # SIGTERM with no grace while a job runs: its lease is released at once, exit 0
    serve.send(orthanc, studies[2])
    serve.wait_for_state(studies[2], {JobState.INFERRING})
    serve.signal(signal.SIGTERM)
    assert serve.wait(30) == 0, serve.tail()
    held = serve.job(studies[2])
    assert held is not None, "the job was lost"
    if held.state is JobState.QUEUED:
        # the stopping service's own sweep (its loop's last tick) already requeued the
        # released job: as good, the next start reads it at once
        assert held.reason_code == "lease_expired", held
    else:
        assert held.state in IN_PROGRESS, held
        assert held.lease_expires_at is not None and held.lease_expires_at <= datetime.now(UTC)
        swept = serve.store.requeue_expired()
        assert [j.id for j in swept.requeued] == [held.id]  # the next start reads it at once
    assert_gone(orthanc, serve)
    assert not orthanc.work_dir.exists()
