"""``preread health ready|leader`` (the containers' probes in deploy/) against real servers: a
fresh PostgreSQL database, the Redis on 127.0.0.1 and a private Orthanc (all required, never
skipped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from dicom_gateway.orthanc_server import OrthancServer
from preread.cli import app
from preread.health import advisory_lock_ids
from preread.scale.cli import LEADERSHIP
from preread.scale.leader import Leadership, lock_key
from preread.store import make_engine
from tests.scale.conftest import BROKERS, _reachable
from tests.store.conftest import fresh_postgres_database

ROOT = Path(__file__).resolve().parent.parent


def health(*args: str) -> tuple[int, list[str]]:
    """Run ``preread health ARGS``: its exit status and output lines."""
    result = CliRunner().invoke(app, ["health", *args])
    return result.exit_code, result.output.splitlines()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def test_lock_ids_split_the_key_as_postgresql_does(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        for key in (lock_key(LEADERSHIP), -1, 2**63 - 1, -(2**63), 12345):
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                row = conn.execute(
                    text(
                        "SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid()"
                    )
                ).one()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            assert (int(row.classid), int(row.objid)) == advisory_lock_ids(key)
    finally:
        engine.dispose()


def test_leader_fails_only_while_no_watcher_leads(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREREAD_DATABASE_URL", database_url)
    assert health("leader") == (1, ["leader: no watcher holds the lock"])
    engine = make_engine(database_url)
    try:
        with Leadership(engine, LEADERSHIP) as leadership:
            assert leadership.acquire()
            assert health("leader") == (0, ["leader: a watcher leads"])
        assert health("leader") == (1, ["leader: no watcher holds the lock"])
    finally:
        engine.dispose()
    monkeypatch.setenv("PREREAD_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    status, lines = health("leader")  # cannot tell: a restart would not help
    assert status == 0 and lines[0].startswith("leader: cannot ask the database")
    monkeypatch.setenv("PREREAD_DATABASE_URL", "sqlite:///x.db")
    status, lines = health("leader")
    assert status == 2 and "must name PostgreSQL" in " ".join(lines)


def test_ready_checks_every_dependency(
    database_url: str, orthanc: OrthancServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reachable(BROKERS["redis"])
    monkeypatch.setenv("PREREAD_DATABASE_URL", database_url)
    monkeypatch.setenv("PREREAD_BROKER_URL", BROKERS["redis"])
    monkeypatch.setenv("PREREAD_ORTHANC_URL", orthanc.url)
    monkeypatch.setenv("PREREAD_ORTHANC_USERNAME", orthanc.username)
    monkeypatch.setenv("PREREAD_ORTHANC_PASSWORD", orthanc.password)
    monkeypatch.setenv("PREREAD_MODELS_DIR", str(ROOT / "models"))
    monkeypatch.setenv("PREREAD_MODELS", '["lung-nodule"]')
    assert health("ready", "worker") == (
        0,
        ["database: ok", "broker: ok", "orthanc: ok", "models: ok"],
    )

    monkeypatch.setenv("PREREAD_ORTHANC_PASSWORD", "wrong")
    monkeypatch.setenv("PREREAD_MODELS", '["no-such-model"]')
    status, out = health("ready", "worker")
    assert status == 1
    assert out[:3] == ["database: ok", "broker: ok", "orthanc: failed: HTTPStatusError"]
    assert out[3].startswith("models: failed: ")
    assert "wrong" not in "\n".join(out)  # no secret in a probe's output

    monkeypatch.delenv("PREREAD_BROKER_URL")
    status, out = health("ready", "watch")
    assert status == 1 and "PREREAD_BROKER_URL: not set" in out[0]
    assert health("ready", "api")[0] == 2  # an unknown role is refused
