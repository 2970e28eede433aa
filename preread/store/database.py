"""Engines for the job store: SQLite by default (a file in the data folder), PostgreSQL in
production, the same code on both.

SQLite is set up for several threads and processes sharing one file: write-ahead logging (readers
never block the writer), a busy timeout (writers wait for each other instead of failing),
foreign keys on, and ``BEGIN IMMEDIATE`` for transactions that write, so that a transaction takes
the write lock before it reads what it is about to change (a read-then-write transaction that
started with a plain ``BEGIN`` could otherwise fail with "database is locked" when another writer
committed in between). See https://www.sqlite.org/wal.html and https://www.sqlite.org/lang_transaction.html.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url

DATABASE_FILE = "preread.db"
READ_ONLY = "preread_read_only"
"""Execution option: a SQLite transaction that only reads starts with a deferred ``BEGIN``."""
AUDIT_PURGING = "preread_audit_purging"
"""Key in a connection's ``info``: true while the audit purge removes records (on SQLite the
audit triggers read it through the SQL function of the same name; see migration 0004)."""


def default_url(data_dir: Path) -> str:
    """The embedded default: a SQLite file in PreRead's data folder."""
    return f"sqlite:///{data_dir / DATABASE_FILE}"


def normalize_url(url: str | URL) -> URL:
    """``url`` with PostgreSQL pointed at psycopg 3 (``postgresql://`` alone means psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, *, busy_timeout_s: float = 30.0, echo: bool = False) -> Engine:
    """An engine for the job store at ``url`` (``sqlite:///path.db`` or ``postgresql://…``).

    A SQLite file's folder is created if missing. ``busy_timeout_s`` is how long a SQLite writer
    waits for another one before giving up.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, echo=echo)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, echo=echo, connect_args={"timeout": busy_timeout_s})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    # Hand transaction control to SQLAlchemy's "begin" event (pysqlite would otherwise issue
    # its own deferred BEGIN lazily and break SAVEPOINTs).
    dbapi_connection.isolation_level = None
    dbapi_connection.create_function(  # the audit triggers' "is the purge running?"
        AUDIT_PURGING, 0, lambda: int(bool(record.info.get(AUDIT_PURGING)))
    )
    cursor = dbapi_connection.cursor()
    try:
        _wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _wal(cursor: Any, tries: int = 200) -> None:
    """Write-ahead logging, once per database file (the mode persists). Switching needs the
    file to itself and SQLite does not wait for that (no busy handler), so several processes
    opening a new database at once retry for a while instead of failing."""
    for attempt in range(tries):
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


def _sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
