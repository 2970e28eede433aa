"""Telling readers that a study's jobs or record changed, so that they may cache what they read.

Every transaction that adds or changes a job or study row (through the ORM: new jobs,
supersession, finishing, study records) names the study, and one that changes a grant says
``grants``:

* on PostgreSQL with ``NOTIFY preread_study, '<StudyInstanceUID>'`` inside the transaction, so
  that every process listening (:class:`ChangeListener`) hears it exactly when it commits;
* in the process itself, through :meth:`JobStore.subscribe` callbacks, after the commit (the
  embedded SQLite default has no NOTIFY; one process holds it).

Bulk ``UPDATE`` statements (claims, lease sweeps) do not notify: they only touch jobs that are
queued or running, which readers do not cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import event, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from preread.store.schema import GrantRow, JobRow, StudyRow

CHANNEL = "preread_study"
GRANTS = "grants"
"""The payload announcing that some grant was created, changed or revoked."""
_PENDING = "preread_changed_studies"
log = logging.getLogger(__name__)

Subscriber = Callable[[str], None]


def install(sessions: sessionmaker[Session], subscribers: list[Subscriber]) -> None:
    """Notify on ``sessions``' commits (see the module docstring)."""

    @event.listens_for(sessions, "after_flush")
    def collect(session: Session, _context: object) -> None:
        changed = (*session.new, *session.dirty, *session.deleted)
        uids = {obj.study_instance_uid for obj in changed if isinstance(obj, JobRow | StudyRow)}
        if any(isinstance(obj, GrantRow) for obj in changed):
            uids.add(GRANTS)
        fresh = uids - session.info.setdefault(_PENDING, set())
        if not fresh:
            return
        session.info[_PENDING] |= fresh
        if session.get_bind().dialect.name == "postgresql":
            for uid in sorted(fresh):
                session.execute(select(func.pg_notify(CHANNEL, uid)))

    @event.listens_for(sessions, "after_commit")
    def announce(session: Session) -> None:
        uids = session.info.pop(_PENDING, set())
        for uid in uids:
            for subscriber in list(subscribers):
                try:
                    subscriber(uid)
                except Exception as exc:  # a reader's cache never breaks a writer
                    log.warning("change subscriber failed: %s", exc)

    @event.listens_for(sessions, "after_rollback")
    def forget(session: Session) -> None:
        session.info.pop(_PENDING, None)


class ChangeListener:
    """``LISTEN preread_study`` on its own PostgreSQL connection, in a daemon thread.

    ``on_change(uid)`` for every notification; ``on_reset()`` whenever notifications may have
    been missed (connection lost, before listening again): a cache must then forget everything.
    ``listening`` is True only while notifications are known to arrive.
    """

    def __init__(
        self,
        url: URL,
        on_change: Subscriber,
        on_reset: Callable[[], None],
        *,
        retry_s: float = 2.0,
    ) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_change = on_change
        self._on_reset = on_reset
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preread-changes", daemon=True)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        self._listening.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._on_reset()  # anything before this moment may have been missed
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._on_change(note.payload)
            except Exception as exc:  # reconnect; meanwhile readers bypass their caches
                log.warning("change listener: %s; reconnecting", type(exc).__name__)
            finally:
                self._listening.clear()
                self._on_reset()
            self._stop.wait(self._retry_s)
