"""Signing in and out through the real app: the cookie's flags, the pages, sessions ending on
an injected clock, at sign-out, when the user is disabled or their password reset; the one
failure message; ``next`` only to a path of this site; the audit trail."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest

from preread.accounts.sessions import token_hash
from preread.audit import AuditAction, Outcome
from preread.ui.csrf import LOGIN_COOKIE, SESSION_COOKIE
from tests.accounts.conftest import (
    IDLE_S,
    LIFETIME_S,
    PASSWORD,
    Site,
    login_token,
    page_token,
    sign_in,
)
from tests.store.conftest import BACKENDS


def _cookie(response: object, name: str) -> str:
    """The Set-Cookie header of ``name`` in ``response``."""
    headers = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    found = [h for h in headers if h.startswith(f"{name}=")]
    assert len(found) == 1, headers
    return str(found[0])


def _flags(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_sign_in_sets_a_hardened_session_cookie_and_shows_who_is_signed_in(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ada = site.user()
    browser = site.browser("10.1.1.1")
    away = browser.get("/ui/")
    assert away.status_code == 303 and away.headers["location"] == "/ui/login"
    form = browser.get("/ui/login")
    assert form.status_code == 200
    assert _flags(_cookie(form, LOGIN_COOKIE)) >= {"httponly", "samesite=lax", "path=/"}
    assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
    assert form.headers["x-frame-options"] == "DENY"
    assert 'autocomplete="current-password"' in form.text and '<label for="password">' in form.text
    mark = site.audit_mark()
    answer = sign_in(browser, "Ada")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    session = _cookie(answer, SESSION_COOKIE)
    flags = _flags(session)
    assert {"httponly", "samesite=lax", "path=/"} <= flags
    assert "secure" not in flags  # plain http (the next test: https)
    assert not any(f.startswith(("max-age", "expires")) for f in flags)  # ends with the browser
    assert "max-age=0" in _cookie(answer, LOGIN_COOKIE).lower()  # the sign-in token is spent
    token = session.split(";")[0].split("=", 1)[1]
    assert site.sessions.resolve(token) is not None
    home = browser.get("/ui/")
    assert home.status_code == 200
    assert "Dr Ada Lovelace" in home.text and "hosp-a" in home.text and "radiologist" in home.text
    assert home.headers["cache-control"] == "no-store"
    assert browser.get("/ui/login").headers["location"] == "/ui/"  # signed in: on to next
    records = site.audit_since(mark)
    assert [(r.event.action, r.event.actor, r.event.tenant) for r in records] == [
        (AuditAction.USER_SIGN_IN, "user:ada", "hosp-a"),
        (AuditAction.REPORT_READ, "user:ada", "hosp-a"),  # the worklist shows patients' names
    ]
    assert records[0].event.detail["user_id"] == ada.id
    assert records[0].event.detail["source"] == "10.1.1.1"
    assert records[0].event.detail["method"] == "password"
    for secret in (PASSWORD, token, token_hash(token)):
        assert secret not in caplog.text
        assert secret not in str([r.event for r in records])


def test_the_cookies_are_secure_over_https_and_when_the_setting_forces_it(site: Site) -> None:
    site.user()
    browser = site.browser("10.1.1.2", https=True)
    form = browser.get("/ui/login")
    assert "secure" in _flags(_cookie(form, f"__Host-{LOGIN_COOKIE}"))
    answer = sign_in(browser)
    assert answer.status_code == 303, answer.text
    assert "secure" in _flags(_cookie(answer, SESSION_COOKIE))
    assert browser.get("/ui/").status_code == 200
    site.services.settings.session_cookie_secure = True
    plain = site.browser("10.1.1.3")  # http, yet Secure cookies
    token = login_token(plain)
    name = f"__Host-{LOGIN_COOKIE}"
    assert plain.cookies[name] == token  # set Secure: the browser would send it over https only
    answer = plain.post(
        "/ui/login",
        data={"csrf_token": token, "username": "ada", "password": PASSWORD},
        headers={"Cookie": f"{name}={token}"},
    )
    assert answer.status_code == 303, answer.text
    assert "secure" in _flags(_cookie(answer, SESSION_COOKIE))


def _error(page: str) -> str:
    start = page.index('role="alert"')
    return page[start : page.index("</p>", start)]


def test_a_failed_sign_in_says_the_same_for_unknown_wrong_and_disabled(site: Site) -> None:
    site.user()
    site.user("bob", display_name=None)
    site.accounts.disable("bob", by="tests")
    browser = site.browser("10.1.1.4")
    mark = site.audit_mark()
    answers = {
        "unknown": sign_in(browser, "nobody"),
        "wrong": sign_in(browser, "ada", PASSWORD + "!"),
        "disabled": sign_in(browser, "bob"),
        "password in the username field": sign_in(browser, PASSWORD, ""),
    }
    assert {a.status_code for a in answers.values()} == {401}
    assert len({_error(a.text) for a in answers.values()}) == 1
    assert "wrong username or password" in answers["wrong"].text
    assert SESSION_COOKIE not in str(browser.cookies)
    assert browser.get("/ui/").status_code == 303
    records = site.audit_since(mark)
    assert {(r.event.action, r.event.outcome) for r in records} == {
        (AuditAction.AUTH_FAILED, Outcome.REFUSED)
    }
    # the first failure of each (source, actor) is recorded at once; the rest are summed up
    first = {r.event.actor: r.event.detail for r in records}
    assert set(first) == {"unknown-user", "user:ada", "user:bob"}
    assert first["user:bob"]["reason"] == "account disabled"
    assert first["user:ada"]["source"] == "10.1.1.4"
    assert site.services.guard.flush(everything=True) == 1  # written by the audit thread
    summary = [r.event for r in site.audit_until(mark, len(records) + 1)[len(records) :]]
    assert [(e.actor, e.detail["count"]) for e in summary] == [("unknown-user", 1)]
    trail = str([r.event for r in site.audit_since(mark)])
    assert PASSWORD not in trail


OFF_SITE = (
    "https://evil.example/",
    "//evil.example/ui/",
    "/\\evil.example",
    "/\t/evil.example",
    "javascript:alert(1)",
    "ui/relative",
    "/" + "a" * 2100,
)


def test_next_never_leaves_the_site(site: Site) -> None:
    site.user()
    for next_path in OFF_SITE:
        browser = site.browser()
        answer = sign_in(browser, next_path=next_path)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/", next_path


def test_next_brings_the_reader_back_where_they_were_going(site: Site) -> None:
    site.user()
    browser = site.browser()
    away = browser.get("/ui/?sort=date&page=2")
    assert away.headers["location"] == "/ui/login?next=" + quote("/ui/?sort=date&page=2", safe="")
    form = browser.get(away.headers["location"])
    assert 'name="next" value="/ui/?sort=date&amp;page=2"' in form.text
    answer = sign_in(browser, token=page_token(form), next_path="/ui/?sort=date&page=2")
    assert answer.headers["location"] == "/ui/?sort=date&page=2"
    evil = browser.get("/ui/login?next=https://evil.example/")
    assert evil.headers["location"] == "/ui/"  # signed in: on to a safe next only


def test_sessions_end_when_idle_and_at_their_lifetime(site: Site) -> None:
    site.user()
    browser = site.browser()
    assert sign_in(browser).status_code == 303
    site.clock.advance(IDLE_S - 1)
    assert browser.get("/ui/").status_code == 200
    site.clock.advance(IDLE_S)
    assert browser.get("/ui/").status_code == 303  # idle too long
    assert sign_in(browser).status_code == 303
    elapsed = 0.0
    while elapsed + IDLE_S / 2 < LIFETIME_S:
        site.clock.advance(IDLE_S / 2)
        elapsed += IDLE_S / 2
        assert browser.get("/ui/").status_code == 200
    site.clock.advance(LIFETIME_S - elapsed)
    away = browser.get("/ui/")
    assert away.status_code == 303 and away.headers["location"] == "/ui/login"


def test_sign_out_ends_the_session_on_the_server(site: Site) -> None:
    site.user()
    browser = site.browser("10.1.1.5")
    sign_in(browser)
    token = browser.cookies[SESSION_COOKIE]
    home = browser.get("/ui/")
    mark = site.audit_mark()
    answer = browser.post("/ui/logout", data={"csrf_token": page_token(home)})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    assert "max-age=0" in _cookie(answer, SESSION_COOKIE).lower()
    assert site.sessions.resolve(token) is None
    thief = site.browser("10.9.9.9")  # the old cookie, replayed elsewhere
    thief.cookies.set(SESSION_COOKIE, token)
    assert thief.get("/ui/").status_code == 303
    records = site.audit_since(mark)
    assert [(r.event.action, r.event.actor) for r in records] == [
        (AuditAction.USER_SIGN_OUT, "user:ada")
    ]


def test_disabling_or_resetting_a_user_ends_their_browser_sessions(site: Site) -> None:
    site.user()
    browser = site.browser()
    sign_in(browser)
    site.accounts.disable("ada", by="tests")
    assert browser.get("/ui/").status_code == 303
    assert sign_in(browser).status_code == 401
    site.accounts.enable("ada", by="tests")
    assert sign_in(browser).status_code == 303
    site.accounts.set_password("ada", "the new passphrase", by="tests")
    assert browser.get("/ui/").status_code == 303
    assert sign_in(browser).status_code == 401
    assert sign_in(browser, password="the new passphrase").status_code == 303


def test_a_new_sign_in_replaces_the_browsers_previous_session(site: Site) -> None:
    site.user()
    site.user("bob", tenant="hosp-b", display_name="Dr Bob")
    browser = site.browser()
    sign_in(browser)
    first = browser.cookies[SESSION_COOKIE]
    token = login_token(site.browser())  # a sign-in form opened before (in another tab)
    browser.cookies.set(LOGIN_COOKIE, token)
    assert sign_in(browser, "bob", token=token).status_code == 303
    assert site.sessions.resolve(first) is None
    assert "Dr Bob" in browser.get("/ui/").text


def test_the_stylesheet_is_served(site: Site) -> None:
    answer = site.browser().get("/ui/static/preread.css")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in answer.text
