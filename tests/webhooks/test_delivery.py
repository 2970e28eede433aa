"""The deliverer against a real HTTP receiver on 127.0.0.1 (allowed the way an operator allows
a network: ``LOOPBACK_ALLOWED``), on SQLite and PostgreSQL: signed requests, retries on the
schedule (a fake clock steps through it), giving up, redelivery, ``Retry-After``, timeouts,
refused connections, concurrent deliverers, and its thread; what the delivery record keeps of
an attempt (a coarse result, never the network's error text)."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from preread.store import make_engine
from preread.webhooks import RETRY_SCHEDULE_S, Deliverer, verify
from preread.webhooks.delivery import (
    Outcome,
    classify,
    encode_body,
    next_attempt_at,
    parse_retry_after,
)
from preread.webhooks.outbox import (
    Claim,
    DeliveryRecord,
    DeliveryState,
    WebhookStore,
    enqueue_event,
    event_payload,
)
from tests.store.conftest import FakeClock
from tests.webhooks.conftest import LOOPBACK_ALLOWED, TENANT, Receiver, finished_job

COMPLETED = "preread.completed"


def queue(engine: Engine, clock: FakeClock) -> None:
    """A job finishing: its event queued in the job's transaction."""
    with Session(engine) as session, session.begin():
        payload = event_payload(finished_job(), COMPLETED, clock.now)
        enqueue_event(session, tenant=TENANT, event_type=COMPLETED, payload=payload, now=clock.now)


def only_delivery(webhooks: WebhookStore, webhook_id: str) -> DeliveryRecord:
    [delivery] = webhooks.deliveries(TENANT, webhook_id)
    return delivery


@pytest.fixture
def deliverer(webhooks: WebhookStore, http_client: httpx.Client, clock: FakeClock) -> Deliverer:
    return Deliverer(webhooks, http_client, policy=LOOPBACK_ALLOWED, clock=clock, timeout_s=2.0)


def test_a_message_is_posted_signed_and_verifies(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    webhook, secret = webhooks.create(TENANT, receiver.url)
    queue(engine, clock)
    stats = deliverer.run_once()
    assert (stats.claimed, stats.delivered, stats.retrying, stats.failed) == (1, 1, 0, 0)
    [request] = receiver.received
    delivery = only_delivery(webhooks, webhook.id)
    assert request.path == "/hooks/preread?token=QUERY-SECRET"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "PreRead-Webhooks/1"
    assert request.headers["webhook-id"] == delivery.id
    assert request.headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
    verify(secret, request.headers, request.body, now=clock.now)
    assert (
        request.body == json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    )
    assert (delivery.state, delivery.attempts, delivery.last_status) == (
        DeliveryState.DELIVERED,
        1,
        200,
    )
    assert delivery.delivered_at == clock.now
    assert deliverer.run_once(clock.now + timedelta(days=2)).claimed == 0


def test_a_receiver_down_for_hours_gets_the_message_exactly_once(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    webhook, secret = webhooks.create(TENANT, receiver.url)
    queue(engine, clock)
    receiver.mode = "error"  # answering 500 for two attempts …
    for step in RETRY_SCHEDULE_S[:2]:
        assert deliverer.run_once().retrying == 1
        assert deliverer.run_once(clock.now + timedelta(seconds=step - 1)).claimed == 0  # not due
        clock.advance(step)
    receiver.stop()  # … then not there at all (connection refused) for 1 h 36 min …
    for step in RETRY_SCHEDULE_S[2:7]:
        assert deliverer.run_once().retrying == 1
        delivery = only_delivery(webhooks, webhook.id)
        assert (delivery.last_status, delivery.last_error) == (None, "unreachable")
        clock.advance(step)
    receiver.mode = "ok"  # … and back.
    receiver.start()
    assert deliverer.run_once().delivered == 1
    delivery = only_delivery(webhooks, webhook.id)
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 8)
    assert receiver.ids() == [delivery.id] * 3  # two 500s, then the one that got through
    stamps = [int(request.headers["webhook-timestamp"]) for request in receiver.received]
    assert len(set(stamps)) == 3  # each attempt is signed anew, for its own time
    for request, stamp in zip(receiver.received, stamps, strict=True):
        verify(secret, request.headers, request.body, now=datetime.fromtimestamp(stamp, UTC))
    assert deliverer.run_once(clock.now + timedelta(days=2)).claimed == 0


def test_a_clock_that_jumps_neither_loses_nor_doubles_a_message(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    """The deliverer's clock jumps three hours back after a failed attempt (the retry then
    waits until the clock has caught up: late, not lost), then two days ahead (the retry is
    due at once, sent once)."""
    webhook, _ = webhooks.create(TENANT, receiver.url)
    queue(engine, clock)
    receiver.mode = "error"
    assert deliverer.run_once().retrying == 1
    clock.advance(-3 * 3600)
    assert deliverer.run_once().claimed == 0
    clock.advance(3 * 3600 + RETRY_SCHEDULE_S[0] - 1)
    assert deliverer.run_once().claimed == 0
    receiver.mode = "ok"
    clock.advance(2 * 86400)
    assert deliverer.run_once().delivered == 1
    assert deliverer.run_once(clock.now + timedelta(days=30)).claimed == 0
    delivery = only_delivery(webhooks, webhook.id)
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 2)
    assert receiver.ids() == [delivery.id] * 2


def test_giving_up_after_the_schedule_then_redelivering(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    webhook, _ = webhooks.create(TENANT, receiver.url)
    queue(engine, clock)
    receiver.mode = "error"
    for step in RETRY_SCHEDULE_S:
        assert deliverer.run_once().retrying == 1
        clock.advance(step)
    assert deliverer.run_once().failed == 1
    delivery = only_delivery(webhooks, webhook.id)
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == (
        DeliveryState.FAILED,
        len(RETRY_SCHEDULE_S) + 1,
        None,
    )
    assert (delivery.last_status, delivery.last_error) == (500, "rejected")
    assert deliverer.run_once(clock.now + timedelta(days=30)).claimed == 0
    receiver.mode = "ok"
    webhooks.redeliver(TENANT, delivery.id)
    assert deliverer.run_once().delivered == 1
    assert only_delivery(webhooks, webhook.id).state is DeliveryState.DELIVERED
    assert set(receiver.ids()) == {delivery.id}


@pytest.mark.parametrize(("retry_after", "wait_s"), [("600", 600), ("1", 5)])
def test_retry_after_is_honoured_when_longer_than_the_schedule(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    deliverer: Deliverer,
    retry_after: str,
    wait_s: int,
) -> None:
    webhook, _ = webhooks.create(TENANT, receiver.url)
    queue(engine, clock)
    receiver.mode, receiver.retry_after = "throttle", retry_after
    assert deliverer.run_once().retrying == 1
    delivery = only_delivery(webhooks, webhook.id)
    assert delivery.next_attempt_at == clock.now + timedelta(seconds=wait_s)
    assert (delivery.last_status, delivery.last_error) == (429, "rejected")


def test_a_receiver_slower_than_the_timeout_is_retried(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    http_client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook, _ = webhooks.create(TENANT, receiver.url)
    queue(engine, clock)
    receiver.mode = "hang"
    deliverer = Deliverer(
        webhooks, http_client, policy=LOOPBACK_ALLOWED, clock=clock, timeout_s=0.3
    )
    started = time.monotonic()
    assert deliverer.run_once().retrying == 1
    assert time.monotonic() - started < 2.5
    delivery = only_delivery(webhooks, webhook.id)
    assert (delivery.last_status, delivery.last_error) == (None, "unreachable")
    assert "no answer within 0.3 s (ReadTimeout)" in caplog.text  # the details: the log's
    assert delivery.next_attempt_at == clock.now + timedelta(seconds=RETRY_SCHEDULE_S[0])


def test_gone_gives_up_at_once_and_redirects_are_not_followed(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    webhook, _ = webhooks.create(TENANT, receiver.url)
    queue(engine, clock)
    receiver.mode = "redirect"
    assert deliverer.run_once().retrying == 1
    redirected = only_delivery(webhooks, webhook.id)
    assert (redirected.last_status, redirected.last_error) == (302, "rejected")
    assert len(receiver.received) == 1  # the Location (http://127.0.0.1:1/…) was not followed
    clock.advance(RETRY_SCHEDULE_S[0])
    receiver.mode = "gone"
    assert deliverer.run_once().failed == 1
    delivery = only_delivery(webhooks, webhook.id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == (
        DeliveryState.FAILED,
        2,
        410,
    )


def test_two_deliverers_never_send_a_message_twice(
    db_url: str, webhooks: WebhookStore, engine: Engine, clock: FakeClock, receiver: Receiver
) -> None:
    webhooks.create(TENANT, receiver.url)
    for _ in range(24):
        queue(engine, clock)
    start = threading.Barrier(2)
    stats: list[int] = []

    def deliver() -> None:
        own_engine = make_engine(db_url)
        try:
            with httpx.Client(trust_env=False) as client:
                deliverer = Deliverer(
                    WebhookStore(own_engine, clock=clock),
                    client,
                    policy=LOOPBACK_ALLOWED,
                    clock=clock,
                    batch_size=3,
                )
                start.wait()
                while (round_ := deliverer.run_once()).claimed:
                    stats.append(round_.delivered)
        finally:
            own_engine.dispose()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == sum(stats) == 24


class FlakyStore(WebhookStore):
    """A store whose first claim fails, as when the database is briefly unreachable."""

    calls = 0

    def claim_due(self, now: datetime, limit: int, lease_s: float) -> list[Claim]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("database unreachable")
        return super().claim_due(now, limit, lease_s)


def test_the_thread_survives_errors_and_delivers(
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    http_client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore(engine, clock=clock)
    store.create(TENANT, receiver.url)
    queue(engine, clock)
    deliverer = Deliverer(store, http_client, policy=LOOPBACK_ALLOWED, clock=clock)
    deliverer.start(interval_s=0.02)
    try:
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert deliverer.running
    finally:
        deliverer.stop()
    assert not deliverer.running
    assert len(receiver.received) == 1 and store.calls >= 2
    assert "webhook delivery round failed" in caplog.text


def test_logs_name_ids_but_never_payloads_paths_or_queries(
    webhooks: WebhookStore,
    engine: Engine,
    clock: FakeClock,
    receiver: Receiver,
    deliverer: Deliverer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="preread.webhooks")
    webhook, _ = webhooks.create(TENANT, receiver.url)
    queue(engine, clock)
    receiver.mode = "error"
    deliverer.run_once()
    clock.advance(RETRY_SCHEDULE_S[0])
    receiver.stop()
    deliverer.run_once()
    receiver.start()
    receiver.mode = "ok"
    clock.advance(RETRY_SCHEDULE_S[1])
    deliverer.run_once()
    delivery = only_delivery(webhooks, webhook.id)
    assert delivery.state is DeliveryState.DELIVERED
    assert caplog.text.count(delivery.id) == 3 and webhook.id in caplog.text
    assert f"127.0.0.1:{receiver.port}" in caplog.text
    for secret_part in ("QUERY-SECRET", "/hooks/preread", finished_job().id, "lung-nodules"):
        assert secret_part not in caplog.text
        assert secret_part not in (delivery.last_error or "")


# --- pure functions -----------------------------------------------------------------------------


def test_the_schedule_keeps_trying_for_about_28_hours() -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    at, attempts = start, 1
    while (following := next_attempt_at(attempts, at)) is not None:
        at, attempts = following, attempts + 1
    assert attempts == 12
    assert timedelta(hours=27) < at - start < timedelta(hours=29)
    assert next_attempt_at(1, start, retry_after_s=10**9) == start + timedelta(hours=12)
    with pytest.raises(ValueError, match=">= 1"):
        next_attempt_at(0, start)


def test_statuses_and_retry_after_values() -> None:
    assert [classify(s) for s in (200, 204, 299)] == [Outcome.DELIVERED] * 3
    assert [classify(s) for s in (301, 400, 404, 408, 429, 500, 503)] == [Outcome.RETRY] * 7
    assert classify(410) is Outcome.GIVE_UP
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_bodies_are_compact_sorted_utf8_json() -> None:
    assert (
        encode_body({"b": 1, "a": {"d": "é", "c": None}})
        == '{"a":{"c":null,"d":"é"},"b":1}'.encode()
    )
