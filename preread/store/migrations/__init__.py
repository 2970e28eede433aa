"""Alembic migrations of the job store (run by :func:`preread.store.migrate.upgrade`)."""
