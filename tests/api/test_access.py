"""The one enforcement point (``preread.api.access``), tested from the app's route table.

Every route the app has is discovered from ``app.routes``; a route that is not on the short
allow-list below (each entry with its reason) must, for a study of a tenant in each bad grant
state — no grant, an expired one, a revoked one, one for another purpose — answer 403 and leave
an ``access.refused`` record naming the route; and with a grant in force it must leave a
success record naming the route and the study. A new route with a ``{study_uid}``-style
parameter that skips the check fails here without anyone listing it.

The routes people use signed in by cookie (the pages, ``/ui/…``, and whatever else asks for
the reader) are walked the same way as a signed-in radiologist of each case's tenant (session
cookie and CSRF header); a reader's purpose of use is always clinical-preread,
so the case of a token declaring another purpose is theirs as the case of a tenant whose only
grant is for another purpose. The DICOMweb proxy (``/dicomweb``) records a study's access once
per reader session and window (``preread.dicomweb.ledger``): each of its requests here comes
from a new session of the case's reader.

Then the tenant check itself: another tenant's study, even one in the view cache, is answered
exactly like a missing one, and through the same calls (cache spy and SQL at the engine).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydicom.uid import generate_uid
from sqlalchemy import event
from starlette.routing import BaseRoute, Route

from preread.accounts import Role
from preread.audit import AuditLog, AuditRecord, Outcome
from preread.grants import GrantSpec, Purpose
from preread.ui import page_reader, xhr_reader
from preread.ui.csrf import HEADER, SESSION_COOKIE, session_token_for_csrf
from tests.api.conftest import Api, finding, grant

_PLATFORM = "the authorization platform's own records (scope grants:manage), no study data"
_HOOKS = "the tenant's webhook settings and outbox: ids only, no study content"
_OPS = "operations: no patient data (counts and states only)"
_DOCS = "the API's own documentation"
_VIEWER = "static files (the OHIF Viewer, preread.api.viewer), no study data"
_SIGN_IN = "people sign in and out (preread.ui): accounts and sessions, no study data"
ALLOWED: dict[str, str] = {
    "/oauth/token": "issues tokens; no study data",
    "/oauth/jwks.json": "public keys",
    "/healthz": _OPS,
    "/readyz": _OPS,
    "/metrics": _OPS,
    "/api/v1/models": "model cards: no study data",
    "/api/v1/models/{model_id}/{version}": "model cards: no study data",
    "/api/v1/grants": _PLATFORM,
    "/api/v1/grants/{grant_id}": _PLATFORM,
    "/api/v1/grants/{grant_id}/revoke": _PLATFORM,
    "/api/v1/webhooks": _HOOKS,
    "/api/v1/webhooks/{webhook_id}": _HOOKS,
    "/api/v1/webhooks/{webhook_id}/disable": _HOOKS,
    "/api/v1/webhooks/{webhook_id}/deliveries": _HOOKS,
    "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver": _HOOKS,
    "/openapi.json": _DOCS,
    "/docs": _DOCS,
    "/docs/oauth2-redirect": _DOCS,
    "/redoc": _DOCS,
    "/viewer": _VIEWER,
    "/viewer/{path:path}": _VIEWER,
    "/ui/monitoring": "model versions' figures per acquisition group (preread.monitoring): no "
    "study, no patient data",
    "/ui/login": _SIGN_IN,
    "/ui/logout": _SIGN_IN,
    "/ui/login/oidc": _SIGN_IN,  # OpenID Connect (preread.ui.oidc)
    "/ui/oidc/callback": _SIGN_IN,
    "/ui/static/preread.css": "the pages' stylesheet",
    "/ui/static/review.js": "the review page's script",
}
BODIES: dict[str, dict[str, Any]] = {
    # a FHIR DiagnosticReport of an exam no study has (preread.finalreports.fhir): the receipt
    # is audited without a study
    "/api/v1/final-reports": {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "CT chest"},
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
                    ]
                },
                "value": "WALK-1",
            }
        ],
        "conclusion": "No pulmonary nodules.",
    },
}
"""The JSON body a route needs to do its work (others get none)."""
STUDY_PARAMS = ("study_uid", "job_id")
OTHER_UIDS = ("series_uid", "instance_uid")  # the DICOMweb proxy's paths below a study
SAMPLES = {"frames": "1", "tag_path": "7fe00010", "fmt": "json"}  # formats: preread.api.ids
NOW = datetime.now(UTC)


@dataclass(frozen=True)
class Case:
    """A study and a token whose purpose its grants do or do not cover."""

    name: str
    headers: dict[str, str]
    study_uid: str
    job_id: str
    tenant: str
    reader_headers: dict[str, str]
    """A signed-in radiologist of ``tenant``: the session cookie and the CSRF header."""
    for_readers: bool = True
    """Whether the case exists for a signed-in reader (whose purpose is clinical-preread)."""


def _reader(api: Api, tenant: str) -> dict[str, str]:
    accounts, sessions = api.services.accounts, api.services.sessions
    assert accounts is not None and sessions is not None
    user = accounts.create(tenant, f"reader-{len(api.created)}", Role.RADIOLOGIST, password=None,
                           by="tests")  # fmt: skip
    token = sessions.start(user.id, method="test").token
    return {"Cookie": f"{SESSION_COOKIE}={token}", HEADER: session_token_for_csrf(token)}


def _case(api: Api, name: str, tenant: str, purpose: str = "clinical-preread") -> Case:
    facts, job = api.study(tenant, (finding(1, "left", 9.0),))
    return Case(name, api.token(tenant, "admin", purpose=purpose), facts.study_instance_uid,
                job.id, tenant, _reader(api, tenant),
                for_readers=purpose == "clinical-preread")  # fmt: skip


def _cases(api: Api) -> tuple[list[Case], Case]:
    expired = GrantSpec(
        tenant="walk-expired",
        purpose=Purpose.CLINICAL_PREREAD,
        valid_from=NOW - timedelta(days=2),
        valid_to=NOW - timedelta(days=1),
        legal_basis="test contract",
        issued_by="tests",
    )
    api.grants.create(expired)
    revoked = grant(api.grants, "walk-revoked")
    api.grants.revoke(revoked.id, by="tests", reason="withdrawn")
    grant(api.grants, "walk-purpose", Purpose.QUALITY_REVIEW)
    bad = [
        _case(api, "no grant", "walk-none"),
        _case(api, "expired", "walk-expired"),
        _case(api, "revoked", "walk-revoked"),
        _case(api, "wrong purpose", "hosp-a", purpose="quality-review"),
        _case(api, "grant for another purpose", "walk-purpose"),
    ]
    return bad, _case(api, "in force", "hosp-a")


def _routes(routes: list[BaseRoute]) -> Iterator[tuple[str, str, APIRoute | Route]]:
    """(method, path, route) of every route of the app, included routers walked."""
    for context in iter_route_contexts(routes):
        route = context.original_route
        assert isinstance(route, APIRoute | Route), f"unexpected route {route!r}: teach the test"
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, str(context.path), route


def _by_cookie(route: APIRoute | Route) -> bool:
    """Whether the route is signed in by the session cookie (asks for the reader)."""
    if not isinstance(route, APIRoute):
        return False
    readers = (page_reader, xhr_reader)

    def calls(dependant: Dependant) -> Iterator[object]:
        for dependency in dependant.dependencies:
            yield dependency.call
            yield from calls(dependency)

    return any(call in readers for call in calls(route.dependant))


def _url(path: str, route: APIRoute | Route, case: Case) -> str:
    # every {name} of the path, declared to FastAPI or read by the route itself
    declared = (
        {p.name: p.field_info.annotation for p in route.dependant.path_params}
        if isinstance(route, APIRoute)
        else {}
    )
    for name in route.param_convertors:
        kind = declared.get(name)
        if name == "study_uid":
            value = case.study_uid
        elif name == "job_id":
            value = case.job_id
        elif name in OTHER_UIDS:
            value = str(generate_uid())
        elif name in SAMPLES:
            value = SAMPLES[name]
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            value = str(next(iter(kind)).value)
        else:
            pytest.fail(f"{path}: no value for {{{name}}}: teach this test its format")
        path = path.replace(f"{{{name}}}", quote(value, safe=""))
        path = path.replace(f"{{{name}:path}}", quote(value, safe=""))
    return path


def _new_session(api: Api, reader_headers: dict[str, str]) -> dict[str, str]:
    """The same reader as ``reader_headers``, in a session of its own."""
    sessions = api.services.sessions
    assert sessions is not None
    found = sessions.resolve(reader_headers["Cookie"].removeprefix(f"{SESSION_COOKIE}="))
    assert found is not None
    token = sessions.start(found.reader.user_id, method="test").token
    return {"Cookie": f"{SESSION_COOKIE}={token}", HEADER: session_token_for_csrf(token)}


def _new_records(api: Api, seen: int) -> list[AuditRecord]:
    return list(AuditLog(api.store.engine).records())[seen:]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_every_route_that_touches_a_study_checks_its_grant_and_audits(api: Api) -> None:
    app = api.client.app
    routes = list(_routes(app.routes))  # type: ignore[attr-defined]
    paths = {path for _, path, _ in routes}
    assert not set(ALLOWED) - paths, "allow-list entries of routes that no longer exist"
    for path in ALLOWED:
        assert not any(f"{{{p}}}" in path for p in STUDY_PARAMS), f"{path} names a study"
    bad, good = _cases(api)
    checked = []
    for method, path, route in routes:
        if path in ALLOWED:
            continue
        checked.append(f"{method} {path}")
        name = route.name
        page = _by_cookie(route)
        for case in [*bad, good]:
            if page and not case.for_readers:
                continue
            seen = len(list(AuditLog(api.store.engine).records()))
            headers = case.reader_headers if page else case.headers
            if path.startswith("/dicomweb"):
                headers = _new_session(api, headers)
            answer = api.client.request(
                method, _url(path, route, case), headers=headers, json=BODIES.get(path)
            )
            new = _new_records(api, seen)
            mine = [r.event for r in new if r.event.detail.get("route") == name]
            where = f"{method} {path} with {case.name}: {answer.status_code} {answer.text[:200]}"
            touches_study = any(f"{{{p}}}" in path for p in STUDY_PARAMS)
            want_uid = case.study_uid if touches_study else None
            if case is good:
                assert answer.status_code not in (401, 403, 404), where
                assert [(e.outcome, e.tenant, e.study_instance_uid) for e in mine] == [
                    (Outcome.SUCCESS, case.tenant, want_uid)
                ], where
                assert mine[0].detail.get("grant_id") or not touches_study, where
            else:
                assert answer.status_code == 403, where
                assert [(e.outcome, e.tenant, e.study_instance_uid) for e in mine] == [
                    (Outcome.REFUSED, case.tenant, want_uid)
                ], where
    # the walk reached the study routes (a sanity check on the discovery, not a list to keep)
    assert "POST /api/v1/studies/{study_uid}/analyze" in checked
    assert "GET /api/v1/studies/{study_uid}/reviews" in checked
    assert "POST /api/v1/final-reports" in checked and "GET /api/v1/discrepancies" in checked
    assert "GET /ui/studies/{study_uid}" in checked and "GET /ui/" in checked
    frames = "/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}/frames"
    assert "GET /dicomweb/studies" in checked and f"GET {frames}/{{frames}}" in checked
    assert len(checked) >= 7, checked


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_foreign_study_takes_the_path_of_a_missing_one_even_when_cached(api: Api) -> None:
    """Structural, not timed: the same answer, and the same calls in the same order — the
    view cache is asked only under the caller's tenant, the database statement is scoped by
    it, and the render cache is never reached."""
    facts, _ = api.study("hosp-b", (finding(1, "right", 9.0),))
    theirs = facts.study_instance_uid
    missing = "1.2.826.0.1.3680043.99.1"
    b, a = api.token("hosp-b"), api.token("hosp-a")
    views, renders = api.services.views, api.services.renders
    assert views is not None and views.size > 0 and renders is not None
    calls: list[tuple[str, Any]] = []
    real_get, real_peek = views.get, renders.peek

    def view_get(key: tuple[str, str, str | None]) -> object | None:
        found = real_get(key)
        calls.append(("views.get", (key, found is not None)))
        return found

    def render_peek(key: Hashable) -> bytes | None:
        calls.append(("renders.peek", key))
        return real_peek(key)

    def sql(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM studies" in statement:  # the tenant lookups (not audit, clients, grants)
            calls.append(("sql", (statement, params)))

    views.get = view_get  # type: ignore[method-assign]
    renders.peek = render_peek  # type: ignore[method-assign]
    event.listen(api.store.engine, "before_cursor_execute", sql)
    try:
        url = "/api/v1/studies/{}/report/json"
        for _ in range(2):  # B reads its study: the second time from memory
            assert api.client.get(url.format(theirs), headers=b).status_code == 200
        assert ("views.get", (("hosp-b", theirs, None), True)) in calls
        traces = []
        answers = []
        for uid in (theirs, missing):
            calls.clear()
            answers.append(api.client.get(url.format(uid), headers=a))
            traces.append([(kind, repr(detail).replace(uid, "UID")) for kind, detail in calls])
            for kind, detail in calls:
                assert kind != "renders.peek", "the render cache was reached"
                if kind == "views.get":
                    assert detail == (("hosp-a", uid, None), False)
                else:
                    assert "studies.tenant" in detail[0] and "hosp-a" in repr(detail[1])
    finally:
        event.remove(api.store.engine, "before_cursor_execute", sql)
        views.get = real_get  # type: ignore[method-assign]
        renders.peek = real_peek  # type: ignore[method-assign]
    foreign, absent = answers
    assert foreign.status_code == absent.status_code == 404
    assert foreign.content == absent.content
    assert theirs not in foreign.text
    assert dict(foreign.headers) == dict(absent.headers)
    assert traces[0] == traces[1]
    assert [kind for kind, _ in traces[0]] == ["views.get", "sql"]  # tenant-keyed, then scoped
