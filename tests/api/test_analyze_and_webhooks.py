"""Analysis on request (Idempotency-Key) through the real watcher over a folder of DICOM, and
the tenant's webhook management: registration refuses what webhooks may not reach, and the
deliveries list shows coarse results only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path

import httpx

from preread.domain import ModelRef
from preread.settings import Settings
from preread.store import JobState
from preread.watcher import Watcher
from preread.webhooks import Deliverer, DestinationPolicy
from tests.api.conftest import Api, finding
from tests.webhooks.conftest import Receiver
from tests.webhooks.fake_dns import PUBLIC, FakeDns
from tests.webhooks.test_addresses import ATTACKS, attacker_dns
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

MODEL = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)


def _watcher(api: Api, dispatched: list[str]) -> Watcher:
    assert api.services.source is not None
    return Watcher(
        api.services.source,
        api.store,
        [MODEL],
        dispatched.append,
        tenant_of=lambda _aet: "hosp-a",  # a folder has no sender: one tenant
        audit=api.grants.audit,
    )


def test_analyze_is_idempotent_and_retries_failed_jobs(api: Api) -> None:
    files = write_phantom_study(generate_phantom(3, matrix=48, max_slices=12), api.folder)
    uid = files.study_instance_uid
    dispatched: list[str] = []
    watcher = _watcher(api, dispatched)
    watcher.reconcile()  # the watcher records the study for hosp-a and queues its job
    (job_id,) = dispatched
    api.services.analyze = watcher.analyze
    a = api.token("hosp-a", "studies:analyze reports:read")
    url = f"/api/v1/studies/{uid}/analyze"

    first = api.client.post(url, headers={**a, "Idempotency-Key": "k-1"})
    assert first.status_code == 202, first.text
    assert [j["id"] for j in first.json()["jobs"]] == [job_id]
    assert first.json()["jobs"][0]["state"] == "queued"
    assert dispatched == [job_id]  # the same images: no new job

    # the job fails; a retried request with the same key replays the first answer
    owner = "w"
    assert api.store.claim(job_id, owner, 60) is not None
    api.store.finish_failed(job_id, owner, "series X unreadable", "unreadable_series")
    replay = api.client.post(url, headers={**a, "Idempotency-Key": "k-1"})
    assert replay.status_code == 202 and replay.json() == first.json()
    assert api.store.get(job_id).state is JobState.FAILED

    # a new key: the failed job goes back to the queue
    again = api.client.post(url, headers={**a, "Idempotency-Key": "k-2"})
    assert again.status_code == 202
    assert again.json()["jobs"][0]["state"] == "queued"
    assert dispatched == [job_id, job_id]

    # the same key for another request is refused
    other = write_phantom_study(generate_phantom(4, matrix=48, max_slices=12), api.folder)
    watcher.reconcile()
    clash = api.client.post(
        f"/api/v1/studies/{other.study_instance_uid}/analyze",
        headers={**a, "Idempotency-Key": "k-1"},
    )
    assert clash.status_code == 422 and "different request" in clash.json()["detail"]
    needs_scope = api.client.post(url, headers=api.token("hosp-a", "reports:read"))
    assert needs_scope.status_code == 403


def test_webhook_management(api: Api, tmp_path: Path) -> None:
    w = api.token("hosp-a", "webhooks:manage")
    created = api.client.post(
        "/api/v1/webhooks",
        json={"url": "https://ris.example.org/preread", "events": ["preread.completed"]},
        headers=w,
    )
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["preread.completed"]
    listed = api.client.get("/api/v1/webhooks", headers=w).json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    for bad, why in (
        ({"url": "ftp://x.example.org/"}, "http"),
        ({"url": "https://user:pw@x.example.org/"}, "password"),
        ({"url": "https://x.example.org/", "events": ["nope"]}, "nope"),
    ):
        answer = api.client.post("/api/v1/webhooks", json=bad, headers=w)
        assert answer.status_code == 422 and why in answer.text, (bad, answer.text)

    # a finished job of the tenant puts a message in the outbox (delivered by the deliverer)
    facts, job = api.study("hosp-a", (finding(1, "left", 10.0),))
    deliveries = api.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=w).json()
    assert len(deliveries) == 1
    payload = deliveries[0]["payload"]
    assert payload["type"] == "preread.completed" and payload["data"]["job_id"] == job.id
    assert facts.patient_id not in str(payload) and "DOE" not in str(payload)
    # another tenant's job does not
    api.study("hosp-b", (finding(1, "left", 10.0),))
    assert len(api.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=w).json()) == 1

    disabled = api.client.post(f"/api/v1/webhooks/{hook['id']}/disable", headers=w).json()
    assert disabled["enabled"] is False
    assert api.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=w).status_code == 204
    assert api.client.get(f"/api/v1/webhooks/{hook['id']}", headers=w).status_code == 404


# --- server-side request forgery (issue 12, finding 1) ------------------------------------------


def test_webhook_urls_of_the_probe_are_refused_at_registration(api: Api) -> None:
    api.services.webhook_policy = DestinationPolicy.from_settings(
        api.services.settings, resolve=attacker_dns()
    )
    w = api.token("hosp-a", "webhooks:manage")
    for url, why in ATTACKS:
        answer = api.client.post("/api/v1/webhooks", json={"url": url}, headers=w)
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["detail"] == f"the webhook URL's host resolves to {why}", url
    unknown = api.client.post("/api/v1/webhooks", json={"url": "https://x.invalid/"}, headers=w)
    assert unknown.status_code == 422 and "does not resolve" in unknown.text
    assert api.client.get("/api/v1/webhooks", headers=w).json() == []


def test_rebinding_is_refused_and_clients_see_only_coarse_delivery_results(api: Api) -> None:
    dns = FakeDns({"hooks.example.net": [PUBLIC]})
    api.services.webhook_policy = DestinationPolicy(resolve=dns)
    receiver = Receiver()
    receiver.start()
    w = api.token("hosp-a", "webhooks:manage")
    url = f"http://hooks.example.net:{receiver.port}/hook"
    try:
        hook = api.client.post("/api/v1/webhooks", json={"url": url}, headers=w).json()
        deliveries = f"/api/v1/webhooks/{hook['id']}/deliveries"
        api.study("hosp-a", (finding(1, "left", 10.0),))  # a finished job: one message queued
        dns.zones["hooks.example.net"] = ["127.0.0.1"]  # the name now points at loopback
        with httpx.Client(trust_env=False) as http:
            strict = Deliverer(api.services.webhooks, http, policy=api.services.destinations)
            assert strict.run_once().retrying == 1
            assert receiver.received == []  # nothing connected to 127.0.0.1
            seen = [_last(api, deliveries, w)]
            # the operator allows loopback: the receiver answers 500, 302, then is gone, then ok
            allowed = Deliverer(
                api.services.webhooks,
                http,
                policy=DestinationPolicy.from_settings(
                    Settings(webhook_allowed_networks=[ip_network("127.0.0.0/8")]), resolve=dns
                ),
            )
            later = datetime.now(UTC)
            for step in ("error", "redirect", "stop", "ok"):
                if step == "stop":
                    receiver.stop()  # connection refused
                elif step == "ok":
                    receiver.start()
                receiver.mode = "ok" if step == "stop" else step
                later += timedelta(hours=1)  # past the retry schedule's wait
                allowed.run_once(later)
                seen.append(_last(api, deliveries, w))
    finally:
        receiver.stop()
    assert seen == [
        ("refused-address", None),
        ("rejected", "5xx"),
        ("rejected", "3xx"),
        ("unreachable", None),
        ("delivered", None),
    ]
    assert len(receiver.received) == 3  # 500, 302 (not followed), 200


def _last(api: Api, deliveries: str, headers: dict[str, str]) -> tuple[str, str | None]:
    """The one delivery's coarse result, after checking nothing else about the attempt shows."""
    answer = api.client.get(deliveries, headers=headers)
    [delivery] = answer.json()
    assert "last_error" not in delivery and "last_status" not in delivery
    for leak in ("Errno", "Connection refused", "ConnectError", "not known", "127.0.0.1", "HTTP "):
        assert leak not in answer.text, leak
    return delivery["last_result"], delivery["last_status_class"]
