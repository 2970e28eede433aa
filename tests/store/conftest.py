"""Fixtures of the job store tests: every test runs on SQLite (a file in tmp_path) and on
PostgreSQL (a fresh database per test module on 127.0.0.1:5432, dropped afterwards).

PostgreSQL is required, never skipped: set ``PREREAD_TEST_POSTGRES`` to an admin URL
(default ``postgresql://postgres@127.0.0.1:5432/test``; ``root`` is tried too).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from preread.store import JobStore, make_engine, upgrade

ADMIN_URLS = (
    [os.environ["PREREAD_TEST_POSTGRES"]]
    if "PREREAD_TEST_POSTGRES" in os.environ
    else ["postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test"]
)
BACKENDS = ["sqlite", "postgresql"]


def _admin() -> tuple[psycopg.Connection[tuple[object, ...]], str]:
    errors = []
    for url in ADMIN_URLS:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5), url
        except psycopg.OperationalError as exc:
            errors.append(f"{url}: {str(exc).strip()}")
    pytest.fail(
        "PostgreSQL is needed for the job store tests and is not reachable "
        f"({'; '.join(errors)}). Start it or set PREREAD_TEST_POSTGRES to an admin URL.",
        pytrace=False,
    )


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"preread_test_{uuid.uuid4().hex[:12]}"
    conn, admin_url = _admin()
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        conn, _ = _admin()
        with conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass
class FakeClock:
    """The store's clock in tests: stands still until moved."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it (not migrated)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database with no rows (PostgreSQL's is shared by the module, emptied after)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade(url)
        yield url
        return
    url = str(request.getfixturevalue("postgres_url"))
    yield url
    with JobStore.create(url) as store, store.engine.begin() as conn:
        # the audit tables refuse TRUNCATE (migration 0004): a superuser's cleanup skips triggers
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text(
                "TRUNCATE webhook_deliveries, webhooks, idempotency_keys, api_clients, studies,"
                " series_decisions, watcher_state, reviews, jobs, grants, audit_events,"
                " audit_anchor, backfill_items, backfill_runs, model_stages, final_reports,"
                " monitoring_alerts"
            )
        )


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on :func:`db_url` (disposed after the test)."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 1, 8, 0, tzinfo=UTC))


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[JobStore]:
    with JobStore.create(db_url, clock=clock, max_attempts=2) as store:
        yield store
