"""Group commit: many threads' and coroutines' records in few transactions, one unforked chain,
each caller answered only once its own record is committed; a failing batch fails every caller
in it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import Connection, Engine, text

from preread.audit import AuditError, AuditLog
from preread.audit.batch import AuditWriter
from tests.audit.conftest import event


def test_concurrent_records_form_one_chain(audit: AuditLog) -> None:
    writer = AuditWriter(audit)
    seqs: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(25):
            record = writer.record(event(actor=f"worker-{n}-{i}"))
            with lock:
                seqs.append(record.seq)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    async def many() -> list[int]:
        records = await asyncio.gather(
            *(writer.arecord(event(actor=f"loop-{i}")) for i in range(50))
        )
        return [r.seq for r in records]

    seqs += asyncio.run(many())
    writer.close()
    assert sorted(seqs) == list(range(1, 251))  # every record once, no fork, no gap
    result = audit.verify()
    assert result.ok and result.checked == 250
    with pytest.raises(AuditError, match="closed"):
        writer.record(event())


def test_a_failing_batch_fails_its_callers(audit: AuditLog, engine: Engine) -> None:
    writer = AuditWriter(audit)
    assert writer.record(event()).seq == 1
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if pg:
            conn.execute(text(
                "CREATE FUNCTION refuse_batch() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
            ))  # fmt: skip
            conn.execute(text(
                "CREATE TRIGGER refuse_batch BEFORE INSERT ON audit_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse_batch()"
            ))  # fmt: skip
        else:
            conn.execute(text(
                "CREATE TRIGGER refuse_batch BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            ))  # fmt: skip
    with pytest.raises(AuditError, match="disk full"):
        writer.record(event())
    with pytest.raises(AuditError, match="disk full"):  # a coroutine's waiter too
        asyncio.run(writer.arecord(event()))
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse_batch" + (" ON audit_events" if pg else "")))
    assert writer.record(event()).seq == 2  # the next batch, on a fresh connection
    writer.close()
    assert audit.verify().checked == 2


def test_coroutines_of_several_loops_each_get_their_own_record(audit: AuditLog) -> None:
    """A batch answers each event loop's waiters on that loop (together); a waiter cancelled
    while its record commits (a request that went away) neither loses the record nor stops
    the others' answers."""
    writer = AuditWriter(audit)
    got: dict[str, int] = {}
    lock = threading.Lock()

    async def loop_work(n: int) -> None:
        async def one(i: int) -> None:
            actor = f"loop-{n}-{i}"
            record = await writer.arecord(event(actor=actor))
            assert record.event.actor == actor
            with lock:
                got[actor] = record.seq

        gone = asyncio.create_task(writer.arecord(event(actor=f"gone-{n}")))
        await asyncio.sleep(0)  # queued
        gone.cancel()
        await asyncio.gather(*(one(i) for i in range(20)))

    threads = [threading.Thread(target=asyncio.run, args=(loop_work(n),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    writer.close()
    assert len(got) == 80 and len(set(got.values())) == 80
    result = audit.verify()
    assert result.ok and result.checked == 84  # the cancelled callers' records are kept too


@pytest.mark.parametrize("backend", ["postgresql"])  # a server session to end: PostgreSQL's
def test_the_writer_keeps_its_connection_while_busy_and_renews_it_when_idle(
    audit: AuditLog, engine: Engine
) -> None:
    """Back-to-back batches share one database session; after ``idle_s`` the pool gives a
    fresh, pinged one, so a server-side end of the old session (a database restart while the
    API was idle) fails no batch."""
    writer = AuditWriter(audit, idle_s=0.3)
    pid = "SELECT pg_backend_pid()"
    backends: set[int] = set()
    with engine.connect() as mine:
        for _ in range(5):
            writer.record(event())
            backends |= _writer_backends(mine)
        assert len(backends) == 1  # one session for the busy stretch
        time.sleep(0.5)
        mine.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backends.pop()})
        mine.commit()
        assert mine.execute(text(pid)).scalar() is not None
    assert writer.record(event()).seq == 6  # no failed batch after the session was ended
    writer.close()
    assert audit.verify().checked == 6


def _writer_backends(mine: Connection) -> set[int]:
    """The other sessions of this database (the writer's), by backend pid."""
    rows = mine.execute(
        text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    )
    mine.commit()
    return {int(r[0]) for r in rows}


@pytest.mark.parametrize("backend", ["postgresql"])  # the event-loop path is PostgreSQL's
def test_a_loop_appends_on_its_own_session_and_ends_it_when_idle(
    audit: AuditLog, engine: Engine
) -> None:
    """On PostgreSQL a coroutine's record is appended by its own loop (no writer thread): one
    session for a busy stretch, given back ``idle_s`` after the last batch (no connection kept
    by a loop that stopped serving), and a new stretch opens a new one; the chain stays one
    with the thread's appends between them."""
    writer = AuditWriter(audit, idle_s=0.3)

    async def stretch() -> tuple[list[int], set[int]]:
        """Records of one loop; the sessions this loop opened: while busy, and once idle."""
        with engine.connect() as mine:
            before = _writer_backends(mine)  # the writer thread's, if it holds one
            records = await asyncio.gather(
                *(writer.arecord(event(actor=f"c-{i}")) for i in range(40))
            )
            busy = _writer_backends(mine) - before
            await asyncio.sleep(0.8)
            assert _writer_backends(mine) - before == set()  # given back when idle
        return [r.seq for r in records], busy

    seqs, busy = asyncio.run(stretch())
    assert sorted(seqs) == list(range(1, 41)) and len(busy) == 1
    assert writer.record(event()).seq == 41  # the writer thread, between two loop stretches
    seqs, again = asyncio.run(stretch())
    assert sorted(seqs) == list(range(42, 82)) and len(again) == 1 and again != busy
    writer.close()
    result = audit.verify()
    assert result.ok and result.checked == 81
