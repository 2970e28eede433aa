"""Group commit: many threads' and coroutines' records in few transactions, one unforked chain,
each caller answered only once its own record is committed; a failing batch fails every caller
in it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import Engine, text

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
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
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
    writer.close()
    assert audit.verify().checked == 1
