"""Malformed identifiers never reach the database (PostgreSQL refuses a NUL byte in text: it
used to answer 503 "the job store is unavailable" with an ERROR log).

Every path parameter of every route, found in the app's route table, gets malformed values
(a NUL byte, path tricks, overlong): 404, no 5xx, no ERROR log. ``client_id`` at
``/oauth/token`` (form and Basic): 401 ``invalid_client``. Ids in query parameters and the
grant routes' text fields: 422.
"""

from __future__ import annotations

import base64
import enum
import logging
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from preread.api.ids import PATH_IDS
from tests.api.conftest import Api

VALID = {
    "study_uid": "1.2.840.99.1",
    "job_id": "00000000-0000-0000-0000-000000000000",
    "grant_id": "00000000-0000-0000-0000-000000000000",
    "webhook_id": "00000000-0000-0000-0000-000000000000",
    "delivery_id": "msg_" + "0" * 32,
    "model_id": "lung-nodule",
    "version": "1.0.0",
}
MALFORMED = ["%00", "1%002", "1..2", "1" * 300, "%C3%A9", "%20"]  # as sent (URL-encoded)


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.ERROR)
    return caplog


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_malformed_path_ids_are_404_on_every_route(
    api: Api, errors: pytest.LogCaptureFixture
) -> None:
    headers = api.token("hosp-a", "admin grants:manage")
    assert set(VALID) == set(PATH_IDS), "a new id format: give this test a valid value"
    tried = 0
    for context in iter_route_contexts(api.client.app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        params = [p for p in route.dependant.path_params if p.name in PATH_IDS]
        fixed = {
            p.name: str(next(iter(p.field_info.annotation)).value)
            for p in route.dependant.path_params
            if isinstance(p.field_info.annotation, type)
            and issubclass(p.field_info.annotation, enum.Enum)
        }
        for param in params:
            for bad in MALFORMED:
                values = {**VALID, **fixed, param.name: bad}
                path = str(context.path)
                for name, value in values.items():
                    path = path.replace(
                        f"{{{name}}}", value if name == param.name else quote(value)
                    )
                for method in (route.methods or set()) - {"HEAD"}:
                    answer = api.client.request(method, path, headers=headers)
                    where = f"{method} {path[:120]}: {answer.status_code} {answer.text[:200]}"
                    assert answer.status_code == 404, where
                    assert f"{param.name} is not" in answer.json()["detail"], where
                    tried += 1
    assert tried >= 60, tried
    assert not errors.records, [r.getMessage() for r in errors.records]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_malformed_client_ids_and_query_ids_never_reach_the_database(
    api: Api, errors: pytest.LogCaptureFixture
) -> None:
    for client_id in ("prc_\x00", "\x00", "a" * 65, "prc_é", "prc x"):
        by_form = api.client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "s"},
        )
        basic = base64.b64encode(f"{client_id}:s".encode()).decode()
        by_basic = api.client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        for answer in (by_form, by_basic):
            assert answer.status_code == 401, (client_id, answer.text)
            assert answer.json()["error"] == "invalid_client"
    a = api.token("hosp-a", "admin grants:manage")
    for url in (
        "/api/v1/studies?model_id=%00",
        "/api/v1/studies/1.2.3/report?model_id=lung%00",
        "/api/v1/studies/1.2.3/preread?model_id=x%00",
        "/api/v1/grants?tenant=hosp%00",
    ):
        answer = api.client.get(url, headers=a)
        assert answer.status_code == 422, (url, answer.text)
    grant_body = {
        "tenant": "hosp-a",
        "purpose": "research",
        "valid_from": "2025-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
        "legal_basis": "IRB 1",
    }
    for bad in ({"legal_basis": "IRB\x00 1"}, {"tenant": "hosp\x00"}):
        answer = api.client.post("/api/v1/grants", json={**grant_body, **bad}, headers=a)
        assert answer.status_code == 422, (bad, answer.text)
    made = api.client.post("/api/v1/grants", json=grant_body, headers=a).json()
    revoke = api.client.post(
        f"/api/v1/grants/{made['id']}/revoke", json={"reason": "x\x00"}, headers=a
    )
    assert revoke.status_code == 422, revoke.text
    facts, _ = api.study("hosp-a")
    analyze = api.client.post(
        f"/api/v1/studies/{facts.study_instance_uid}/analyze",
        headers={**a, "Idempotency-Key": "k\x00"},
    )
    assert analyze.status_code == 422, analyze.text  # refused before the key is stored
    assert not errors.records, [r.getMessage() for r in errors.records]
