"""The job store on SQLite and PostgreSQL: idempotent enqueueing, superseding, leases, the
state machine, the watcher cursor and the queries."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text

from preread.domain import ModelRef
from preread.store import (
    IllegalTransitionError,
    JobNotFoundError,
    JobOutputs,
    JobRecord,
    JobState,
    JobStore,
    JobUpdate,
    LeaseLostError,
    SeriesDecision,
    StoredObject,
    StoreError,
    StudyFingerprint,
    transaction,
)
from tests.store.conftest import FakeClock

MODEL = ModelRef(id="lung-nodules", version="1.2.0", name="Lung nodules", sha256="0" * 64)
MODEL_2 = ModelRef(id="lung-nodules", version="2.0.0", name="Lung nodules", sha256="1" * 64)
OTHER = ModelRef(id="emphysema", version="0.1.0", name="Emphysema", sha256="2" * 64)
STUDY = "1.2.826.0.1.3680043.8.498.1"
ORTHANC = "5a9e8a5c-0c1f5fe1-2b5b4bcf-b4cd0e3b-3a3e2a14"
FP = StudyFingerprint(120, "20250301T080000")
GROWN = StudyFingerprint(240, "20250301T081500")
SR = StoredObject("1.2.3.100", "1.2.3.101", "sr-orthanc-id")
SEG = StoredObject("1.2.3.200", "1.2.3.201", "seg-orthanc-id")


def run_to_done(store: JobStore, job_id: str, owner: str = "w1") -> JobRecord:
    assert store.claim(job_id, owner, 60) is not None
    store.advance(job_id, owner, JobState.INFERRING, JobUpdate(series_instance_uid="1.2.3.9"))
    store.advance(job_id, owner, JobState.WRITING, JobUpdate(outputs=JobOutputs(sr=SR, seg=SEG)))
    return store.finish_done(job_id, owner, {"findings": []}).job


# --- enqueue --------------------------------------------------------------------------------


def test_enqueue_twice_makes_one_job(store: JobStore) -> None:
    first = store.enqueue(STUDY, ORTHANC, MODEL, FP)
    again = store.enqueue(STUDY, ORTHANC, MODEL, FP)
    assert first.created and not again.created
    assert again.job.id == first.job.id
    assert first.job.state is JobState.QUEUED and first.job.attempts == 0
    assert [j.id for j in store.history(STUDY)] == [first.job.id]


def test_each_model_version_has_its_own_current_job(store: JobStore) -> None:
    ids = {store.enqueue(STUDY, ORTHANC, m, FP).job.id for m in (MODEL, MODEL_2, OTHER)}
    assert len(ids) == 3
    current = store.current_for_study(STUDY)
    assert [(j.model_id, j.model_version) for j in current] == [
        ("emphysema", "0.1.0"),
        ("lung-nodules", "1.2.0"),
        ("lung-nodules", "2.0.0"),
    ]
    assert len(store.current_for_study(STUDY, model_id="lung-nodules")) == 2


def test_enqueue_after_done_with_same_fingerprint_does_nothing(store: JobStore) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    run_to_done(store, job.id)
    again = store.enqueue(STUDY, ORTHANC, MODEL, FP)
    assert not again.created and again.job.id == job.id and again.job.state is JobState.DONE


def test_grown_study_supersedes_the_finished_job(store: JobStore, clock: FakeClock) -> None:
    old = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    run_to_done(store, old.id)
    clock.advance(5)
    grown = store.enqueue(STUDY, ORTHANC, MODEL, GROWN)
    assert grown.created
    assert grown.superseded is not None and grown.superseded.id == old.id
    new = grown.job
    assert new.state is JobState.QUEUED and new.fingerprint == GROWN
    assert new.supersedes == old.id

    history = store.history(STUDY)
    assert [j.id for j in history] == [old.id, new.id]
    assert history[0].state is JobState.SUPERSEDED and history[0].superseded_by == new.id
    assert history[0].result == {"findings": []}  # the old result is kept
    assert [j.id for j in store.current_for_study(STUDY)] == [new.id]

    # the new job knows what to remove once its own results are stored
    to_remove = store.outputs_to_remove(new.id)
    assert [j.id for j in to_remove] == [old.id]
    assert to_remove[0].outputs == JobOutputs(sr=SR, seg=SEG)
    store.mark_outputs_removed(old.id)
    assert store.outputs_to_remove(new.id) == ()
    with pytest.raises(StoreError, match="only a superseded job"):
        store.mark_outputs_removed(new.id)


def test_outputs_to_remove_follows_the_chain(store: JobStore) -> None:
    a = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    run_to_done(store, a.id)
    b = store.enqueue(STUDY, ORTHANC, MODEL, GROWN).job  # b fails before writing anything
    store.claim(b.id, "w1", 60)
    store.finish_failed(b.id, "w1", "series 1.2.3.9: slice gap of 5 mm", "series_unreadable")
    c = store.enqueue(STUDY, ORTHANC, MODEL, StudyFingerprint(300, "20250301T090000")).job
    assert [j.id for j in store.outputs_to_remove(c.id)] == [a.id]
    assert len(store.history(STUDY)) == 3


def _done_unavailable(
    store: JobStore, job_id: str, reason: str = "PACS down", *, retryable: bool = True
) -> JobRecord:
    assert store.claim(job_id, "w1", 60) is not None
    store.advance(job_id, "w1", JobState.INFERRING, JobUpdate(series_instance_uid="1.2.3.9"))
    store.advance(job_id, "w1", JobState.WRITING, JobUpdate(outputs=JobOutputs(sr=SR, seg=SEG)))
    comparison = {"status": "unavailable", "reason": reason, "retryable": retryable}
    return store.finish_done(job_id, "w1", {"findings": [], "comparison": comparison}).job


def test_a_reading_without_its_comparison_is_read_again_with_back_off(
    store: JobStore, clock: FakeClock
) -> None:
    """Done, but the priors could not be had: recorded as such, read again (same content, a
    new job that supersedes it) after 60 s, then 120 s, at most twice; other content or a
    comparison made ends it."""
    first = _done_unavailable(store, store.enqueue(STUDY, ORTHANC, MODEL, FP).job.id)
    assert first.state is JobState.DONE and first.reason_code == "comparison_unavailable"
    assert first.reason is not None and "PACS down" in first.reason
    assert store.retry_comparisons(60, 2) == []  # not yet
    clock.advance(61)
    (again,) = store.retry_comparisons(60, 2)
    assert again.state is JobState.QUEUED and again.supersedes == first.id
    assert again.fingerprint == FP
    assert [j.id for j in store.outputs_to_remove(again.id)] == [first.id]  # never both
    assert store.retry_comparisons(0, 2) == []  # one at a time: the new job is queued
    _done_unavailable(store, again.id)
    clock.advance(61)
    assert store.retry_comparisons(60, 2) == []  # the second waits 120 s
    clock.advance(60)
    (third,) = store.retry_comparisons(60, 2)
    _done_unavailable(store, third.id)
    clock.advance(10_000)
    assert store.retry_comparisons(60, 2) == []  # two tries made: it stays as it is
    (spent,) = store.current_for_study(STUDY)
    assert spent.reason_code == "comparison_unavailable_final"  # out of the sweep's way
    assert spent.reason is not None and "2 tries made" in spent.reason
    assert store.retry_comparisons(60, 0) == []
    # new images: a reading of other content, whose own unavailable comparison counts afresh
    grown = store.enqueue(STUDY, ORTHANC, MODEL, GROWN).job
    _done_unavailable(store, grown.id)
    clock.advance(61)
    assert [j.supersedes for j in store.retry_comparisons(60, 2)] == [grown.id]
    # a reading whose comparison was made is not read again
    other = store.enqueue("1.2.826.0.1.3680043.8.498.2", ORTHANC, MODEL, FP).job
    run_to_done(store, other.id)
    clock.advance(10_000)
    assert store.current_for_study("1.2.826.0.1.3680043.8.498.2")[0].reason_code is None
    assert store.retry_comparisons(60, 2) == []


def test_a_comparison_the_studies_themselves_prevent_is_never_read_again(
    store: JobStore, clock: FakeClock
) -> None:
    """No valid StudyDate, priors that do not register: the same study gives the same answer,
    so the sweep leaves it (its own reason code, the cause in the reason)."""
    why = "the study has no valid StudyDate: its priors cannot be told apart"
    done = _done_unavailable(store, store.enqueue(STUDY, ORTHANC, MODEL, FP).job.id, why,
                             retryable=False)  # fmt: skip
    assert done.reason_code == "comparison_not_possible"
    assert done.reason is not None and why in done.reason and "not read again" in done.reason
    clock.advance(10_000)
    assert store.retry_comparisons(60, 5) == []


@pytest.mark.parametrize("final", ["failed", "not_applicable"])
def test_grown_study_supersedes_failed_and_not_applicable(store: JobStore, final: str) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    if final == "failed":
        store.finish_failed(job.id, "w1", "Orthanc answered 500", "fetch_failed")
    else:
        store.finish_not_applicable(
            job.id, "w1", "no axial CT series", [SeriesDecision("1.2.3.9", False, "scout")]
        )
    grown = store.enqueue(STUDY, ORTHANC, MODEL, GROWN)
    assert grown.created and grown.superseded is not None
    assert grown.superseded.state is JobState.SUPERSEDED


def test_grown_study_while_queued_refreshes_the_job(store: JobStore) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    grown = store.enqueue(STUDY, ORTHANC, MODEL, GROWN)
    assert not grown.created and grown.refreshed
    assert grown.job.id == job.id and grown.job.fingerprint == GROWN
    assert len(store.history(STUDY)) == 1


def test_grown_study_while_running_is_read_again_after(store: JobStore) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    store.advance(job.id, "w1", JobState.INFERRING)
    grown = store.enqueue(STUDY, ORTHANC, MODEL, GROWN)
    assert not grown.created and grown.rerun_requested
    assert grown.job.fingerprint == FP and grown.job.rerun_fingerprint == GROWN
    again = store.enqueue(STUDY, ORTHANC, MODEL, GROWN)  # seen twice: still one rerun
    assert not again.created and again.rerun_requested

    store.advance(job.id, "w1", JobState.WRITING, JobUpdate(outputs=JobOutputs(sr=SR)))
    finished = store.finish_done(job.id, "w1", {"findings": [1]})
    assert finished.job.state is JobState.SUPERSEDED and finished.job.result == {"findings": [1]}
    follow_up = finished.follow_up
    assert follow_up is not None
    assert follow_up.state is JobState.QUEUED and follow_up.fingerprint == GROWN
    assert follow_up.supersedes == job.id
    assert [j.id for j in store.current_for_study(STUDY)] == [follow_up.id]
    assert [j.id for j in store.outputs_to_remove(follow_up.id)] == [job.id]
    # the follow-up already reads the newest study: seeing it again changes nothing
    assert not store.enqueue(STUDY, ORTHANC, MODEL, GROWN).created


def test_grown_study_while_running_then_worker_killed(store: JobStore, clock: FakeClock) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    store.enqueue(STUDY, ORTHANC, MODEL, GROWN)
    clock.advance(61)
    sweep = store.requeue_expired()
    assert [j.id for j in sweep.requeued] == [job.id]
    assert sweep.requeued[0].fingerprint == GROWN and not sweep.requeued[0].rerun_requested
    assert len(store.history(STUDY)) == 1


def test_grown_while_running_then_out_of_attempts(store: JobStore, clock: FakeClock) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    clock.advance(61)
    store.requeue_expired()
    store.claim(job.id, "w2", 60)  # the last attempt (max_attempts is 2)
    store.enqueue(STUDY, ORTHANC, MODEL, GROWN)  # the study grows while w2 runs
    clock.advance(61)  # and w2 is killed
    sweep = store.requeue_expired()
    assert [j.id for j in sweep.failed] == [job.id]
    assert sweep.failed[0].state is JobState.SUPERSEDED and sweep.failed[0].finished_at
    assert [j.fingerprint for j in sweep.follow_ups] == [GROWN]
    assert sweep.to_dispatch == sweep.follow_ups


def _enqueue_in_threads(url: str, clock: FakeClock, n: int) -> list[tuple[str, bool]]:
    barrier = threading.Barrier(n)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with JobStore.create(url, clock=clock) as own:  # one engine each, like processes
                barrier.wait()
                r = own.enqueue(STUDY, ORTHANC, MODEL, FP)
                results.append((r.job.id, r.created))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_enqueue_makes_one_current_job(
    store: JobStore, db_url: str, clock: FakeClock
) -> None:
    results = _enqueue_in_threads(db_url, clock, 4)
    assert len(results) == 4
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(store.history(STUDY)) == 1


def test_enqueue_that_loses_the_race_reads_the_winner(
    store: JobStore, db_url: str, clock: FakeClock, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One transaction has inserted the job but not committed when another enqueues the same
    study: on PostgreSQL the second insert waits on the unique index, fails when the first
    commits and reads its job; on SQLite the second writer waits for the first."""
    caplog.set_level(logging.INFO, logger="preread.store")
    outcome: list[tuple[str, bool]] = []
    started = threading.Event()

    def second() -> None:
        with JobStore.create(db_url, clock=clock) as other:
            started.set()
            r = other.enqueue(STUDY, ORTHANC, MODEL, FP)
            outcome.append((r.job.id, r.created))

    thread = threading.Thread(target=second)
    with store.transaction() as tx:
        first = tx.enqueue(STUDY, ORTHANC, MODEL, FP)
        thread.start()
        started.wait(10)
        thread.join(0.5)  # let the second writer reach the database and block
        assert thread.is_alive()
    thread.join(30)
    assert outcome == [(first.job.id, False)]
    if backend == "postgresql":
        assert "lost the race" in caplog.text


# --- claims and leases ------------------------------------------------------------------------


def test_claim_by_two_owners_only_one_wins(store: JobStore, clock: FakeClock) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    won = store.claim(job.id, "w1", 60)
    assert won is not None and won.state is JobState.FETCHING and won.attempts == 1
    assert won.lease_owner == "w1" and won.lease_expires_at == clock.now + timedelta(seconds=60)
    assert store.claim(job.id, "w2", 60) is None


def test_claim_race_in_threads(store: JobStore, db_url: str, clock: FakeClock) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    barrier = threading.Barrier(4)
    won: list[str] = []

    def work(owner: str) -> None:
        with JobStore.create(db_url, clock=clock) as own:
            barrier.wait()
            if own.claim(job.id, owner, 60) is not None:
                won.append(owner)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1
    assert store.get(job.id).lease_owner == won[0] and store.get(job.id).attempts == 1


def test_claim_of_a_finished_job_returns_none(store: JobStore) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    done = run_to_done(store, job.id)
    assert done.state is JobState.DONE and done.lease_expires_at is None
    assert store.claim(job.id, "w2", 60) is None  # a redelivered task does nothing
    assert store.get(job.id).attempts == 1
    with pytest.raises(JobNotFoundError):
        store.claim("no-such-job", "w1", 60)


def test_killed_worker_is_requeued_then_failed(store: JobStore, clock: FakeClock) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    store.advance(job.id, "w1", JobState.INFERRING)
    clock.advance(30)
    assert store.requeue_expired().requeued == ()  # the lease still holds

    clock.advance(31)  # worker w1 was killed: its lease expired
    sweep = store.requeue_expired()
    assert [j.id for j in sweep.to_dispatch] == [job.id] and sweep.failed == ()
    requeued = sweep.requeued[0]
    assert requeued.state is JobState.QUEUED and requeued.attempts == 1
    assert requeued.reason_code == "lease_expired" and "w1" in (requeued.reason or "")
    with pytest.raises(IllegalTransitionError):  # w1 comes back to life: refused
        store.advance(job.id, "w1", JobState.WRITING)

    second = store.claim(job.id, "w2", 60)
    assert second is not None and second.attempts == 2
    clock.advance(61)  # killed again; max_attempts is 2
    sweep = store.requeue_expired()
    assert sweep.requeued == () and [j.id for j in sweep.failed] == [job.id]
    failed = store.get(job.id)
    assert failed.state is JobState.FAILED and failed.reason_code == "lease_expired"
    assert "attempt 2 of 2" in (failed.reason or "") and failed.finished_at == clock.now
    assert store.claim(job.id, "w3", 60) is None

    retried = store.retry(job.id)
    assert retried.state is JobState.QUEUED and retried.attempts == 0


def test_expired_lease_is_claimed_again_directly(store: JobStore, clock: FakeClock) -> None:
    """A redelivered task (late acknowledgement) may come before the sweep."""
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    store.advance(
        job.id, "w1", JobState.INFERRING, JobUpdate(outputs=JobOutputs(sr=SR), timings={"a": 1})
    )
    assert store.claim(job.id, "w2", 60) is None
    clock.advance(61)
    again = store.claim(job.id, "w2", 60)
    assert again is not None and again.attempts == 2 and again.state is JobState.FETCHING
    assert again.outputs.sr == SR  # what attempt 1 may have written is still known
    with pytest.raises(LeaseLostError, match="'w2'"):
        store.advance(job.id, "w1", JobState.WRITING)
    with pytest.raises(LeaseLostError):
        store.renew_lease(job.id, "w1", 60)
    with pytest.raises(LeaseLostError):
        store.finish_failed(job.id, "w1", "too late", "x")


def test_a_retry_that_wrote_other_objects_replaces_the_recorded_outputs(
    store: JobStore, clock: FakeClock
) -> None:
    """Attempt 2 read other content (other UIDs) and removed attempt 1's objects: its outputs
    replace the recorded ones, a SEG it did not write included (``replace_outputs``)."""
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    store.advance(job.id, "w1", JobState.INFERRING)
    store.advance(job.id, "w1", JobState.WRITING, JobUpdate(outputs=JobOutputs(sr=SR, seg=SEG)))
    clock.advance(61)
    assert store.claim(job.id, "w2", 60) is not None
    store.advance(job.id, "w2", JobState.INFERRING)
    newer = StoredObject("1.2.3.300", "1.2.3.301", "sr2-orthanc-id")
    update = JobUpdate(outputs=JobOutputs(sr=newer), replace_outputs=True)
    written = store.advance(job.id, "w2", JobState.WRITING, update)
    assert written.outputs == JobOutputs(sr=newer, seg=None)
    assert store.finish_done(job.id, "w2", {"findings": []}).job.outputs == JobOutputs(sr=newer)


def test_key_images_and_kos_are_recorded_and_replaced_with_the_other_outputs(
    store: JobStore, clock: FakeClock
) -> None:
    """The SC series (one instance per finding) and the KOS round-trip through the store, and a
    retry's ``replace_outputs`` without them (switched off) records none."""
    sc = tuple(StoredObject("1.2.3.400", f"1.2.3.40{n}", "sc-orthanc-id") for n in (1, 2))
    kos = StoredObject("1.2.3.500", "1.2.3.501", "kos-orthanc-id")
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    store.advance(job.id, "w1", JobState.INFERRING)
    outputs = JobOutputs(sr=SR, seg=SEG, sc=sc, kos=kos)
    written = store.advance(job.id, "w1", JobState.WRITING, JobUpdate(outputs=outputs))
    assert written.outputs == outputs
    assert [o.orthanc_series_id for o in written.outputs.objects] == [
        "sr-orthanc-id", "seg-orthanc-id", "sc-orthanc-id", "sc-orthanc-id", "kos-orthanc-id",
    ]  # fmt: skip
    clock.advance(61)
    assert store.claim(job.id, "w2", 60) is not None
    assert store.get(job.id).outputs == outputs  # what attempt 1 may have written is known
    store.advance(job.id, "w2", JobState.INFERRING)
    update = JobUpdate(outputs=JobOutputs(sr=SR, seg=SEG), replace_outputs=True)
    assert store.advance(job.id, "w2", JobState.WRITING, update).outputs == JobOutputs(SR, SEG)


def test_renew_lease(store: JobStore, clock: FakeClock) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    clock.advance(50)
    assert store.renew_lease(job.id, "w1", 60) == clock.now + timedelta(seconds=60)
    clock.advance(50)
    assert store.requeue_expired().requeued == ()
    assert store.claim(job.id, "w2", 60) is None
    run_to_done_from_fetching = store.advance(job.id, "w1", JobState.INFERRING)
    assert run_to_done_from_fetching.lease_owner == "w1"


@pytest.mark.parametrize("backend", ["postgresql"])  # one server clock for every machine
def test_leases_run_on_the_database_clock_whatever_a_process_clock_says(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader whose clock runs 2 h ahead (the OS clock, the outer edge, set forward) neither
    re-queues a live lease nor fails it: by default the store stamps and compares leases on
    PostgreSQL's clock. (Before, each process's clock: a skewed sweep cost the job an attempt.)"""
    with JobStore.create(db_url) as worker, JobStore.create(db_url) as leader:
        job = worker.enqueue(STUDY, ORTHANC, MODEL, FP).job
        claimed = worker.claim(job.id, "w1", 60)
        assert claimed is not None and claimed.lease_expires_at is not None
        with worker.engine.connect() as conn:
            server_now = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        assert abs((claimed.lease_expires_at - server_now).total_seconds() - 60) < 5
        ahead = datetime.now(UTC) + timedelta(hours=2)
        monkeypatch.setattr(transaction, "utcnow", lambda: ahead)
        assert leader.requeue_expired().requeued == ()
        assert leader.claim(job.id, "w2", 60) is None
        renewed = worker.renew_lease(job.id, "w1", 60)
        assert renewed < ahead  # not stamped with the process's clock
        assert worker.advance(job.id, "w1", JobState.INFERRING).lease_owner == "w1"


# --- the state machine ----------------------------------------------------------------------


def test_illegal_transitions_are_refused(store: JobStore) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    with pytest.raises(IllegalTransitionError, match="'queued' to 'inferring'"):
        store.advance(job.id, "w1", JobState.INFERRING)
    store.claim(job.id, "w1", 60)
    with pytest.raises(IllegalTransitionError, match="'fetching' to 'writing'") as info:
        store.advance(job.id, "w1", JobState.WRITING)
    assert (info.value.from_state, info.value.to_state) == ("fetching", "writing")
    with pytest.raises(IllegalTransitionError, match="'fetching' to 'done'"):
        store.finish_done(job.id, "w1", {})
    with pytest.raises(StoreError, match="advance"):
        store.advance(job.id, "w1", JobState.FAILED)
    assert store.get(job.id).state is JobState.FETCHING  # nothing changed
    store.advance(job.id, "w1", JobState.INFERRING)
    store.advance(job.id, "w1", JobState.WRITING)
    store.finish_done(job.id, "w1", {})
    with pytest.raises(IllegalTransitionError, match="'done' to 'inferring'"):
        store.advance(job.id, "w1", JobState.INFERRING)
    with pytest.raises(IllegalTransitionError, match="'done' to 'queued'"):
        store.retry(job.id)


def test_progress_records_merge(store: JobStore, clock: FakeClock) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    store.advance(
        job.id,
        "w1",
        JobState.INFERRING,
        JobUpdate(
            series_instance_uid="1.2.3.9",
            provider_requested="CUDAExecutionProvider",
            provider_used="CPUExecutionProvider",
            provider_warning="CUDA requested, CPU used",
            timings={"fetch": 1.5, "decode": 0.25},
        ),
    )
    store.record(job.id, "w1", JobUpdate(timings={"infer": 8.0}))
    store.advance(job.id, "w1", JobState.WRITING, JobUpdate(outputs=JobOutputs(sr=SR)))
    clock.advance(10)
    done = store.finish_done(
        job.id, "w1", {"findings": [{"label": 1}]}, JobUpdate(outputs=JobOutputs(seg=SEG))
    ).job
    assert done.timings == {"fetch": 1.5, "decode": 0.25, "infer": 8.0}
    assert done.outputs == JobOutputs(sr=SR, seg=SEG)
    assert done.series_instance_uid == "1.2.3.9"
    assert (done.provider_requested, done.provider_used) == (
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    )
    assert done.provider_warning == "CUDA requested, CPU used"
    assert done.result == {"findings": [{"label": 1}]}
    assert done.finished_at == clock.now and done.started_at == clock.now - timedelta(seconds=10)
    for t in (done.created_at, done.updated_at, done.started_at, done.finished_at):
        assert t is not None and t.tzinfo is not None and t.utcoffset() == timedelta(0)


def test_series_decisions_are_recorded(store: JobStore) -> None:
    job = store.enqueue(STUDY, ORTHANC, MODEL, FP).job
    store.claim(job.id, "w1", 60)
    first = [SeriesDecision("1.2.3.9", True, "eligible")]
    store.record_decisions(job.id, first)
    decisions = [
        SeriesDecision("1.2.3.9", False, "slice thickness 5.0 mm > 2.5 mm"),
        SeriesDecision("1.2.3.8", False, "modality SR, not CT"),
    ]
    finished = store.finish_not_applicable(job.id, "w1", "no eligible series", decisions)
    assert finished.job.state is JobState.NOT_APPLICABLE and finished.follow_up is None
    assert finished.job.reason_code == "no_eligible_series"
    assert store.decisions(job.id) == tuple(decisions)


# --- the watcher cursor -----------------------------------------------------------------------


def test_cursor_and_jobs_commit_together(store: JobStore) -> None:
    assert store.get_cursor("orthanc-changes") is None
    with store.transaction() as tx:
        tx.enqueue(STUDY, ORTHANC, MODEL, FP)
        tx.enqueue("1.2.3.4", "o2", MODEL, FP)
        tx.set_cursor("orthanc-changes", 41)
        assert tx.get_cursor("orthanc-changes") == 41
    assert store.get_cursor("orthanc-changes") == 41
    store.set_cursor("orthanc-changes", 42)
    assert store.get_cursor("orthanc-changes") == 42
    assert len(store.list_studies().items) == 2


def test_cursor_and_jobs_roll_back_together(store: JobStore) -> None:
    store.set_cursor("orthanc-changes", 7)
    with pytest.raises(RuntimeError, match="watcher crashed"), store.transaction() as tx:
        tx.enqueue(STUDY, ORTHANC, MODEL, FP)
        tx.set_cursor("orthanc-changes", 8)
        raise RuntimeError("watcher crashed")
    assert store.get_cursor("orthanc-changes") == 7
    assert store.history(STUDY) == ()


# --- queries ----------------------------------------------------------------------------------


def test_list_studies_filters_and_pages(store: JobStore, clock: FakeClock) -> None:
    uids = [f"1.2.3.{i}" for i in range(5)]
    jobs = {}
    for uid in uids:
        clock.advance(1)
        jobs[uid] = store.enqueue(uid, f"o-{uid}", MODEL, FP).job
    store.enqueue(uids[0], "o-x", OTHER, FP)
    clock.advance(1)
    run_to_done(store, jobs[uids[1]].id)
    store.claim(jobs[uids[2]].id, "w1", 60)
    store.finish_failed(jobs[uids[2]].id, "w1", "boom", "internal")
    store.enqueue(uids[1], f"o-{uids[1]}", MODEL, GROWN)  # supersedes the done job

    page = store.list_studies(limit=2)
    assert page.total == 5 and len(page.items) == 2
    assert page.items[0].study_instance_uid == uids[1]  # newest change first
    rest = store.list_studies(limit=10, offset=2)
    seen = [s.study_instance_uid for s in page.items + rest.items]
    assert sorted(seen) == sorted(uids)

    failed = store.list_studies(states={JobState.FAILED})
    assert [s.study_instance_uid for s in failed.items] == [uids[2]] and failed.total == 1
    assert failed.items[0].jobs[0].reason == "boom"

    queued = store.list_studies(states={JobState.QUEUED})
    assert queued.total == 4  # uids 0, 1 (the new job), 3, 4
    study0 = next(s for s in queued.items if s.study_instance_uid == uids[0])
    assert {j.model_id for j in study0.jobs} == {"lung-nodules", "emphysema"}
    only = store.list_studies(states={JobState.QUEUED}, model_id="emphysema")
    assert only.total == 1 and [j.model_id for j in only.items[0].jobs] == ["emphysema"]
    assert store.list_studies(states={JobState.DONE}).total == 0  # superseded is not current

    counts = store.counts_by_state()
    assert counts[JobState.QUEUED] == 5 and counts[JobState.FAILED] == 1
    assert counts[JobState.SUPERSEDED] == 1 and counts[JobState.DONE] == 0
    assert sum(counts.values()) == 7
    assert store.counts_by_state(model_id="emphysema")[JobState.QUEUED] == 1


def test_get_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFoundError, match="no job nope"):
        store.get("nope")


def test_naive_clock_is_refused(db_url: str) -> None:
    with (
        JobStore.create(db_url, clock=lambda: datetime(2025, 1, 1)) as store,
        pytest.raises(StoreError, match="naive"),
    ):
        store.enqueue(STUDY, ORTHANC, MODEL, FP)


def test_database_errors_are_store_errors() -> None:
    with (
        JobStore.create("postgresql://nobody@127.0.0.1:1/none") as store,
        pytest.raises(StoreError, match="reading the job store failed"),
    ):
        store.get("x")


def test_fingerprint_token_round_trip() -> None:
    assert StudyFingerprint.from_token(FP.token) == FP
    assert StudyFingerprint.from_token(StudyFingerprint(3).token) == StudyFingerprint(3, "")
    with pytest.raises(ValueError):
        StudyFingerprint(-1)


def test_store_created_from_an_engine(db_url: str) -> None:
    with JobStore.create(db_url) as owner:
        store = JobStore.from_engine(owner.engine)
        assert store.enqueue(STUDY, ORTHANC, MODEL, FP).job.created_at.tzinfo is UTC
        store.close()  # does not dispose of an engine it does not own
        assert inspect(owner.engine).has_table("jobs")
