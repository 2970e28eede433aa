"""CSRF: the sign-in form's double-submit cookie, the session-bound token of every other unsafe
request (form field or ``X-CSRF-Token`` header), and the app refusing to start with a form route
that lacks the check."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import iter_route_contexts

from preread.accounts import Reader
from preread.audit import AuditAction
from preread.ui import XhrReader, install, page_reader, xhr_reader
from preread.ui.csrf import LOGIN_COOKIE, SESSION_COOKIE, require_csrf, unprotected_routes
from tests.accounts.conftest import PASSWORD, Site, login_token, page_token, sign_in


def test_the_sign_in_form_needs_its_cookie_and_the_same_token(site: Site) -> None:
    site.user()
    mark = site.audit_mark()
    attacker = site.browser("10.6.6.6")
    forged_token = login_token(attacker)  # the attacker's own, valid, pair
    victim = site.browser("10.1.1.1")  # never opened the sign-in page: no cookie
    refused = victim.post(
        "/ui/login", data={"csrf_token": forged_token, "username": "ada", "password": PASSWORD}
    )
    assert refused.status_code == 403 and "sign-in cookie is missing" in refused.text
    login_token(victim)
    wrong = sign_in(victim, token=forged_token)
    assert wrong.status_code == 403 and "does not match its cookie" in wrong.text
    victim.cookies.set(LOGIN_COOKIE, forged_token)  # cookie and field agree, but empty field:
    missing = victim.post("/ui/login", data={"username": "ada", "password": PASSWORD})
    assert missing.status_code == 403 and "carries no CSRF token" in missing.text
    assert SESSION_COOKIE not in victim.cookies
    assert site.audit_since(mark) == []  # no sign-in, and no password was even checked


def test_unsafe_requests_need_this_sessions_token(site: Site) -> None:
    site.user()
    site.user("bob", display_name="Dr Bob")
    ada = site.browser("10.1.1.1")
    sign_in(ada)
    bob = site.browser("10.1.1.2")
    sign_in(bob, "bob")
    bobs_token = page_token(bob.get("/ui/"))
    for data, headers, problem in [
        ({}, {}, "carries no CSRF token"),  # a cross-site form post
        ({"csrf_token": "x" * 43}, {}, "not this session's"),
        ({"csrf_token": bobs_token}, {}, "not this session's"),  # another session's token
        ({}, {"X-CSRF-Token": bobs_token}, "not this session's"),
    ]:
        refused = ada.post("/ui/logout", data=data, headers=headers)
        assert refused.status_code == 403, refused.text
        assert problem in refused.json()["detail"]
        assert refused.json()["detail"].startswith("CSRF check failed")
    assert ada.get("/ui/").status_code == 200  # still signed in
    token = page_token(ada.get("/ui/"))
    assert ada.post("/ui/logout", headers={"X-CSRF-Token": token}).status_code == 303
    assert ada.get("/ui/").status_code == 303
    stranger = site.browser("10.1.1.3")
    refused = stranger.post("/ui/logout", data={"csrf_token": bobs_token})
    assert refused.status_code == 403 and "no session cookie" in refused.text


def test_json_routes_answer_401_and_know_the_reader(site: Site) -> None:
    router = APIRouter(prefix="/ui/api", dependencies=[Depends(require_csrf)])

    @router.get("/me")
    def me(reader: XhrReader) -> dict[str, str]:
        return {"username": reader.username, "tenant": reader.tenant, "role": reader.role.value}

    @router.post("/ping")
    def ping(reader: XhrReader) -> dict[str, str]:
        return {"pong": reader.username}

    site.app.include_router(router)  # type: ignore[attr-defined]
    site.user()
    browser = site.browser()
    answer = browser.get("/ui/api/me")
    assert answer.status_code == 401 and answer.json() == {"detail": "sign-in required"}
    assert answer.headers["www-authenticate"].startswith("Session")
    sign_in(browser)
    assert browser.get("/ui/api/me").json() == {
        "username": "ada",
        "tenant": "hosp-a",
        "role": "radiologist",
    }
    assert browser.post("/ui/api/ping").status_code == 403
    token = page_token(browser.get("/ui/"))
    assert browser.post("/ui/api/ping", headers={"X-CSRF-Token": token}).json() == {"pong": "ada"}
    records = site.audit_since(0)
    assert not any(r.event.action is AuditAction.AUTH_FAILED for r in records)


def test_every_unsafe_route_of_the_app_is_csrf_checked(site: Site) -> None:
    routes = site.app.routes  # type: ignore[attr-defined]
    assert unprotected_routes(routes, cookie_auth=(page_reader, xhr_reader)) == []
    unsafe = {
        f"{method} {context.path}"
        for context in iter_route_contexts(routes)
        for method in (context.methods or ()) if method in {"POST", "PUT", "PATCH", "DELETE"}
    }  # fmt: skip
    assert {"POST /ui/login", "POST /ui/logout"} <= unsafe  # the walk sees the pages' routes


def test_an_app_with_an_unchecked_form_route_is_refused() -> None:
    app = FastAPI()

    @app.post("/ui/forgot-the-check")
    def unchecked() -> None: ...

    with pytest.raises(RuntimeError, match="POST /ui/forgot-the-check"):
        install(app)
    elsewhere = FastAPI()

    @elsewhere.post("/viewer/annotate")
    def signed_in_by_cookie(reader: Annotated[Reader, Depends(page_reader)]) -> None: ...

    with pytest.raises(RuntimeError, match="POST /viewer/annotate"):
        install(elsewhere)


def test_over_https_only_the_host_prefixed_sign_in_cookie_counts(site: Site) -> None:
    """A sibling subdomain can set ``preread_login_csrf`` for this host, not ``__Host-…``."""
    site.user()
    browser = site.browser("10.1.1.8", https=True)
    token = login_token(browser)
    assert browser.cookies[f"__Host-{LOGIN_COOKIE}"] == token
    tossed = site.browser("10.1.1.8", https=True)
    tossed.cookies.set(LOGIN_COOKIE, "t" * 43)  # planted by evil.sibling.example
    refused = sign_in(tossed, token="t" * 43)
    assert refused.status_code == 403 and "sign-in cookie is missing" in refused.text
    assert sign_in(browser, token=token).status_code == 303
