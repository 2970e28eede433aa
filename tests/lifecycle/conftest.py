"""A migrated job store on each backend (SQLite and PostgreSQL), on the real clock."""

from tests.study_support import store

__all__ = ["store"]
