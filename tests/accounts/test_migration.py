"""Migration 0005 (users, user_sessions) up and down on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from preread.store import make_engine, upgrade
from preread.store.migrate import current_revision, downgrade
from tests.store.conftest import BACKENDS, fresh_postgres_database


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


def test_0005_creates_and_drops_the_account_tables(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0004")
        assert "users" not in inspect(engine).get_table_names()
        upgrade(engine, "0005")
        assert current_revision(engine) == "0005"
        inspector = inspect(engine)
        assert {"users", "user_sessions"} <= set(inspector.get_table_names())
        columns = {c["name"] for c in inspector.get_columns("user_sessions")}
        assert "token_hash" in columns and "token" not in columns  # only the token's hash
        unique = {ix["name"] for ix in inspector.get_indexes("users") if ix["unique"]}
        assert "uq_users_username" in unique
        downgrade(engine, "0004")
        assert current_revision(engine) == "0004"
        tables = set(inspect(engine).get_table_names())
        assert not {"users", "user_sessions"} & tables
        assert "audit_events" in tables  # what 0004 had stays
    finally:
        engine.dispose()
