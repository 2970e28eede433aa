"""One transaction on a session factory, database errors raised as :class:`StoreError` naming
what failed (shared by the stores that live beside the job store: clients, grants)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from preread.store.errors import StoreError


@contextmanager
def transaction(sessions: sessionmaker[Session], what: str) -> Iterator[Session]:
    """A session in a transaction: committed at the end, rolled back on any error."""
    try:
        with sessions.begin() as session:
            yield session
    except SQLAlchemyError as exc:
        raise StoreError(f"{what} failed: {exc}") from exc
