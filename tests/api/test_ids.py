"""Malformed identifiers never reach the database (PostgreSQL refuses a NUL byte in text: it
used to answer 503 "the job store is unavailable" with an ERROR log).

Every path parameter of every route, found in the app's route table, gets malformed values
(a NUL byte, path tricks, overlong): 404, no 5xx, no ERROR log. ``client_id`` at
``/oauth/token`` (form and Basic): 401 ``invalid_client``. Ids in query parameters and the
grant routes' text fields: 422. A NUL in any field of any JSON body: 422 naming the field
(every body model is a :class:`~preread.api.bodies.RequestBody`, checked on the route table).
"""

from __future__ import annotations

import base64
import enum
import logging
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from preread.api.bodies import RequestBody, has_nul
from preread.api.ids import PATH_IDS, REPORT_FORMATS, path_param_names
from preread.api.routes.reports import Format
from tests.api.conftest import Api, finding

VALID = {
    "study_uid": "1.2.840.99.1",
    "job_id": "00000000-0000-0000-0000-000000000000",
    "grant_id": "00000000-0000-0000-0000-000000000000",
    "webhook_id": "00000000-0000-0000-0000-000000000000",
    "delivery_id": "msg_" + "0" * 32,
    "model_id": "lung-nodule",
    "version": "1.0.0",
    "series_uid": "1.2.840.99.2",  # the DICOMweb proxy's (preread.dicomweb)
    "instance_uid": "1.2.840.99.3",
    "frames": "1",
    "tag_path": "7fe00010",
    "fmt": "json",  # the report route's format (preread.api.routes.reports)
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
        # every {name} of the path, declared to FastAPI or read by the route itself
        params = [name for name in path_param_names(route) if name in PATH_IDS]
        fixed = {
            p.name: str(next(iter(p.field_info.annotation)).value)
            for p in route.dependant.path_params
            if isinstance(p.field_info.annotation, type)
            and issubclass(p.field_info.annotation, enum.Enum)
        }
        for param in params:
            for bad in MALFORMED:
                values = {**VALID, **fixed, param: bad}
                path = str(context.path)
                for name, value in values.items():
                    for template in (f"{{{name}}}", f"{{{name}:path}}"):
                        path = path.replace(template, value if name == param else quote(value))
                for method in (route.methods or set()) - {"HEAD"}:
                    answer = api.client.request(method, path, headers=headers)
                    where = f"{method} {path[:120]}: {answer.status_code} {answer.text[:200]}"
                    assert answer.status_code == 404, where
                    assert f"{param} is not" in answer.json()["detail"], where
                    tried += 1
    assert tried >= 60, tried
    assert not errors.records, [r.getMessage() for r in errors.records]


def test_the_report_route_declares_what_it_reads_itself(api: Api) -> None:
    """``GET .../report/{fmt}`` reads its parameters from the request (FastAPI's handling of
    declared ones was most of its CPU time): the OpenAPI document still declares them and the
    OAuth2 scheme, an unknown format is a 404 like any malformed path id, a malformed
    ``model_id`` a 422 naming it, and a well-formed request reaches the enforcement point."""
    assert [f.value for f in Format] == list(REPORT_FORMATS)
    doc = api.client.get("/openapi.json").json()
    operation = doc["paths"]["/api/v1/studies/{study_uid}/report/{fmt}"]["get"]
    declared = {(p["in"], p["name"]): p["schema"] for p in operation["parameters"]}
    assert set(declared) == {("path", "study_uid"), ("path", "fmt"), ("query", "model_id")}
    assert declared[("path", "fmt")]["enum"] == list(REPORT_FORMATS)
    assert operation["security"] == [{"OAuth2ClientCredentials": []}]
    assert "OAuth2ClientCredentials" in doc["components"]["securitySchemes"]
    headers = api.token("hosp-a", "reports:read")
    facts, _ = api.study("hosp-a", (finding(1, "left", 11.0),))
    base = f"/api/v1/studies/{facts.study_instance_uid}/report"
    unknown = api.client.get(f"{base}/xml", headers=headers)
    assert unknown.status_code == 404 and "fmt is not a report format" in unknown.text
    bad = api.client.get(f"{base}/json?model_id=Lung%20Nodule", headers=headers)
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"][0]["loc"] == ["query", "model_id"]
    wrong_scope = api.client.get(f"{base}/json", headers=api.token("hosp-a", "models:read"))
    assert wrong_scope.status_code == 403 and "reports:read" in wrong_scope.text
    ok = api.client.get(f"{base}/json?model_id=lung-nodule", headers=headers)
    assert ok.status_code == 200 and ok.json()["study_instance_uid"] == facts.study_instance_uid


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


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_nul_in_any_body_field_is_422_naming_it(
    api: Api, errors: pytest.LogCaptureFixture
) -> None:
    # a webhook's description with a NUL used to reach PostgreSQL: 503 and an ERROR log
    a = api.token("hosp-a", "admin grants:manage")
    hook = {"url": "https://example.org/hook", "description": "RIS"}
    grant_body = {
        "tenant": "hosp-a",
        "purpose": "research",
        "valid_from": "2025-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
        "legal_basis": "IRB 1",
    }
    cases: list[tuple[str, dict[str, object], str]] = [
        ("/api/v1/webhooks", {**hook, "description": "R\x00IS"}, "description"),
        ("/api/v1/webhooks", {**hook, "url": "https://example.org/h\x00"}, "url"),
        ("/api/v1/webhooks", {**hook, "events": ["preread.completed\x00"]}, "events"),
        ("/api/v1/grants", {**grant_body, "sender_aets": ["HOSP\x00"]}, "sender_aets"),
        ("/api/v1/grants", {**grant_body, "modalities": ["CT", "\x00"]}, "modalities"),
        ("/api/v1/grants", {**grant_body, "study_uids": ["1.2\x00"]}, "study_uids"),
        ("/api/v1/grants", {**grant_body, "study_date_to": "2025\x000101"}, "study_date_to"),
        ("/api/v1/grants", {**grant_body, "purpose": "research\x00"}, "purpose"),
        ("/api/v1/grants", {**grant_body, "valid_to": "2030\x00"}, "valid_to"),
    ]
    for path, body, name in cases:
        answer = api.client.post(path, json=body, headers=a)
        assert answer.status_code == 422, (path, name, answer.text)
        (problem,) = answer.json()["detail"]
        assert problem["loc"] == ["body", name], (name, problem)
        assert f"{name} contains a NUL byte" in problem["msg"], (name, problem)
    assert api.client.get("/api/v1/webhooks", headers=a).json() == []  # nothing stored
    made = api.client.post("/api/v1/webhooks", json=hook, headers=a)
    assert made.status_code == 201, made.text  # the same body without the NUL is fine
    assert not errors.records, [r.getMessage() for r in errors.records]


FORM_FIELDS = {"/oauth/token"}
"""Routes whose body is form fields (checked by the route: client_id by its format, the
others against fixed values), not a JSON model."""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the route table alone
def test_every_json_body_refuses_nul(api: Api) -> None:
    checked = 0
    for context in iter_route_contexts(api.client.app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.dependant.body_params:
            continue
        if str(context.path) in FORM_FIELDS:
            continue
        for param in route.dependant.body_params:
            kind = param.field_info.annotation
            assert isinstance(kind, type) and issubclass(kind, RequestBody), (
                f"{context.path}: body {param.name} is {kind!r}, not a RequestBody "
                "(preread.api.bodies): a NUL byte in it would reach the database"
            )
            checked += 1
    assert checked >= 3, checked
    assert has_nul({"a": [{"b\x00": 1}]}) and has_nul([[["\x00"]]]) and not has_nul({"a": [1]})
