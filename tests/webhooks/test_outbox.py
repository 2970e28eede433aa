"""Webhooks and their outbox in the store, on SQLite and PostgreSQL: registration rules, tenant
isolation, messages that commit and roll back with the caller's transaction, claims that never
overlap, and payloads without patient identifiers."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from preread.store import JobState
from preread.store.schema import WatcherStateRow, WebhookDeliveryRow
from preread.webhooks.outbox import (
    EVENT_TYPES,
    DeliveryNotFoundError,
    DeliveryState,
    DeliveryStateError,
    InvalidWebhookError,
    WebhookError,
    WebhookNotFoundError,
    WebhookRecord,
    WebhookStore,
    enqueue_event,
    event_payload,
)
from tests.store.conftest import FakeClock
from tests.webhooks.conftest import OTHER_TENANT, TENANT, finished_job

URL = "https://ris.example.org/hooks/preread"
COMPLETED = "preread.completed"


def queue(engine: Engine, clock: FakeClock, tenant: str = TENANT, event: str = COMPLETED) -> int:
    """What the job store does when a job finishes: the event, in a transaction of its own."""
    with Session(engine) as session, session.begin():
        payload = event_payload(finished_job(), event, clock.now)
        return enqueue_event(
            session, tenant=tenant, event_type=event, payload=payload, now=clock.now
        )


def pending_ids(webhooks: WebhookStore, tenant: str, webhook_id: str) -> list[str]:
    return [
        d.id for d in webhooks.deliveries(tenant, webhook_id) if d.state is DeliveryState.PENDING
    ]


# --- registration -------------------------------------------------------------------------------


def test_create_returns_the_secret_once(webhooks: WebhookStore, clock: FakeClock) -> None:
    webhook, secret = webhooks.create(TENANT, URL, description="RIS")
    assert secret.startswith("whsec_")
    assert "secret" not in {f.name for f in dataclasses.fields(WebhookRecord)}
    assert secret not in repr(webhook)
    assert webhook.events == EVENT_TYPES and webhook.enabled
    assert webhook.created_at == clock.now and webhook.tenant == TENANT
    assert webhooks.get(TENANT, webhook.id) == webhook
    assert webhooks.list(TENANT) == [webhook]


def test_events_are_deduplicated_in_a_fixed_order(webhooks: WebhookStore) -> None:
    webhook, _ = webhooks.create(TENANT, URL, events=["preread.failed", COMPLETED, COMPLETED])
    assert webhook.events == (COMPLETED, "preread.failed")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://ris.example.org/hooks", "must be http or https, not 'ftp'"),
        ("javascript:alert(1)", "must be http or https, not 'javascript'"),
        ("ris.example.org/hooks", "must be http or https, not 'none'"),
        ("https://user:pass@ris.example.org/hooks", "must not contain a user name or password"),
        ("https://token@ris.example.org/hooks", "must not contain a user name or password"),
        ("https:///hooks", "has no host"),
        ("https://ris.example.org:99999/hooks", "invalid port"),
        ("https://ris.example.org/hooks#part", "must not have a #fragment"),
        ("https://ris.example.org/a hook", "spaces or control characters"),
        ("https://ris.example.org/\nhook", "spaces or control characters"),
        ("https://[::1/hooks", "cannot be parsed"),
        ("https://ris.example.org/" + "a" * 2100, "longer than 2048 characters"),
    ],
)
def test_unusable_urls_are_refused_with_the_reason(
    webhooks: WebhookStore, url: str, message: str
) -> None:
    with pytest.raises(InvalidWebhookError, match=message.replace("(", r"\(")):
        webhooks.create(TENANT, url)
    assert webhooks.list(TENANT) == []


def test_unknown_or_no_events_and_long_descriptions_are_refused(webhooks: WebhookStore) -> None:
    with pytest.raises(InvalidWebhookError, match=r"unknown event type.*preread\.started"):
        webhooks.create(TENANT, URL, events=[COMPLETED, "preread.started"])
    with pytest.raises(InvalidWebhookError, match="at least one event type"):
        webhooks.create(TENANT, URL, events=[])
    with pytest.raises(InvalidWebhookError, match="description is longer than 500"):
        webhooks.create(TENANT, URL, description="x" * 501)
    with pytest.raises(InvalidWebhookError, match="needs a tenant"):
        webhooks.create("", URL)


def test_tenants_never_see_each_others_webhooks(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    mine, _ = webhooks.create(TENANT, URL)
    theirs, _ = webhooks.create(OTHER_TENANT, URL)
    assert webhooks.list(TENANT) == [mine] and webhooks.list(OTHER_TENANT) == [theirs]
    for act in (webhooks.get, webhooks.disable, webhooks.delete, webhooks.deliveries):
        with pytest.raises(WebhookNotFoundError) as foreign:
            act(OTHER_TENANT, mine.id)
        with pytest.raises(WebhookNotFoundError) as missing:
            act(OTHER_TENANT, "00000000-0000-0000-0000-000000000000")
        assert str(foreign.value) == f"no webhook {mine.id}"
        assert type(foreign.value) is type(missing.value)
    assert queue(engine, clock) == 1
    delivery_id = pending_ids(webhooks, TENANT, mine.id)[0]
    for act_on_delivery in (webhooks.delivery, webhooks.redeliver):
        with pytest.raises(DeliveryNotFoundError, match=f"no webhook delivery {delivery_id}"):
            act_on_delivery(OTHER_TENANT, delivery_id)
    assert webhooks.get(TENANT, mine.id).enabled


def test_delete_removes_the_webhook_and_its_messages(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    webhook, _ = webhooks.create(TENANT, URL)
    queue(engine, clock)
    webhooks.delete(TENANT, webhook.id)
    with pytest.raises(WebhookNotFoundError):
        webhooks.get(TENANT, webhook.id)
    with Session(engine) as session:
        assert session.scalars(select(WebhookDeliveryRow)).all() == []


# --- the outbox in the caller's transaction -----------------------------------------------------


def test_messages_commit_with_the_callers_transaction(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    webhook, _ = webhooks.create(TENANT, URL)
    payload = event_payload(finished_job(), COMPLETED, clock.now)
    with Session(engine) as session, session.begin():
        session.add(WatcherStateRow(key="job-state", value="done", updated_at=clock.now))
        assert (
            enqueue_event(
                session, tenant=TENANT, event_type=COMPLETED, payload=payload, now=clock.now
            )
            == 1
        )
    [delivery] = webhooks.deliveries(TENANT, webhook.id)
    assert delivery.id.startswith("msg_") and len(delivery.id) == 36
    assert delivery.state is DeliveryState.PENDING and delivery.attempts == 0
    assert delivery.next_attempt_at == clock.now and delivery.payload == payload


def test_messages_roll_back_with_the_callers_transaction(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    webhook, _ = webhooks.create(TENANT, URL)
    payload = event_payload(finished_job(), COMPLETED, clock.now)
    with (
        pytest.raises(RuntimeError, match="the job's transaction failed"),
        Session(engine) as session,
        session.begin(),
    ):
        session.add(WatcherStateRow(key="job-state", value="done", updated_at=clock.now))
        enqueue_event(session, tenant=TENANT, event_type=COMPLETED, payload=payload, now=clock.now)
        raise RuntimeError("the job's transaction failed")
    assert webhooks.deliveries(TENANT, webhook.id) == []
    with Session(engine) as session:
        assert session.get(WatcherStateRow, "job-state") is None


def test_only_enabled_subscribed_webhooks_of_the_tenant_get_messages(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    everything, _ = webhooks.create(TENANT, URL)
    failures_only, _ = webhooks.create(TENANT, URL, events=["preread.failed"])
    disabled, _ = webhooks.create(TENANT, URL)
    webhooks.disable(TENANT, disabled.id)
    other, _ = webhooks.create(OTHER_TENANT, URL)
    assert queue(engine, clock) == 1
    assert queue(engine, clock, event="preread.failed") == 2
    assert sorted(d.event_type for d in webhooks.deliveries(TENANT, everything.id)) == [
        COMPLETED,
        "preread.failed",
    ]
    assert [d.event_type for d in webhooks.deliveries(TENANT, failures_only.id)] == [
        "preread.failed"
    ]
    assert webhooks.deliveries(TENANT, disabled.id) == []
    assert webhooks.deliveries(OTHER_TENANT, other.id) == []
    assert queue(engine, clock, tenant="no-such-tenant") == 0


def test_unknown_event_types_are_refused(engine: Engine, clock: FakeClock) -> None:
    with (
        pytest.raises(WebhookError, match=r"unknown event type 'preread\.started'"),
        Session(engine) as session,
    ):
        enqueue_event(
            session, tenant=TENANT, event_type="preread.started", payload={}, now=clock.now
        )


# --- claims and attempts ------------------------------------------------------------------------


def test_claims_take_due_messages_oldest_first_for_a_lease(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    webhook, secret = webhooks.create(TENANT, URL)
    queue(engine, clock)
    clock.advance(10)
    queue(engine, clock)
    first, second = sorted(webhooks.deliveries(TENANT, webhook.id), key=lambda d: d.created_at)
    claims = webhooks.claim_due(clock.now, 10, lease_s=60)
    assert [c.delivery.id for c in claims] == [first.id, second.id]
    assert claims[0].url == URL and claims[0].secret == secret
    assert secret not in repr(claims[0]) and URL not in repr(claims[0])
    assert webhooks.claim_due(clock.now, 10, lease_s=60) == []  # held
    assert len(webhooks.claim_due(clock.now + timedelta(seconds=60), 1, lease_s=60)) == 1
    assert webhooks.claim_due(clock.now - timedelta(seconds=1), 10, lease_s=60) == []


def test_attempts_retry_give_up_and_redeliver(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    webhooks.create(TENANT, URL)
    queue(engine, clock)
    [claim] = webhooks.claim_due(clock.now, 10, 60)
    later = clock.now + timedelta(seconds=5)
    retry = webhooks.record_attempt(
        claim.delivery.id,
        ok=False,
        status=500,
        error="HTTP 500",
        now=clock.now,
        next_attempt_at=later,
    )
    assert (retry.state, retry.attempts, retry.next_attempt_at, retry.last_status) == (
        DeliveryState.PENDING,
        1,
        later,
        500,
    )
    with pytest.raises(DeliveryStateError, match="is pending: only a failed one"):
        webhooks.redeliver(TENANT, claim.delivery.id)
    failed = webhooks.record_attempt(
        claim.delivery.id, ok=False, status=None, error="x" * 900, now=later, next_attempt_at=None
    )
    assert (
        failed.state is DeliveryState.FAILED
        and failed.attempts == 2
        and failed.next_attempt_at is None
    )
    assert failed.last_error == "x" * 500
    clock.advance(3600)
    again = webhooks.redeliver(TENANT, claim.delivery.id)
    assert (again.state, again.attempts, again.next_attempt_at) == (
        DeliveryState.PENDING,
        0,
        clock.now,
    )
    with pytest.raises(DeliveryStateError, match="is pending: only a failed one"):
        webhooks.redeliver(TENANT, claim.delivery.id)
    done = webhooks.record_attempt(
        claim.delivery.id, ok=True, status=204, error=None, now=clock.now, next_attempt_at=None
    )
    assert (done.state, done.delivered_at, done.last_error, done.next_attempt_at) == (
        DeliveryState.DELIVERED,
        clock.now,
        None,
        None,
    )
    late = webhooks.record_attempt(
        claim.delivery.id, ok=False, status=500, error="late", now=clock.now, next_attempt_at=later
    )
    assert late == done  # a deliverer whose lease ran out cannot undo a delivery
    with pytest.raises(DeliveryStateError, match="is delivered"):
        webhooks.redeliver(TENANT, claim.delivery.id)


def test_disabling_fails_pending_messages_and_stops_claims(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    webhook, _ = webhooks.create(TENANT, URL)
    queue(engine, clock)
    disabled = webhooks.disable(TENANT, webhook.id)
    assert disabled.disabled_at == clock.now and not disabled.enabled
    [delivery] = webhooks.deliveries(TENANT, webhook.id)
    assert delivery.state is DeliveryState.FAILED and delivery.last_error == "webhook disabled"
    assert webhooks.claim_due(clock.now, 10, 60) == []
    with pytest.raises(DeliveryStateError, match="is disabled"):
        webhooks.redeliver(TENANT, delivery.id)


def test_concurrent_claims_never_take_the_same_message(
    webhooks: WebhookStore, engine: Engine, clock: FakeClock
) -> None:
    webhooks.create(TENANT, URL)
    for _ in range(30):
        queue(engine, clock)
    start = threading.Barrier(4)
    taken: list[list[str]] = [[] for _ in range(4)]

    def claimer(index: int) -> None:
        store = WebhookStore(engine, clock=clock)
        start.wait()
        while claims := store.claim_due(clock.now, 2, lease_s=300):
            taken[index].extend(c.delivery.id for c in claims)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [delivery_id for ids in taken for delivery_id in ids]
    assert len(every) == len(set(every)) == 30


# --- the payload --------------------------------------------------------------------------------


def test_payload_says_what_finished_and_nothing_about_the_patient(clock: FakeClock) -> None:
    job = finished_job(
        state=JobState.FAILED,
        reason="PatientName DOE^JANE (PatientID 12345678) has no CT series",
        reason_code="no_eligible_series",
        result={
            "findings": [{"label": "nodule"}],
            "patient": {"name": "DOE^JANE", "id": "12345678"},
        },
    )
    payload = event_payload(job, "preread.failed", clock.now)
    assert payload == {
        "type": "preread.failed",
        "timestamp": "2025-03-01T08:00:00Z",
        "data": {
            "job_id": job.id,
            "study_instance_uid": job.study_instance_uid,
            "model": {"id": "lung-nodules", "version": "1.2.0"},
            "state": "failed",
            "findings": 1,
            "lung_rads_category": None,
            "reason_code": "no_eligible_series",
            "links": {
                "job": f"/api/v1/jobs/{job.id}",
                "report": f"/api/v1/studies/{job.study_instance_uid}/report",
            },
        },
    }
    text = json.dumps(payload)
    for identifier in ("DOE", "JANE", "12345678", "patient", "Patient"):
        assert identifier not in text


def test_payload_carries_the_exam_lung_rads_category_only(clock: FakeClock) -> None:
    rads = {"category": "4A", "rule": "solid-baseline-8-15", "nodules": [{"reason": "12 mm"}]}
    job = finished_job(result={"findings": [{"label": 1}], "lung_rads": rads})
    data = event_payload(job, "preread.completed", clock.now)["data"]
    assert data["lung_rads_category"] == "4A"
    assert "solid-baseline" not in json.dumps(data)  # the category, not the reasoning
    undetermined = finished_job(result={"findings": [], "lung_rads": {"category": None}})
    assert (
        event_payload(undetermined, "preread.completed", clock.now)["data"]["lung_rads_category"]
        is None
    )


def test_payload_findings_are_null_without_a_result(clock: FakeClock) -> None:
    job = finished_job(state=JobState.NOT_APPLICABLE, result=None, findings_count=None)
    assert event_payload(job, "preread.not_applicable", clock.now)["data"]["findings"] is None
