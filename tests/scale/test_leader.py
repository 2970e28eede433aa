"""Leadership on PostgreSQL: one of two wins; when the winner's session dies (its backend
terminated, as when its process is killed) the other takes over within seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from preread.scale import Leadership


@pytest.fixture
def engines(postgres_url: str) -> Iterator[tuple[Engine, Engine]]:
    a, b = create_engine(postgres_url), create_engine(postgres_url)  # two "processes"
    yield a, b
    a.dispose()
    b.dispose()


def _terminate(engine: Engine, leader: Leadership) -> None:
    """Kill the leader's session from outside (``pg_terminate_backend``)."""
    assert leader._conn is not None
    pid = leader._conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with engine.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()


def test_one_wins_and_the_other_takes_over_when_it_dies(engines: tuple[Engine, Engine]) -> None:
    a, b = engines
    first, second = Leadership(a, "watcher-test"), Leadership(b, "watcher-test")
    try:
        assert first.acquire() is True
        assert second.acquire() is False and not second.is_leader
        assert first.acquire() is True  # staying leader is idempotent
        assert Leadership(b, "another-role").acquire() is True  # names are independent

        _terminate(b, first)  # as if its process were killed
        deadline = time.monotonic() + 5.0
        while not second.acquire():  # the standby wins within seconds
            assert time.monotonic() < deadline, "the standby did not take over"
            time.sleep(0.1)
        assert second.is_leader
        assert first.is_leader  # not yet known: the next check finds the connection dead
        assert first.acquire() is False
        assert not first.is_leader
    finally:
        first.release()
        second.release()


def test_release_hands_over_at_once(engines: tuple[Engine, Engine]) -> None:
    a, b = engines
    with Leadership(a, "watcher-release") as first:
        assert first.acquire()
        second = Leadership(b, "watcher-release")
        assert not second.acquire()
        first.release()
        assert not first.is_leader
        assert second.acquire()
        second.release()


def test_sqlite_leader_is_a_lock_file(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        first, second = Leadership(engine, "w"), Leadership(engine, "w")
        assert first.acquire() and not second.acquire()
        first.release()
        assert second.acquire()
        second.release()
    finally:
        engine.dispose()


def test_only_the_leader_watches_and_a_standby_takes_over(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two ``watch_loop``s on one folder of studies: only the leader dispatches its job; when it
    stops, the standby leads and sends the still-queued job."""
    import threading

    from dicom_gateway.folder import FolderStudySource
    from preread.audit import AuditLog
    from preread.domain import ModelRef
    from preread.scale.cli import watch_loop
    from preread.store import JobStore
    from preread.watcher import Watcher
    from training.phantom_dicom import write_phantom_study
    from training.phantoms import generate_phantom

    folder = tmp_path / "orthanc"
    folder.mkdir()
    write_phantom_study(generate_phantom(9, matrix=48, max_slices=8), folder, patient_id="P-W")
    model = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)
    sent: dict[str, list[str]] = {"a": [], "b": []}
    stops = {"a": threading.Event(), "b": threading.Event()}
    threads = []
    with JobStore.create(postgres_url) as store_a, JobStore.create(postgres_url) as store_b:
        for name, store in (("a", store_a), ("b", store_b)):
            watcher = Watcher(
                FolderStudySource(folder),
                store,
                [model],
                sent[name].append,
                tenant_of=lambda _s: "default",
                audit=AuditLog(store.engine),
            )
            leadership = Leadership(store.engine, "watcher-loop-test")
            args = (leadership, watcher, store, sent[name].append)
            kwargs = {"poll_s": 0.05, "reconcile_s": 0.2, "stop": stops[name], "check_s": 0.05}
            thread = threading.Thread(target=watch_loop, args=args, kwargs=kwargs)
            thread.start()
            threads.append(thread)
            if name == "a":
                deadline = time.monotonic() + 10
                while not sent["a"]:  # a leads first
                    assert time.monotonic() < deadline, "the first watcher did not dispatch"
                    time.sleep(0.05)
        try:
            time.sleep(0.5)
            assert sent["b"] == []  # the standby does nothing
            job_id = sent["a"][0]
            stops["a"].set()
            threads[0].join(5)
            deadline = time.monotonic() + 5
            while job_id not in sent["b"]:  # the new leader sends the still-queued job
                assert time.monotonic() < deadline, "the standby did not take over"
                time.sleep(0.05)
        finally:
            for stop in stops.values():
                stop.set()
            for thread in threads:
                thread.join(5)
