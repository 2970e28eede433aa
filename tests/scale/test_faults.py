"""Fault tests of the scale-out: real ``preread watch`` and ``preread worker`` processes, a real
private Orthanc fed by ``storescu``, the shipped model, PostgreSQL, and Celery over Redis and
RabbitMQ.

Whatever is killed, every study must end with exactly one current SR and one current SEG in
Orthanc (counted through its REST API) and one done job per study and model in the store: no
study missing, none read into two results. The database is the truth: leases expire, the leader
re-queues and re-dispatches, and a redelivered task finds its job done.

Random faults come from a seed printed by each test (``PREREAD_FAULT_SEED`` replays one).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from preread.store import JobState
from tests.orthanc_support import storescu
from tests.scale.cluster import (
    IN_PROGRESS,
    Cluster,
    PrivateRabbitMQ,
    PrivateRedis,
    all_done,
    problems,
    running,
    state_summary,
    wait_for,
)
from tests.scale.conftest import FAULT_SEEDS, FaultScene
from training.phantom_dicom import StudyFiles, write_phantom_study
from training.phantoms import generate_phantom

#: generous: 20 reads of about 2 s on two cores, plus the faults, take 70 s alone and up to
#: 140 s while the suite's other process runs a test beside them; a hang never ends
RUN_TIMEOUT_S = 360.0
BUSY_WAIT_S = 30.0  # how long a kill meant for a busy worker waits for one to hold a job
SETTLE_S = 2.0  # after the last job: a late redelivery or a second result would show by then


def _leader(cluster: Cluster, watchers: list[str]) -> str | None:
    """The ``watch`` process that logged it leads since its last start."""
    for name in watchers:
        if cluster.alive(name):
            since_start = cluster.log_text(name).rsplit("===== start", 1)[-1]
            if "leader now" in since_start:
                return name
    return None


@dataclass
class Chaos:
    """Kills workers (and once the leader) at random moments, then restarts them.

    Most kills hit a worker while it holds a job's lease (fetching, inferring or writing);
    the rest hit any worker, busy or not.
    """

    cluster: Cluster
    fault_scene: FaultScene
    rng: random.Random
    workers: list[str]
    watchers: list[str]
    worker_kills: int
    leader_kill_at: int  # the leader is killed as the n-th fault
    done: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)  # job ids held by a killed worker

    @property
    def finished(self) -> bool:
        return len(self.done) >= self.worker_kills + 1

    def step(self) -> None:
        """Wait a random moment, then do the next fault (nothing once all are done)."""
        if self.finished:
            time.sleep(0.2)
            return
        time.sleep(self.rng.uniform(0.5, 2.5))
        if len(self.done) == self.leader_kill_at:
            leader = _leader(self.cluster, self.watchers)
            if leader is not None:
                self.cluster.kill(leader, "the leader")
                self.done.append(leader)
                time.sleep(self.rng.uniform(0.0, 1.0))
                self.cluster.start(leader)  # it stands by: the other one leads now
            return
        # Most kills wait for a worker holding a job; the last worker kill always does while
        # none has interrupted a job yet, so that every seed tests a re-run.
        want_busy = self.rng.random() < 0.8 or (
            not self.interrupted and self._worker_kills_done() == self.worker_kills - 1
        )
        held = self._wait_for_held_jobs() if want_busy else self._held_jobs()
        busy = sorted(held)
        victim = self.rng.choice(busy) if want_busy and busy else self.rng.choice(self.workers)
        jobs = held.get(victim, [])
        self.cluster.kill(victim, f"holding {jobs}" if jobs else "holding no job")
        self.interrupted += [job_id for job_id, _state in jobs]
        self.done.append(victim)
        time.sleep(self.rng.uniform(0.0, 1.5))
        self.cluster.start(victim)

    def _worker_kills_done(self) -> int:
        return sum(1 for name in self.done if name in self.workers)

    def _wait_for_held_jobs(self) -> dict[str, list[tuple[str, str]]]:
        """The held jobs as soon as a worker holds one (empty after BUSY_WAIT_S without)."""
        deadline = time.monotonic() + BUSY_WAIT_S
        while not (held := self._held_jobs()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return held

    def _held_jobs(self) -> dict[str, list[tuple[str, str]]]:
        """Worker name -> the (job id, state) it holds a lease on."""
        by_pid = {self.cluster.pid(w): w for w in self.workers if self.cluster.alive(w)}
        held: dict[str, list[tuple[str, str]]] = {}
        page = self.fault_scene.store.list_studies(states=IN_PROGRESS, limit=100)
        for study in page.items:
            for job in study.jobs:
                if job.state in IN_PROGRESS and job.lease_owner:
                    pid = int(job.lease_owner.rsplit(":", 1)[-1])
                    if pid in by_pid:
                        held.setdefault(by_pid[pid], []).append((job.id, job.state.value))
        return held


def _wait_all_done(
    fault_scene: FaultScene,
    cluster: Cluster,
    uids: list[str],
    seed: int,
    step: Callable[[], None] = lambda: time.sleep(0.2),
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Call ``step`` until ``ready()`` and every study's current job is done."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (ready() and all_done(fault_scene.store, uids)):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"seed {seed}: not every study was read within {RUN_TIMEOUT_S:.0f} s "
                f"({state_summary(fault_scene.store, uids)})\n{cluster.report()}"
            )
        step()


def _check_one_result_each(
    fault_scene: FaultScene, cluster: Cluster, studies: list[StudyFiles], seed: int
) -> None:
    uids = [s.study_instance_uid for s in studies]
    time.sleep(SETTLE_S)
    found = problems(fault_scene.orthanc, fault_scene.store, uids)
    assert not found, (
        f"seed {seed}: {len(found)} of {len(uids)} studies do not end with exactly one SR + SEG "
        "and one done job:\n" + "\n".join(found) + "\n" + cluster.report()
    )


def test_workers_killed_at_random_moments_leave_one_result_per_study(
    broker_url: str,
    queue: str,
    fault_scene: FaultScene,
    small_studies: list[StudyFiles],
    fault_seed: int,
) -> None:
    """20 studies flow through a leader watcher and two workers over the machine's broker
    (Redis, then RabbitMQ; a queue of the test's own) while workers are SIGKILLed at random
    moments — most while holding a job — and the leader once (its standby takes over); each
    is restarted. Every study ends with one SR + SEG and one done job."""
    rng = random.Random(fault_seed)
    cluster = fault_scene.cluster(broker_url, queue)
    workers, watchers = ["worker-1", "worker-2"], ["watch-a", "watch-b"]
    uids = [s.study_instance_uid for s in small_studies]
    chaos = Chaos(
        cluster,
        fault_scene,
        rng,
        workers,
        watchers,
        worker_kills=3,
        leader_kill_at=rng.randrange(1, 4),
    )
    with running(cluster):
        for name in watchers:
            cluster.start(name, "watch")
        for name in workers:
            cluster.start(name, "worker")
        half = len(small_studies) // 2
        fault_scene.send(small_studies[:half])
        cluster.note(f"sent {half} studies")
        sent_all = False

        def step() -> None:
            nonlocal sent_all
            chaos.step()
            if not sent_all and chaos.done:  # the rest arrive while faults go on
                fault_scene.send(small_studies[half:])
                cluster.note(f"sent {len(small_studies) - half} studies")
                sent_all = True

        _wait_all_done(fault_scene, cluster, uids, fault_seed, step, ready=lambda: sent_all)
        _check_one_result_each(fault_scene, cluster, small_studies, fault_seed)
        rerun = [
            job.id
            for uid in uids
            for job in fault_scene.store.history(uid)
            if job.id in chaos.interrupted and job.attempts > 1
        ]
        assert rerun, (
            f"seed {fault_seed}: no kill interrupted a job that then ran again "
            f"(faults: {chaos.done}); the test proved nothing\n{cluster.report()}"
        )


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_broker_killed_and_restarted_mid_run_loses_nothing(
    kind: str,
    fault_scene: FaultScene,
    small_studies: list[StudyFiles],
    tmp_path: Path,
    fault_seed: int,
) -> None:
    """A private broker (Redis without persistence: every message in it is lost; RabbitMQ:
    durable queue, persistent messages) is SIGKILLed while 6 studies are read by two workers,
    and started again on the same port: the workers
    and the leader reconnect, the leader sends the queued jobs again, and every study ends with
    one SR + SEG and one done job."""
    rng = random.Random(fault_seed)
    studies = small_studies[:6]
    uids = [s.study_instance_uid for s in studies]
    broker: PrivateRedis | PrivateRabbitMQ = (
        PrivateRedis(tmp_path / "redis") if kind == "redis" else PrivateRabbitMQ(tmp_path / "rmq")
    )
    broker.start()
    try:
        cluster = fault_scene.cluster(broker.url, "preread.jobs")
        with running(cluster):
            cluster.start("watch", "watch")
            cluster.start("worker-1", "worker")
            cluster.start("worker-2", "worker")
            fault_scene.send(studies)
            cluster.note(f"sent {len(studies)} studies")
            wanted = rng.randint(1, 2)  # studies read before the broker dies
            wait_for(
                lambda: sum(_done(fault_scene, uid) for uid in uids) >= wanted,
                RUN_TIMEOUT_S,
                lambda: (
                    f"seed {fault_seed}: {wanted} studies not read before the broker kill "
                    f"({state_summary(fault_scene.store, uids)})\n{cluster.report()}"
                ),
            )
            before = state_summary(fault_scene.store, uids)
            assert not all_done(fault_scene.store, uids), (
                "all read before the broker died: too fast"
            )
            broker.kill()
            cluster.note(f"broker {kind} killed ({before})")
            time.sleep(rng.uniform(0.5, 2.0))
            broker.start()
            cluster.note(f"broker {kind} started again")
            _wait_all_done(fault_scene, cluster, uids, fault_seed)
            _check_one_result_each(fault_scene, cluster, studies, fault_seed)
    finally:
        broker.close()


def _done(fault_scene: FaultScene, uid: str) -> bool:
    jobs = fault_scene.store.current_for_study(uid)
    return bool(jobs) and jobs[0].state is JobState.DONE


def test_study_that_grows_while_read_is_read_again_by_the_follow_up_the_worker_sends(
    redis_queue: tuple[str, str], fault_scene: FaultScene, tmp_path: Path, fault_seed: int
) -> None:
    """10 more slices arrive while a worker (``--concurrency 2``: a pool of two threads) reads
    the first 50 (it is paused with SIGSTOP while inferring, until the leader has recorded the
    new content): the finished job hands back a follow-up, the worker's task sends it (the
    leader re-sends nothing: reconcile only at start), and the follow-up's result replaces the
    first one in Orthanc."""
    url, queue = redis_queue
    grown = write_phantom_study(
        generate_phantom(FAULT_SEEDS[0], matrix=32, max_slices=60), tmp_path, patient_id="GROW"
    )
    files = sorted(grown.ct_dir.iterdir())
    uid = grown.study_instance_uid
    cluster = fault_scene.cluster(url, queue, lease_s="30", reconcile_interval_s="3600")
    with running(cluster):
        cluster.start("watch", "watch")
        cluster.start("worker", "worker", "--concurrency", "2")  # two threads
        assert storescu(fault_scene.orthanc, files[:50]).returncode == 0
        cluster.note("sent 50 slices")

        def inferring() -> bool:
            jobs = fault_scene.store.current_for_study(uid)
            return bool(jobs) and jobs[0].state is JobState.INFERRING

        wait_for(inferring, RUN_TIMEOUT_S, cluster.report, step_s=0.02)
        cluster.pause("worker")
        try:
            assert storescu(fault_scene.orthanc, files[50:]).returncode == 0
            cluster.note("sent 10 more slices")

            def rerun_recorded() -> bool:
                return fault_scene.store.current_for_study(uid)[0].rerun_fingerprint is not None

            wait_for(rerun_recorded, 60, lambda: f"no rerun recorded\n{cluster.report()}")
        finally:
            cluster.resume("worker")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(fault_scene.store.history(uid)) < 2 or not _done(fault_scene, uid):
            assert time.monotonic() < deadline, (
                f"no follow-up read: {fault_scene.store.history(uid)}\n{cluster.report()}"
            )
            time.sleep(0.2)
        _check_history_and_orthanc(fault_scene, cluster, uid, fault_seed)


def _check_history_and_orthanc(
    fault_scene: FaultScene, cluster: Cluster, uid: str, seed: int
) -> None:
    time.sleep(SETTLE_S)
    found = problems(fault_scene.orthanc, fault_scene.store, [uid], jobs=2)
    assert not found, "\n".join(found) + "\n" + cluster.report()
    first, second = fault_scene.store.history(uid)
    assert first.state is JobState.SUPERSEDED and first.outputs_removed_at is not None
    assert second.supersedes == first.id and second.fingerprint.instances == 60
    # made by finishing the first job (the same instant), not by the watcher afterwards
    assert second.created_at == first.finished_at, (first, second)
