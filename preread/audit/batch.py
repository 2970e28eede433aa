"""Group commit for the audit trail: many requests' records in one transaction.

Every report read is audited before its data leave (no unaudited access), so the audit append
is on the report API's hot path. One transaction per record would cost each request a lock,
a head read, an insert and a commit; :class:`AuditWriter` instead collects the records that
arrive while the previous batch commits and appends them together
(:meth:`~preread.audit.log.AuditLog.record_many`). Each caller still waits until its own record
is committed — or gets the :class:`~preread.audit.log.AuditError` of its batch — so the rule
holds: a failed audit write stops the action it describes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import Future

from sqlalchemy import Connection

from preread.audit.log import AuditError, AuditEvent, AuditLog, AuditRecord

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

        The loop's own future is settled with the rest of its batch in one callback (one
        wake-up of the loop per batch, not one per record: the report API's hot path)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AuditRecord] = loop.create_future()
        if not self._enqueue(event, (loop, waiter)):
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
