"""Fixtures of the scale-out tests: a fresh PostgreSQL database per module (as in
``tests/store``), a real Redis (``PREREAD_TEST_REDIS``, default ``redis://127.0.0.1:6379/15``)
and a real RabbitMQ (``PREREAD_TEST_AMQP``, default ``amqp://guest:guest@127.0.0.1:5672//``).

All three are required, never skipped: an unreachable one fails the test with a clear message.
Each test uses a queue of its own, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from kombu.connection import Connection

from preread.store import upgrade
from tests.store.conftest import fresh_postgres_database

BROKERS = {
    "redis": os.environ.get("PREREAD_TEST_REDIS", "redis://127.0.0.1:6379/15"),
    "rabbitmq": os.environ.get("PREREAD_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
}


def _reachable(url: str) -> None:
    try:
        with Connection(url, connect_timeout=5) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(
            f"the message broker {url} is needed for the scale-out tests and is not reachable "
            f"({type(exc).__name__}: {exc}). Start it, or set PREREAD_TEST_REDIS / "
            "PREREAD_TEST_AMQP.",
            pytrace=False,
        )


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    url = BROKERS[str(request.param)]
    _reachable(url)
    return url


@pytest.fixture
def queue(broker_url: str) -> Iterator[str]:
    """A queue name of this test's own; deleted from the broker afterwards."""
    name = f"preread.test.{uuid.uuid4().hex[:12]}"
    yield name
    with (
        Connection(broker_url, connect_timeout=5) as conn,  # type: ignore[no-untyped-call]
        contextlib.suppress(Exception),  # never declared: the test failed before sending
    ):
        conn.default_channel.queue_delete(name)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url
