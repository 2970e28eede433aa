"""Migration 0009 (oidc_identities, oidc_logins) up and down on a fresh database."""

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


def test_0009_creates_and_drops_the_openid_connect_tables(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0008")
        assert "oidc_identities" not in inspect(engine).get_table_names()
        upgrade(engine, "0009")
        assert current_revision(engine) == "0009"
        inspector = inspect(engine)
        assert {"oidc_identities", "oidc_logins"} <= set(inspector.get_table_names())
        logins = {c["name"] for c in inspector.get_columns("oidc_logins")}
        assert {"state_hash", "browser_hash"} <= logins and not {"state", "browser"} & logins
        keys = inspector.get_pk_constraint("oidc_identities")["constrained_columns"]
        assert keys == ["issuer", "subject"]
        (link,) = inspector.get_foreign_keys("oidc_identities")
        assert link["referred_table"] == "users" and link["options"].get("ondelete") == "CASCADE"
        downgrade(engine, "0008")
        assert current_revision(engine) == "0008"
        tables = set(inspect(engine).get_table_names())
        assert not {"oidc_identities", "oidc_logins"} & tables
        assert "users" in tables
    finally:
        engine.dispose()
