"""Signing in through a real OpenID provider, the whole way as a browser goes: PreRead's
sign-in page, the provider's sign-in and consent forms, the redirect back; the account made on
the first sign-in (keyed by issuer and subject) and updated after; every way a callback is
refused, with the page the person sees and the ``auth.failed`` record."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from preread.accounts import Role
from preread.audit import AuditAction, AuditRecord
from preread.ui.csrf import SESSION_COOKIE
from preread.ui.oidc import BROWSER_COOKIE
from tests.accounts.conftest import PASSWORD, Site, login_token
from tests.oidc.conftest import (
    PROVIDER_NAME,
    REDIRECT_URI,
    Provider,
    WallClock,
    at_provider,
    back_at_preread,
    begin,
    sign_in_through,
)
from tests.store.conftest import BACKENDS


def _session(answer: object) -> str | None:
    """The session token ``answer`` sets, if any."""
    for header in answer.headers.get_list("set-cookie"):  # type: ignore[attr-defined]
        name, _, rest = str(header).partition("=")
        if name == SESSION_COOKIE:
            return rest.split(";")[0]
    return None


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


def _failures(records: list[AuditRecord]) -> list[tuple[str, str]]:
    return [
        (r.event.actor, str(r.event.detail["reason"]))
        for r in records
        if r.event.action is AuditAction.AUTH_FAILED
    ]


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_signing_in_makes_the_account_then_keeps_it_up_to_date_by_subject(
    oidc_site: Site, people: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site = oidc_site
    browser = site.browser("10.1.1.1")
    page = browser.get("/ui/login?next=/ui/%3Fpage%3D2")
    assert f"Sign in with {PROVIDER_NAME}" in page.text
    assert 'action="/ui/login/oidc"' in page.text
    mark = site.audit_mark()
    started = begin(browser, "/ui/?page=2")
    assert started.status_code == 303
    binding = next(
        h for h in started.headers.get_list("set-cookie") if h.startswith(f"{BROWSER_COOKIE}=")
    )
    assert {"httponly", "samesite=lax", "path=/"} <= {
        p.strip().lower() for p in binding.split(";")[1:]
    }
    asked = parse_qs(urlsplit(started.headers["location"]).query)
    assert started.headers["location"].startswith(people.issuer + "/")
    assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) == 43
    assert asked["redirect_uri"] == [REDIRECT_URI] and asked["response_type"] == ["code"]
    assert len(asked["state"][0]) >= 43 and len(asked["nonce"][0]) >= 43
    assert "openid" in asked["scope"][0].split()

    callback = at_provider(started.headers["location"], "ada")
    answer = back_at_preread(browser, callback)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/?page=2"
    token = _session(answer)
    assert token is not None
    active = site.sessions.resolve(token)
    assert active is not None and active.method == "oidc"
    reader = active.reader
    assert (reader.username, reader.tenant, reader.role) == (
        "ada.lovelace",
        "hosp-a",
        Role.RADIOLOGIST,
    )
    assert reader.display_name == "Dr Ada Lovelace"
    user = site.accounts.get(reader.user_id)
    assert not user.has_password  # signs in only through the provider
    records = site.audit_since(mark)
    assert [(r.event.action, r.event.actor) for r in records] == [
        (AuditAction.USER_CREATE, "user:ada.lovelace"),
        (AuditAction.USER_SIGN_IN, "user:ada.lovelace"),
    ]
    assert records[0].event.detail["identity_provider"] == people.issuer
    assert records[0].event.detail["subject"] == "ada"
    assert records[0].event.detail["local_password"] is False
    assert records[1].event.detail["method"] == "oidc"
    code = parse_qs(urlsplit(callback).query)["code"][0]
    # PreRead's own logs (httpx logs the tests' browsers' URLs, which carry the code and
    # state; PreRead's requests to the provider put neither in a URL)
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "/ui/oidc/callback" in logged
    for secret in (code, asked["state"][0], asked["nonce"][0], token):
        assert secret not in logged
        assert secret not in str([r.event for r in records])
    home = browser.get("/ui/")
    assert home.status_code == 200 and "Dr Ada Lovelace" in home.text

    # at the provider she is renamed and made an administrator: the same account (found by
    # issuer and subject, not by the username claim), its role brought up to date
    people.set_account("ada", preferred_username="ada.l", groups=["radiology", "pacs-admins"])
    mark = site.audit_mark()
    again = site.browser("10.1.1.2")
    answer = back_at_preread(again, sign_in_through(again, "ada"))
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    second = site.sessions.resolve(_session(answer) or "")
    assert second is not None and second.reader.user_id == reader.user_id
    assert (second.reader.username, second.reader.role) == ("ada.lovelace", Role.ADMIN)
    change = next(
        r.event for r in site.audit_since(mark) if r.event.action is not AuditAction.REPORT_READ
    )
    assert change.action is AuditAction.USER_CHANGE
    assert change.detail["changes"] == {"role": ["radiologist", "admin"]}


def test_a_local_account_of_the_same_name_is_never_taken_over(
    oidc_site: Site, people: Provider
) -> None:
    site = oidc_site
    local = site.user("ada.lovelace", tenant="hosp-b", role=Role.ADMIN)
    browser = site.browser()
    answer = back_at_preread(browser, sign_in_through(browser, "ada"))
    assert answer.status_code == 303
    active = site.sessions.resolve(_session(answer) or "")
    assert active is not None and active.reader.user_id != local.id
    assert active.reader.username.startswith("ada.lovelace-")
    assert (active.reader.tenant, active.reader.role) == ("hosp-a", Role.RADIOLOGIST)
    assert site.accounts.authenticate("ada.lovelace", PASSWORD).id == local.id  # untouched


def test_a_tampered_state_or_another_browser_is_refused_and_a_state_is_used_once(
    oidc_site: Site,
) -> None:
    site = oidc_site
    browser = site.browser("10.1.1.1")
    callback = sign_in_through(browser, "ada")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    mark = site.audit_mark()

    tampered = back_at_preread(browser, _with_query(callback, state=state[:-2] + "xx"))
    assert tampered.status_code == 400
    assert "used already or is not PreRead" in tampered.text
    assert 'href="/ui/login"' in tampered.text and _session(tampered) is None

    # the genuine answer, carried to another browser (a forged sign-in): refused, and spent
    elsewhere = site.browser("203.0.113.9")
    login_token(elsewhere)
    forged = back_at_preread(elsewhere, callback)
    assert forged.status_code == 400 and _session(forged) is None
    assert "start again" in forged.text

    late = back_at_preread(browser, callback)
    assert late.status_code == 400 and _session(late) is None
    site.services.guard.flush(everything=True)  # a source's later failures: one summary
    assert _failures(site.audit_until(mark, 3)) == [
        ("unknown-user", "oidc: unknown or used state"),
        ("unknown-user", "oidc: state begun in another browser"),
        ("unknown-user", "oidc: unknown or used state"),
    ]
    assert site.services.oidc is not None
    assert site.services.oidc.accounts.find(site.services.oidc.config.issuer, "ada") is None


def test_an_answer_naming_another_issuer_is_refused(oidc_site: Site, people: Provider) -> None:
    # RFC 9207: the authorization response's iss tells which provider sent it (mix-up attacks)
    browser = oidc_site.browser()
    callback = sign_in_through(browser, "ada")
    mixed = back_at_preread(browser, _with_query(callback, iss=people.issuers["other"]))
    assert mixed.status_code == 400 and _session(mixed) is None
    assert "came from another identity provider" in mixed.text


def test_starting_sign_ins_is_limited_per_source_address(oidc_site: Site) -> None:
    oidc_site.services.guard.per_minute = 2
    browser = oidc_site.browser()
    assert [begin(browser).status_code for _ in range(3)] == [303, 303, 429]
    assert int(begin(browser).headers["retry-after"]) > 0
    assert begin(oidc_site.browser("10.9.9.9")).status_code == 303  # another address


def test_a_sign_in_that_took_too_long_is_refused(oidc_site: Site, wall: WallClock) -> None:
    browser = oidc_site.browser()
    callback = sign_in_through(browser, "ada")
    wall.advance(601)
    late = back_at_preread(browser, callback)
    assert late.status_code == 400 and "took too long" in late.text


def test_a_replayed_answer_or_code_is_refused(oidc_site: Site) -> None:
    site = oidc_site
    browser = site.browser()
    callback = sign_in_through(browser, "ada")
    assert back_at_preread(browser, callback).status_code == 303
    mark = site.audit_mark()

    replayed = back_at_preread(browser, callback)
    assert replayed.status_code == 400 and "used already" in replayed.text

    # the used code (seen in a log, say) with a sign-in of the thief's own: PreRead exchanges
    # it, the provider refuses it
    thief = site.browser("203.0.113.9")
    fresh = begin(thief)
    state = parse_qs(urlsplit(fresh.headers["location"]).query)["state"][0]
    reused = back_at_preread(thief, _with_query(callback, state=state))
    assert reused.status_code == 403 and _session(reused) is None
    assert f"{PROVIDER_NAME} refused the sign-in (invalid_grant)" in reused.text
    reasons = [reason for _, reason in _failures(site.audit_until(mark, 2))]
    assert reasons[0] == "oidc: unknown or used state"
    assert reasons[1].startswith("oidc: token endpoint: invalid_grant")


def test_an_id_token_with_another_nonce_is_refused(oidc_site: Site) -> None:
    site = oidc_site
    browser = site.browser()
    started = begin(browser)
    # the authorization request altered on its way (the browser's, or an attacker's): the
    # provider puts the altered nonce into the ID token
    altered = _with_query(started.headers["location"], nonce="a-nonce-of-someone-else-0123")
    mark = site.audit_mark()
    answer = back_at_preread(browser, at_provider(altered, "ada"))
    assert answer.status_code == 403 and _session(answer) is None
    assert "could not be verified" in answer.text
    assert _failures(site.audit_until(mark, 1)) == [
        ("unknown-user", "oidc: id token: nonce is not this sign-in's")
    ]


@pytest.mark.parametrize(
    ("login", "shown", "reason"),
    [
        ("nobody", "has no PreRead role", "oidc: no PreRead role in claim 'groups'"),
        ("drifter", "does not name one PreRead tenant", "oidc: tenant claim 'hospital' has 0"),
    ],
)
def test_a_person_without_a_mapped_role_or_tenant_is_refused_with_a_clear_page(
    oidc_site: Site, login: str, shown: str, reason: str
) -> None:
    site = oidc_site
    browser = site.browser()
    mark = site.audit_mark()
    answer = back_at_preread(browser, sign_in_through(browser, login))
    assert answer.status_code == 403 and _session(answer) is None
    assert f"Sign-in with {PROVIDER_NAME} failed" in answer.text and shown in answer.text
    ((_, recorded),) = _failures(site.audit_until(mark, 1))
    assert recorded.startswith(reason)
    assert all(u.username != login for u in site.accounts.list())


def test_a_disabled_account_stays_refused(oidc_site: Site) -> None:
    site = oidc_site
    browser = site.browser()
    assert back_at_preread(browser, sign_in_through(browser, "grace")).status_code == 303
    site.accounts.disable("grace", by="cli:admin")
    assert browser.get("/ui/").status_code == 303  # the session ended with the account
    mark = site.audit_mark()
    answer = back_at_preread(browser, sign_in_through(browser, "grace"))
    assert answer.status_code == 403 and _session(answer) is None
    assert "Your PreRead account (grace) is disabled" in answer.text
    assert _failures(site.audit_until(mark, 1)) == [("user:grace", "oidc: account disabled")]
    assert site.accounts.by_username("grace").disabled  # nothing was changed
    site.accounts.enable("grace", by="cli:admin")
    assert back_at_preread(browser, sign_in_through(browser, "grace")).status_code == 303


def test_the_person_cancelling_at_the_provider_is_told_so(oidc_site: Site) -> None:
    browser = oidc_site.browser()
    started = begin(browser)
    answer = back_at_preread(browser, at_provider(started.headers["location"], "ada", abort=True))
    assert answer.status_code == 403
    assert f"{PROVIDER_NAME} did not sign you in" in answer.text


def test_starting_needs_the_sign_in_page_and_a_configured_provider(
    oidc_site: Site, people: Provider
) -> None:
    site = oidc_site
    browser = site.browser()
    assert browser.post("/ui/login/oidc", data={"next": "/ui/"}).status_code == 403  # no token
    browser.get("/ui/login")
    assert begin(browser, "https://evil.example/").headers["location"].startswith(people.issuer)
    site.services.oidc = None
    page = browser.get("/ui/login")
    assert page.status_code == 200 and "Sign in with" not in page.text
    assert begin(browser).status_code == 404
    assert browser.get("/ui/oidc/callback?state=x&code=y").status_code == 404
