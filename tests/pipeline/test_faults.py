"""Faults around one study's read, with real components: ``Service`` (the embedded default:
watcher, in-process runner, webhook deliverer), a private Orthanc (emptied after each test) fed
by ``storescu``, the shipped ``lung-nodule@1.0.0``, SQLite or a private PostgreSQL cluster.

* Orthanc answering 5xx to STOW-RS (a real proxy in front of it, :mod:`fault_proxy`): once
  after storing (the answer lost), once without; and again while the study grows, so that the
  next attempt reads other content under other UIDs.
* Orthanc's disk full: Orthanc started with ``SIGXFSZ`` ignored, then its file size limit
  (``RLIMIT_FSIZE``, set from outside with ``prlimit``) lowered below its index: it reads, but
  stores nothing (STOW-RS answers "0 of 2 stored"), as on a full disk; then raised again.
* PostgreSQL restarted mid-job (``pg_ctl stop -m fast`` while the job fetches, then ``start``).
* A sweeper's clock jumping two hours ahead mid-job (a leader's ``JobStore`` on that clock).

* PreRead's own disk full: a real ``preread serve`` whose file size limit drops below its
  SQLite database mid-job, then rises again.
Whatever happens, each study ends with one current SR and one SEG in Orthanc and one done job
(:func:`tests.scale.cluster.problems`), or in ``failed`` with the fault as its reason.

The studies are small phantoms (32 × 32, 50 slices, the scale tests' seeds: each gives
``lung-nodule@1.0.0`` a finding, so every read writes an SR and a SEG), read in a second or two.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path

import httpx
import pytest

from dicom_gateway.orthanc_server import (
    ORTHANC_BINARY,
    DicomPeer,
    OrthancConfig,
    OrthancServer,
    free_port,
)
from preread.audit import AuditLog
from preread.grants import GrantStore
from preread.service import Service
from preread.settings import Settings
from preread.store import JobRecord, JobState, JobStore, default_url
from tests.grant_support import clinical_preread
from tests.orthanc_support import HOSPITAL_AET, storescu
from tests.pipeline.conftest import MODELS_DIR
from tests.pipeline.fault_proxy import Action, fault_proxy, is_series_retrieve, is_stow
from tests.scale.cluster import ai_instances, problems
from tests.scale.conftest import FAULT_SEEDS
from tests.store.private_postgres import PrivatePostgres
from tests.webhooks.conftest import Receiver
from training.phantom_dicom import StudyFiles, write_phantom_study
from training.phantoms import generate_phantom

FINAL = {JobState.DONE, JobState.FAILED, JobState.NOT_APPLICABLE, JobState.NOT_AUTHORIZED}
TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[int, StudyFiles]:
    """Small phantom studies by seed (the first one has 60 slices: 50 are sent, then 10)."""
    out = tmp_path_factory.mktemp("fault-studies")
    return {
        seed: write_phantom_study(
            generate_phantom(seed, matrix=32, max_slices=60 if seed == FAULT_SEEDS[0] else 50),
            out,
            patient_id=f"PIPELINE-FAULT-{seed}",
        )
        for seed in FAULT_SEEDS[:5]
    }


def private_orthanc(tmp: Path, binary: Path = ORTHANC_BINARY) -> OrthancServer:
    return OrthancServer(
        OrthancConfig(
            storage_dir=tmp / "orthanc-storage",
            http_port=free_port(),
            dicom_port=free_port(),
            password=secrets.token_urlsafe(16),
            stable_age_s=1,
            dicom_modalities=(DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),),
        ),
        binary=binary,
    )


@pytest.fixture
def orthanc(orthanc: OrthancServer) -> Iterator[OrthancServer]:
    """The module's Orthanc (``tests/orthanc_support.py``), emptied after each test: the next
    test's service reads its own study only."""
    yield orthanc
    auth = httpx.BasicAuth(orthanc.username, orthanc.password)
    with httpx.Client(base_url=orthanc.url, auth=auth, timeout=30) as http:
        for study_id in http.get("/studies").json():
            http.delete(f"/studies/{study_id}").raise_for_status()


def settings_for(
    tmp: Path, orthanc: OrthancServer, url: str | None = None, **more: object
) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp / "data",
        "models_dir": MODELS_DIR,
        "models": ["lung-nodule@1.0.0"],
        "intra_op_threads": 1,
        "orthanc_url": url or orthanc.url,
        "orthanc_username": orthanc.username,
        "orthanc_password": orthanc.password,
        "poll_interval_s": 0.2,
        "reconcile_interval_s": 3600,
        "webhook_interval_s": 0.2,
        "webhook_allowed_networks": [ip_network("127.0.0.0/8")],
    }
    values.update(more)
    return Settings.model_validate(values)


def authorize(service: Service) -> None:
    service.grants.create(clinical_preread("tests/pipeline"))


def send(orthanc: OrthancServer, files: list[Path]) -> None:
    result = storescu(orthanc, files)
    assert result.returncode == 0, result.stderr


def wait_job(store: JobStore, uid: str, ok: Callable[[JobRecord], bool], what: str) -> JobRecord:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        jobs = store.current_for_study(uid)
        if jobs and ok(jobs[0]):
            return jobs[0]
        time.sleep(0.05)
    raise AssertionError(f"study {uid}: no job {what} within {TIMEOUT_S} s: {store.history(uid)}")


def wait_final(store: JobStore, uid: str) -> JobRecord:
    return wait_job(store, uid, lambda j: j.state in FINAL, "in a final state")


def assert_one_result(orthanc: OrthancServer, store: JobStore, uid: str) -> JobRecord:
    time.sleep(0.5)  # a late second result would show by then
    found = problems(orthanc, store, [uid])
    assert not found, "\n".join(found)
    return store.current_for_study(uid)[0]


def ct_files(study: StudyFiles) -> list[Path]:
    return sorted(study.ct_dir.iterdir())


# --- Orthanc answering 5xx to STOW-RS -------------------------------------------------------


def test_stow_answered_5xx_is_retried_and_the_results_are_stored_once(
    tmp_path: Path, orthanc: OrthancServer, studies: dict[int, StudyFiles]
) -> None:
    """The first STOW-RS reaches Orthanc but its answer is lost (502), the second is refused
    (503), the third passes: the job retries the STOW itself (no second read), Orthanc holds
    one SR and one SEG, and the job is done in one attempt."""
    study = studies[FAULT_SEEDS[1]]
    script: list[Action] = ["lose", "refuse"]

    def decide(method: str, path: str) -> Action:
        return script.pop(0) if is_stow(method, path) and script else "forward"

    with (
        fault_proxy(orthanc.url, decide) as (url, seen),
        Service(settings_for(tmp_path, orthanc, url)) as service,
    ):
        authorize(service)
        service.start_loop()
        send(orthanc, ct_files(study))
        job = wait_final(service.store, study.study_instance_uid)
        assert job.state is JobState.DONE, job.reason
        assert job.attempts == 1, job
        assert seen.actions(is_stow) == ["lose", "refuse", "forward"]
        assert len(seen.actions(is_series_retrieve)) == 1  # the study was read once
        assert_one_result(orthanc, service.store, study.study_instance_uid)


def test_a_study_that_grows_between_stow_attempts_keeps_one_result(
    tmp_path: Path, orthanc: OrthancServer, studies: dict[int, StudyFiles]
) -> None:
    """The first attempt's STOW-RS is held while 10 more slices arrive, then reaches Orthanc
    and its answer is lost; its retries are refused. The next attempt reads the grown study
    (other content, so other UIDs): it removes what the first attempt stored before storing its
    own, and Orthanc ends with one SR and one SEG, those of the 60 slices."""
    study = studies[FAULT_SEEDS[0]]
    files = ct_files(study)
    uid = study.study_instance_uid
    services: list[Service] = []
    reads = stows = 0

    def decide(method: str, path: str) -> Action:
        nonlocal reads, stows
        if is_series_retrieve(method, path):
            reads += 1
        if not is_stow(method, path) or reads > 1:
            return "forward"  # the next attempt stores
        stows += 1
        if stows == 1:  # the study grows while the first results are on their way
            send(orthanc, files[50:])
            wait_job(services[0].store, uid, lambda j: j.rerun_fingerprint is not None, "rerun")
            return "lose"
        return "refuse"  # the first attempt's own tries fail

    with (
        fault_proxy(orthanc.url, decide) as (url, seen),
        Service(settings_for(tmp_path, orthanc, url)) as service,
    ):
        services.append(service)
        authorize(service)
        service.start_loop()
        send(orthanc, files[:50])
        job = wait_final(service.store, uid)
        assert job.state is JobState.DONE, job.reason
        assert (job.attempts, job.fingerprint.instances) == (2, 60), job
        stowed = seen.actions(is_stow)
        assert (stowed[0], stowed[-1], stowed.count("forward")) == ("lose", "forward", 1), stowed
        assert_one_result(orthanc, service.store, uid)


# --- Orthanc's disk full ----------------------------------------------------------------------


def test_orthancs_disk_full_fails_the_job_with_the_reason_and_a_retry_reads_it(
    tmp_path: Path, studies: dict[int, StudyFiles]
) -> None:
    """Orthanc's disk fills up after the study arrived: it still answers reads but stores
    nothing. The job (one attempt allowed) ends ``failed`` with the reason and nothing in the
    study; once there is room again, an operator's retry reads it: one SR, one SEG."""
    study = studies[FAULT_SEEDS[2]]
    pid_file = tmp_path / "orthanc.pid"
    wrapper = tmp_path / "orthanc-with-a-disk-that-fills"
    wrapper.write_text(  # SIGXFSZ ignored: writes past the limit fail with EFBIG, as ENOSPC
        f"#!/bin/sh\ntrap '' XFSZ\necho $$ > {pid_file}\nexec {ORTHANC_BINARY} \"$@\"\n"
    )
    wrapper.chmod(0o755)
    with private_orthanc(tmp_path, wrapper) as orthanc:
        pid = int(pid_file.read_text())
        settings = settings_for(tmp_path, orthanc, job_max_attempts=1)
        with Service(settings) as service:
            authorize(service)
            service.start_loop()
            send(orthanc, ct_files(study))
            uid = study.study_instance_uid
            wait_job(service.store, uid, lambda j: True, "at all")
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
            failed = wait_final(service.store, uid)
            assert failed.state is JobState.FAILED, failed
            assert failed.reason_code == "results_not_stored", failed
            assert "Orthanc did not store the results" in (failed.reason or ""), failed.reason
            # SR, SEG, a key image per finding and the KOS (PREREAD_OUTPUTS' default)
            assert re.search(r"\b0 of \d+ instance\(s\) stored", failed.reason or ""), failed.reason
            held = ai_instances(orthanc)[uid].by_modality
            assert (held["SR"], held["SEG"]) == (0, 0), held
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)
            service.store.retry(failed.id)  # what `preread jobs retry` does
            service.dispatch(failed.id)
            done = wait_final(service.store, uid)
            assert done.state is JobState.DONE, done.reason
            assert_one_result(orthanc, service.store, uid)


# --- PostgreSQL restarted mid-job -------------------------------------------------------------


def test_postgresql_restarted_mid_job_loses_and_doubles_nothing(
    tmp_path: Path,
    orthanc: OrthancServer,
    studies: dict[int, StudyFiles],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A private PostgreSQL cluster is stopped (``-m fast``: every connection dropped) while
    the job fetches the pixels, and started again once the job has met it: the job is tried
    again as soon as the store answers (its lease, which could not be released while the
    database was away, is released first), ends done, one SR and one SEG, and the tenant's
    webhook gets the one message."""
    caplog.set_level(logging.WARNING, logger="preread.jobs")
    study = studies[FAULT_SEEDS[3]]
    uid = study.study_instance_uid
    receiver = Receiver()
    receiver.start()
    restarted = threading.Event()
    with PrivatePostgres() as postgres:

        def decide(method: str, path: str) -> Action:
            if is_series_retrieve(method, path) and postgres.running() and not restarted.is_set():
                postgres.stop("fast")
            return "forward"

        def met_the_outage() -> bool:
            return any("will retry" in r.getMessage() for r in caplog.records)

        try:
            with (
                fault_proxy(orthanc.url, decide) as (url, _seen),
                Service(settings_for(tmp_path, orthanc, url, database_url=postgres.url)) as service,
            ):
                service.webhooks.create("default", receiver.url)
                authorize(service)
                service.start_loop()
                send(orthanc, ct_files(study))
                deadline = time.monotonic() + TIMEOUT_S
                while not met_the_outage():
                    assert time.monotonic() < deadline, "the job never met the stopped database"
                    time.sleep(0.05)
                restarted.set()
                postgres.start()
                job = wait_final(service.store, uid)
                assert job.state is JobState.DONE, job.reason
                assert job.attempts == 2, job  # the interrupted attempt and the one after
                assert_one_result(orthanc, service.store, uid)
                deadline = time.monotonic() + 30
                while not receiver.received and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(0.5)  # a second message would show by then
                assert len(receiver.received) == 1, receiver.received
                assert service.audit.verify().ok
        finally:
            receiver.stop()


# --- the clock jumping ------------------------------------------------------------------------


def test_a_sweeper_whose_clock_jumped_ahead_takes_a_live_job_and_it_is_read_once(
    tmp_path: Path, orthanc: OrthancServer, studies: dict[int, StudyFiles]
) -> None:
    """While the job fetches, a sweep of expired leases runs on a clock two hours ahead (the
    store's clock, injected: on PostgreSQL the store uses the database's clock, so this is that
    clock jumping; a process's own clock no longer matters, tests/store/test_store.py): the
    live job's lease looks expired, so it is queued again and dispatched. The interrupted run
    stops at its next step without writing; the new one reads the study: done, one SR and one
    SEG."""
    study = studies[FAULT_SEEDS[4]]
    uid = study.study_instance_uid
    swept: list[str] = []
    services: list[Service] = []

    def decide(method: str, path: str) -> Action:
        if is_series_retrieve(method, path) and not swept:
            service = services[0]
            url = service.store.engine.url
            ahead = lambda: datetime.now(UTC) + timedelta(hours=2)  # noqa: E731
            with JobStore.create(url, clock=ahead) as leader:
                for job in leader.requeue_expired().to_dispatch:
                    swept.append(job.id)
                    service.dispatch(job.id)
        return "forward"

    with (
        fault_proxy(orthanc.url, decide) as (url, _seen),
        Service(settings_for(tmp_path, orthanc, url)) as service,
    ):
        services.append(service)
        authorize(service)
        service.start_loop()
        send(orthanc, ct_files(study))
        job = wait_final(service.store, uid)
        assert job.state is JobState.DONE, job.reason
        assert swept == [job.id] and job.attempts == 2, (swept, job)
        assert_one_result(orthanc, service.store, uid)


# --- PreRead's own disk full ------------------------------------------------------------------


class Serve:
    """``preread serve`` in a subprocess on an Orthanc of the test's, its data folder (SQLite)
    prepared with the clinical-preread grant; its output read through a pipe (a file would
    stop taking its lines once the file size limit is lowered)."""

    def __init__(self, tmp: Path, orthanc: OrthancServer, url: str) -> None:
        self.data = tmp / "data"
        self.store = JobStore.create(default_url(self.data))
        self.store.migrate()
        GrantStore(self.store.engine, audit=AuditLog(self.store.engine)).create(
            clinical_preread("tests/pipeline")
        )
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREREAD_")}
        env.update(
            PYTHONUNBUFFERED="1",
            PREREAD_DATA_DIR=str(self.data),
            PREREAD_MODELS_DIR=str(MODELS_DIR),
            PREREAD_MODELS='["lung-nodule@1.0.0"]',
            PREREAD_INTRA_OP_THREADS="1",
            PREREAD_POLL_INTERVAL_S="0.2",
            PREREAD_ORTHANC_URL=url,
            PREREAD_ORTHANC_USERNAME=orthanc.username,
            PREREAD_ORTHANC_PASSWORD=orthanc.password,
        )
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "preread.cli", "serve", "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip())

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def tail(self) -> str:
        return "--- serve ---\n" + "\n".join(self.lines[-40:])

    def wait_answering(self) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if self.popen.poll() is not None:
                raise AssertionError(f"serve exited with {self.popen.returncode}\n{self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"serve did not start\n{self.tail()}"
            time.sleep(0.1)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()  # how it stops is not under test here
            self.popen.wait()
        self._reader.join(5)
        self.store.close()


def test_prereads_own_disk_full_mid_job_loses_and_doubles_nothing(
    tmp_path: Path, orthanc: OrthancServer, studies: dict[int, StudyFiles]
) -> None:
    """``preread serve``'s file size limit (``RLIMIT_FSIZE``, set from outside) drops below its
    SQLite database as the job fetches the pixels: every write to its data folder fails
    (SQLite: "disk I/O error", as on a full disk; reads go on). The job meets it and waits,
    nothing recorded half; once there is room again it is tried again and done: one SR, one
    SEG."""
    study = studies[FAULT_SEEDS[1]]
    uid = study.study_instance_uid
    serves: list[Serve] = []

    def decide(method: str, path: str) -> Action:
        if is_series_retrieve(method, path) and len(serves) == 1:
            full = (4096, resource.RLIM_INFINITY)
            resource.prlimit(serves.pop().popen.pid, resource.RLIMIT_FSIZE, full)
        return "forward"

    with fault_proxy(orthanc.url, decide) as (url, _seen):
        serve = Serve(tmp_path, orthanc, url)
        try:
            serve.wait_answering()
            serves.append(serve)
            send(orthanc, ct_files(study))
            deadline = time.monotonic() + TIMEOUT_S
            while not serve.said("will retry"):
                assert time.monotonic() < deadline, (
                    f"the job never met the full disk\n{serve.tail()}"
                )
                time.sleep(0.05)
            time.sleep(1.0)  # the disk stays full a while
            stuck = serve.store.current_for_study(uid)[0]
            assert stuck.state is JobState.FETCHING and stuck.attempts == 1, stuck
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(serve.popen.pid, resource.RLIMIT_FSIZE, unlimited)
            job = wait_final(serve.store, uid)
            assert job.state is JobState.DONE, f"{job.reason}\n{serve.tail()}"
            assert job.attempts == 2, job
            assert_one_result(orthanc, serve.store, uid)
        finally:
            serve.close()
