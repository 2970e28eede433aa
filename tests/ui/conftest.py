"""The pages' tests use the accounts tests' fixtures: the real app and stores, injected clocks."""

from tests.accounts.conftest import clock, db_url, engine, postgres_url, site

__all__ = ["clock", "db_url", "engine", "postgres_url", "site"]
