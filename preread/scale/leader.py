"""One leader among many processes: a PostgreSQL session-level advisory lock.

The watcher must run once (two would enqueue the same study twice as fast and race on the
cursor), but a standby must take over when the leader dies. :class:`Leadership` holds
``pg_try_advisory_lock(key)`` on a connection of its own: PostgreSQL releases the lock when
that session ends, so a killed leader's lock is freed as soon as the server sees its
connection close, and a standby's next :meth:`Leadership.acquire` wins.

Loss is detected, not assumed: :meth:`Leadership.acquire` (call it every second or so) checks
that the lock's connection is alive; if it is not, leadership is lost and ``is_leader`` turns
false before anything else is done as leader.

On SQLite (one machine), the lock is an exclusive ``flock`` on ``<database>.leader`` beside
the database file; an in-memory database has one process, which is always the leader.

See https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
from types import TracebackType
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """The advisory lock key of ``name``: a signed 64-bit number derived from it."""
    return int.from_bytes(hashlib.sha256(f"preread:{name}".encode()).digest()[:8], signed=True)


class Leadership:
    """Leadership named ``name`` (e.g. ``"watcher"``) among the processes of one database.

    Use ``acquire()`` repeatedly: True while this process leads. ``release()`` steps down.
    """

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.key = lock_key(name)
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None
        self._leader = False

    @property
    def is_leader(self) -> bool:
        """Whether this process led at the last :meth:`acquire` (call that to re-check)."""
        return self._leader

    def acquire(self) -> bool:
        """Become or stay the leader if possible; False when another process leads or the
        database is unreachable. Checks a held lock's connection: a dead one is a lost lead."""
        if self.engine.dialect.name != "postgresql":
            self._leader = self._acquire_file()
            return self._leader
        if self._leader:
            if self._alive():
                return True
            log.warning("leadership %r lost: its database connection is gone", self.name)
            self._drop()
        try:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            log.warning("leadership %r: database unreachable: %s", self.name, exc)
            return False
        try:
            won = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
                       .scalar_one())  # fmt: skip
        except SQLAlchemyError as exc:
            log.warning("leadership %r: lock query failed: %s", self.name, exc)
            conn.invalidate()
            conn.close()
            return False
        if not won:
            conn.close()
            return False
        self._conn, self._leader = conn, True
        log.info("leadership %r acquired (advisory lock %d)", self.name, self.key)
        return True

    def _alive(self) -> bool:
        assert self._conn is not None
        try:
            self._conn.execute(text("SELECT 1")).scalar_one()
        except SQLAlchemyError:
            return False
        return True

    def _drop(self) -> None:
        conn, self._conn, self._leader = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()  # never back to the pool: the session may still hold the lock
                conn.close()

    def _acquire_file(self) -> bool:
        if self._file is not None:
            return True
        database = self.engine.url.database
        if not database or database == ":memory:":
            return True
        handle = open(f"{database}.leader", "ab")  # noqa: SIM115  # held while leading
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        """Step down: unlock and close the lock's connection (or file)."""
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self._drop()
        self._leader = False

    def __enter__(self) -> Leadership:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


__all__ = ["Leadership", "lock_key"]
