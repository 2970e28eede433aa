"""Schema migrations (Alembic), run from code: no ``alembic.ini`` is needed at run time.

``upgrade(url_or_engine)`` brings a database to the newest schema; it is safe to run at every
start. For the ``alembic`` command line (new revisions, history, downgrades)::

    alembic -c preread/store/alembic.ini -x url=sqlite:///data/preread.db upgrade head
    alembic -c preread/store/alembic.ini -x url=sqlite:///scratch.db revision --autogenerate -m "…"
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from preread.store.database import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x70726572  # PostgreSQL advisory lock key: one migrating process at a time


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the store's migrations, optionally bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _lock(connection: Connection) -> None:
    # SQLite's BEGIN IMMEDIATE already serializes; PostgreSQL needs a lock for processes that
    # start together (the second then finds the schema at head and does nothing).
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})


def upgrade(target: Engine | str | URL, revision: str = "head") -> None:
    """Migrate the database at ``target`` (an engine or a URL) up to ``revision``.

    Safe to run at every start, and from several processes at once.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.begin() as connection:
            _lock(connection)
            command.upgrade(alembic_config(connection), revision)
    finally:
        if engine is not target:
            engine.dispose()


def downgrade(target: Engine | str | URL, revision: str) -> None:
    """Migrate the database at ``target`` down to ``revision`` (``"base"``: drop everything)."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.begin() as connection:
            _lock(connection)
            command.downgrade(alembic_config(connection), revision)
    finally:
        if engine is not target:
            engine.dispose()
