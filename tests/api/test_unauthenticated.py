"""Unauthenticated traffic: garbage bearer tokens no longer grow the audit trail linearly (200
used to give 200 append-only records without a source); each source is limited (429 after its
burst) and its failures are recorded with the source and a count."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from preread.api.unauthenticated import UnauthenticatedGuard
from preread.audit import AuditAction, AuditEvent, AuditLog
from preread.security import FailureThrottle
from tests.api.conftest import Api

BURST = 60


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def _failures(api: Api, seen: int) -> list[AuditEvent]:
    records = list(AuditLog(api.store.engine).records())[seen:]
    return [r.event for r in records if r.event.action is AuditAction.AUTH_FAILED]


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "the audit writer did not commit in time"
        time.sleep(0.02)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_garbage_tokens_are_limited_per_source_and_audited_in_aggregate(api: Api) -> None:
    clock = Clock()
    guard = UnauthenticatedGuard(api.services.auditor, BURST, clock=clock)
    api.services.unauthenticated = guard
    valid = api.token("hosp-a")
    seen = len(list(AuditLog(api.store.engine).records()))
    statuses = [
        api.client.get(
            "/api/v1/studies", headers={"Authorization": f"Bearer garbage-{n}"}
        ).status_code
        for n in range(200)
    ]
    assert statuses == [401] * BURST + [429] * (200 - BURST)
    limited = api.client.get("/api/v1/studies", headers={"Authorization": "Bearer x"})
    assert int(limited.headers["retry-after"]) >= 1
    assert api.client.get("/api/v1/studies").status_code == 429  # no credentials: limited too
    # a valid token from the same source is not refused; another source is not limited
    assert api.client.get("/api/v1/studies", headers=valid).status_code == 200
    elsewhere = TestClient(api.client.app, client=("203.0.113.9", 50000))
    assert (
        elsewhere.get("/api/v1/studies", headers={"Authorization": "Bearer y"}).status_code == 401
    )

    now = _failures(api, seen)  # the first failure of each source's window, at once
    assert [(e.detail["source"], e.detail["count"]) for e in now] == [
        ("testclient", 1),
        ("203.0.113.9", 1),
    ]
    clock.now += 61  # the window closes: one record for the rest of it
    assert guard.flush() == 1
    _eventually(lambda: len(_failures(api, seen)) == 3)
    records = _failures(api, seen)
    assert all(e.actor == "unauthenticated" and e.detail["source"] for e in records)
    from_test = [e.detail for e in records if e.detail["source"] == "testclient"]
    assert sum(_int(d["count"]) for d in from_test) == 201  # every failure, in 2 records
    assert sum(_int(d["rate_limited"]) for d in from_test) == 201 - BURST
    summary = from_test[-1]
    assert summary["reason"] == "the access token is not a JWT"
    assert str(summary["first_at"]) <= str(summary["last_at"])
    assert guard.flush(everything=True) == 0  # nothing left open


def test_the_guard_stays_bounded_however_many_sources() -> None:
    submitted: list[AuditEvent] = []

    class Writer:
        def submit(self, event: AuditEvent) -> object:
            submitted.append(event)

            class Done:
                def add_done_callback(self, _: object) -> None:
                    pass

            return Done()

    clock = Clock()
    guard = UnauthenticatedGuard(Writer(), 5, max_sources=10, clock=clock)  # type: ignore[arg-type]
    firsts = [guard.failed(f"198.51.100.{n}", "unauthenticated", "bad", rate_limited=False)
              for n in range(100)]  # fmt: skip
    assert sum(e is not None for e in firsts) == 11  # 10 sources, then one shared "other"
    assert guard.flush(everything=True) == 1 and submitted[0].detail["source"] == "other"
    assert submitted[0].detail["count"] == 89
    for n in range(100):
        guard.take(f"198.51.100.{n}")
    assert len(guard._buckets) <= 11
    clock.now += 60
    guard.flush()
    assert not guard._buckets and not guard._windows


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # in memory: one backend suffices
def test_failed_token_requests_are_audited_in_aggregate_per_client_and_source(api: Api) -> None:
    # each wrong secret at /oauth/token used to be one audit record (and 429s none)
    clock = Clock()
    guard = UnauthenticatedGuard(api.services.auditor, BURST, clock=clock)
    api.services.unauthenticated = guard
    api.services.token_failures = FailureThrottle(per_client_and_source=3, per_source=100)
    client, _ = api.services.clients.create("hosp-a", "ris", ["reports:read"], 60)
    seen = len(list(AuditLog(api.store.engine).records()))
    attacker = TestClient(api.client.app, client=("198.51.100.7", 40000))

    def guess(who: TestClient, client_id: str) -> int:
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"}
        return int(who.post("/oauth/token", data=form).status_code)

    assert [guess(attacker, client.client_id) for _ in range(10)] == [401] * 3 + [429] * 7
    assert guess(api.client, client.client_id) == 401  # another source: a window of its own
    assert guess(attacker, "prc_unknown") == 401  # another client id: its own too
    now = _failures(api, seen)  # the first of each (client, source) window, at once
    assert [(e.actor, e.detail["source"], e.detail["count"]) for e in now] == [
        (f"client:{client.client_id}", "198.51.100.7", 1),
        (f"client:{client.client_id}", "testclient", 1),
        ("client:prc_unknown", "198.51.100.7", 1),
    ]
    clock.now += 61
    assert guard.flush() == 1  # the other 9 guesses: one record
    _eventually(lambda: len(_failures(api, seen)) == 4)
    summary = _failures(api, seen)[-1]
    assert summary.actor == f"client:{client.client_id}"
    assert summary.detail["source"] == "198.51.100.7"
    assert summary.detail["count"] == 9 and summary.detail["rate_limited"] == 7
    assert summary.detail["reasons"] == {"invalid_client": 2, "too many failed attempts": 7}
