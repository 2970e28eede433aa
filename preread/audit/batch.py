"""Group commit for the audit trail: many requests' records in one transaction.

Every report read is audited before its data leave (no unaudited access), so the audit append
is on the report API's hot path. One transaction per record would cost each request a lock,
a head read, an insert and a commit; :class:`AuditWriter` instead collects the records that
arrive while the previous batch commits and appends them together
(:meth:`~preread.audit.log.AuditLog.record_many`). Each caller still waits until its own record
is committed — or gets the :class:`~preread.audit.log.AuditError` of its batch — so the rule
holds: a failed audit write stops the action it describes.

Two paths append, and the chain's append lock orders them (one chain, never forked):

* a daemon thread for callers on threads (:meth:`AuditWriter.record`), and for coroutines on
  SQLite;
* on PostgreSQL, for coroutines (:meth:`AuditWriter.arecord`: the report API's hot path), a task
  on the caller's own event loop with a psycopg ``AsyncConnection`` of its own
  (:class:`_LoopAppender`): no thread, so no handing the GIL back and forth with a writer thread
  and no cross-thread wake-up per batch (measured in ``bench/api_reports.py``: the writer thread
  cost the report route about as much CPU as the rest of the request). It sends the SQL that
  :meth:`~preread.audit.log.AuditLog.record_many` sends (:class:`~preread.audit.log.PgAppend`),
  chains with the same code, keeps its connection while batches follow each other and closes it
  (and ends) after ``idle_s`` without one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import defaultdict
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Connection

from preread.audit.chain import ORIGIN, Checkpoint
from preread.audit.log import AuditError, AuditEvent, AuditLog, AuditRecord, PgAppend

log = logging.getLogger(__name__)

_Outcome = AuditRecord | AuditError
_LoopWaiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[AuditRecord]"]
_Waiter = Future[AuditRecord] | _LoopWaiter
_LoopOutcomes = list[tuple["asyncio.Future[AuditRecord]", _Outcome]]


class AuditWriter:
    """A daemon thread appending queued events in batches (up to ``max_batch``).

    The thread keeps one database connection between batches while they follow each other (no
    pool checkout and no liveness ping per batch: under load that is a round trip and the GIL
    time of a checkout fewer per batch); after ``idle_s`` without a batch, or a failed one, the
    next batch takes a fresh connection from the pool, which pings it first (a database
    restarted while the API was idle costs no failed batch)."""

    def __init__(self, audit: AuditLog, *, max_batch: int = 512, idle_s: float = 1.0) -> None:
        self.audit = audit
        self.max_batch = max_batch
        self.idle_s = idle_s
        self._pending: list[tuple[AuditEvent, _Waiter]] = []
        self._wake = threading.Condition()
        self._closed = False
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopAppender] = (
            weakref.WeakKeyDictionary()
        )
        url = audit.engine.url
        self._conninfo = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg"
            else None
        )
        self._thread = threading.Thread(target=self._run, name="preread-audit", daemon=True)
        self._thread.start()

    def submit(self, event: AuditEvent) -> Future[AuditRecord]:
        """Queue ``event``; the future holds its record once committed (or the AuditError)."""
        future: Future[AuditRecord] = Future()
        if not self._enqueue(event, future):
            future.set_exception(AuditError("the audit writer is closed"))
        return future

    def _enqueue(self, event: AuditEvent, waiter: _Waiter) -> bool:
        with self._wake:
            if self._closed:
                return False
            self._pending.append((event, waiter))
            self._wake.notify()
        return True

    def record(self, event: AuditEvent, timeout_s: float = 30.0) -> AuditRecord:
        """Append ``event`` and wait for its commit (from a worker thread)."""
        try:
            return self.submit(event).result(timeout=timeout_s)
        except TimeoutError:
            raise AuditError(f"audit record of {event.action} timed out") from None

    async def arecord(self, event: AuditEvent) -> AuditRecord:
        """Append ``event`` and wait for its commit (on the event loop, without a thread).

        On PostgreSQL the record is appended by this loop's own task (:class:`_LoopAppender`);
        on SQLite by the writer thread, the loop's futures settled with the rest of their batch
        in one callback (one wake-up of the loop per batch, not one per record)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AuditRecord] = loop.create_future()
        if self._conninfo is not None:
            if self._closed:
                raise AuditError("the audit writer is closed")
            appender = self._loops.get(loop)
            if appender is None:
                appender = self._loops[loop] = _LoopAppender(
                    self.audit, self._conninfo, self.max_batch, self.idle_s
                )
            appender.submit(event, waiter)
        elif not self._enqueue(event, (loop, waiter)):
            raise AuditError("the audit writer is closed")
        return await waiter

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        connection: Connection | None = None
        last_used = 0.0
        try:
            while True:
                with self._wake:
                    while not self._pending and not self._closed:
                        self._wake.wait()
                    if not self._pending and self._closed:
                        return
                    batch = self._pending[: self.max_batch]
                    del self._pending[: self.max_batch]
                if connection is not None and time.monotonic() - last_used > self.idle_s:
                    _close(connection, broken=False)
                    connection = None
                try:
                    if connection is None:
                        connection = self.audit.engine.connect()  # the pool pings it
                    events = [event for event, _ in batch]
                    records = self.audit.record_many(events, connection=connection)
                except Exception as exc:  # AuditError (or anything): every waiter learns it
                    error = exc if isinstance(exc, AuditError) else AuditError(str(exc))
                    log.error("audit batch of %d failed: %s", len(batch), type(exc).__name__)
                    _settle([(waiter, error) for _, waiter in batch])
                    _close(connection, broken=True)
                    connection = None
                    continue
                last_used = time.monotonic()
                _settle([(waiter, r) for (_, waiter), r in zip(batch, records, strict=True)])
        finally:
            _close(connection, broken=False)


def _settle(outcomes: list[tuple[_Waiter, _Outcome]]) -> None:
    """Give each waiter its record or error: thread futures at once, each event loop's
    futures together in one callback on that loop."""
    by_loop: defaultdict[asyncio.AbstractEventLoop, _LoopOutcomes] = defaultdict(list)
    for waiter, outcome in outcomes:
        if isinstance(waiter, Future):
            if isinstance(outcome, AuditError):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        else:
            by_loop[waiter[0]].append((waiter[1], outcome))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_on_loop, items)
        except RuntimeError:  # the loop is closed: nobody waits any more
            log.debug("audit outcomes for a closed event loop dropped")


def _settle_on_loop(items: _LoopOutcomes) -> None:
    for future, outcome in items:
        if future.done():  # cancelled: the request went away
            continue
        if isinstance(outcome, AuditError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _close(connection: Connection | None, *, broken: bool) -> None:
    """Give ``connection`` back; after a failure (``broken``) it is dropped from the pool
    (``invalidate``): its session state is unknown."""
    if connection is None:
        return
    try:
        if broken and not connection.invalidated:
            connection.invalidate()
        connection.close()
    except Exception:  # closing a broken connection: nothing more to do
        log.debug("closing the audit writer's connection failed", exc_info=True)


class _LoopAppender:
    """Appends the records of one event loop's coroutines in batches, on that loop (PostgreSQL,
    psycopg's ``AsyncConnection``): a task that runs while there are records to append and for
    ``idle_s`` after the last batch, then closes its connection and ends; the next record starts
    it again. A failed batch fails each of its callers (:class:`AuditError`) and drops the
    connection; the next batch connects afresh."""

    def __init__(self, audit: AuditLog, conninfo: str, max_batch: int, idle_s: float) -> None:
        self.audit = audit
        self.conninfo = conninfo
        self.max_batch = max_batch
        self.idle_s = idle_s
        self._pending: list[tuple[AuditEvent, asyncio.Future[AuditRecord]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, event: AuditEvent, waiter: asyncio.Future[AuditRecord]) -> None:
        self._pending.append((event, waiter))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        self._wake.set()

    async def _drain(self) -> None:
        import psycopg

        connection: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                if not self._pending:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.idle_s)
                    except TimeoutError:
                        if not self._pending:  # decided with no await in between: the next
                            self._task = None  # submit starts a new task
                            return
                    continue
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    if connection is None:
                        connection = await psycopg.AsyncConnection.connect(self.conninfo)
                    records = await self._append(connection, [event for event, _ in batch])
                except Exception as exc:  # every waiter learns it; the connection is dropped
                    actions = ", ".join(sorted({event.action.value for event, _ in batch}))
                    error = AuditError(f"audit record of {actions} failed: {exc}")
                    log.error("audit batch of %d failed: %s", len(batch), type(exc).__name__)
                    _settle_on_loop([(waiter, error) for _, waiter in batch])
                    await _aclose(connection)
                    connection = None
                    continue
                _settle_on_loop([(w, r) for (_, w), r in zip(batch, records, strict=True)])
        finally:
            if self._task is asyncio.current_task():  # cancelled (the loop is closing)
                self._task = None
            await _aclose(connection)

    async def _append(self, connection: Any, events: list[AuditEvent]) -> list[AuditRecord]:
        """:meth:`AuditLog.record_many` on ``connection``: lock, head, chain, insert."""
        sql = PgAppend.compiled()
        async with connection.transaction():
            await connection.execute(sql.lock, sql.lock_params)
            row = await (await connection.execute(sql.head, sql.head_params)).fetchone()
            if row is None:
                row = await (await connection.execute(sql.anchor, sql.anchor_params)).fetchone()
            head = ORIGIN if row is None else Checkpoint(int(row[0]), str(row[1]))
            records = self.audit.chained(head, events)
            async with connection.cursor() as cursor:
                await cursor.executemany(sql.insert, [PgAppend.row(r) for r in records])
        return records


async def _aclose(connection: Any) -> None:
    """Close ``connection`` (None: nothing to do); closing a broken one cannot fail here."""
    if connection is None:
        return
    try:
        await connection.close()
    except Exception:
        log.debug("closing the audit appender's connection failed", exc_info=True)
