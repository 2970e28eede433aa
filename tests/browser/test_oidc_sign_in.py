"""Signing in through the hospital's identity provider in a real browser: Chromium presses
"Sign in with …" on PreRead's sign-in page, types into the real OpenID provider's sign-in form
(panva's oidc-provider, started by :func:`tests.oidc.conftest.running_provider`), consents, and
comes back to PreRead signed in as the tenant and role its claims map to; a person whose claims
give no role ends on PreRead's refusal page, not signed in.

PreRead is the embedded :class:`~preread.service.Service` (its own private Orthanc, SQLite),
configured with ``PREREAD_OIDC_*`` as a deployment is, served by uvicorn on a loopback socket
bound before the provider starts: the provider registers that origin's callback, and PreRead
derives the same URL from the request (``PREREAD_OIDC_REDIRECT_URI`` unset). The provider's
own pages may log what they like; PreRead's pages must log no error and no CSP refusal.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from pydantic import SecretStr

from preread.api.server import server_config
from preread.service import Service
from preread.settings import Settings
from preread.ui.csrf import SESSION_COOKIE
from tests.browser.conftest import PageLog
from tests.grant_support import clinical_preread
from tests.oidc.conftest import (
    ACCOUNTS,
    CLIENT_ID,
    CLIENT_SECRET,
    PROVIDER_NAME,
    RULES,
    Provider,
    running_provider,
)
from tests.pipeline.conftest import MODELS_DIR

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

TENANT = RULES.tenants[ACCOUNTS["ada"]["hospital"]]  # hosp-a: the tenant ada's claims map to
START_TIMEOUT_S = 15.0
SIGN_IN_BUTTON = f"Sign in with {PROVIDER_NAME}"
FORBIDDEN = re.compile(r"the server responded with a status of 403 \(Forbidden\)$")


@dataclass
class OidcSite:
    """PreRead served on a loopback port, signing in through :attr:`provider`."""

    base_url: str
    provider: Provider
    service: Service

    def url(self, path: str) -> str:
        return self.base_url + path


def _settings(tmp: Path, issuer: str) -> Settings:
    """The service's settings, its sign-in through ``issuer`` as ``PREREAD_OIDC_*`` say."""
    return Settings(
        data_dir=tmp / "data",
        models_dir=MODELS_DIR,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=SecretStr(CLIENT_SECRET),
        oidc_provider_name=PROVIDER_NAME,
        oidc_tenant_claim=RULES.tenant_claim or "",
        oidc_tenants=dict(RULES.tenants),
        oidc_role_claim=RULES.role_claim,
        oidc_roles={value: role.value for value, role in RULES.roles.items()},
    )


@pytest.fixture(scope="module")
def oidc_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcSite]:
    tmp = tmp_path_factory.mktemp("oidc-browser")
    # PreRead's port first: the provider registers its callback URL when it starts
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    (tmp / "provider").mkdir()
    with (
        listener,
        running_provider(tmp / "provider", f"{base_url}/ui/oidc/callback") as provider,
        Service(_settings(tmp, provider.issuer)) as service,
    ):
        service.grants.create(clinical_preread("tests", tenant=TENANT))  # the worklist's
        config = server_config(service.app(), service.settings, host="127.0.0.1", port=0)
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name="preread-oidc", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield OidcSite(base_url, provider, service)
        finally:
            server.should_exit = True
            thread.join(timeout=15)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A new browser context: no cookies, neither PreRead's nor the provider's."""
    opened = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield opened
    finally:
        opened.close()


def _watched(page: Page, origin: str) -> PageLog:
    """What PreRead's pages (at ``origin``) say: their console messages, uncaught errors and
    answered requests; the provider's pages are left out (their own scripts, their own CSP)."""
    log = PageLog()

    def ours(url: str) -> bool:
        return url.startswith(origin + "/")

    def console(message: ConsoleMessage) -> None:
        if ours(str(message.location.get("url") or page.url)):
            log.on_console(message)

    def error(exc: Any) -> None:
        if ours(page.url):
            log.on_error(exc)

    def answered(response: Any) -> None:
        url = str(response.url)
        if ours(url):
            log.requests.append(f"{response.request.method} {url[len(origin) :]} {response.status}")

    page.on("console", console)
    page.on("pageerror", error)
    page.on("response", answered)
    return log


def _through_the_provider(page: Page, site: OidcSite, login: str) -> None:
    """From PreRead's sign-in page through the provider's sign-in form (as ``login``, any
    password) and, when it asks, its consent form, until the browser is back at PreRead."""
    page.goto(site.url("/ui/login"))
    with page.expect_navigation(url=re.compile(re.escape(site.provider.issuer) + "/interaction/")):
        page.get_by_role("button", name=SIGN_IN_BUTTON).click()
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password: the development form takes any")
    back_at_preread = re.compile(re.escape(site.base_url) + "/")
    with page.expect_navigation():
        page.click("button[type=submit]")
    if not back_at_preread.match(page.url):  # the provider asks this new browser to consent
        assert page.locator("input[name=prompt]").get_attribute("value") == "consent", page.url
        with page.expect_navigation(url=back_at_preread):
            page.click("button[type=submit]")


def test_a_radiologist_signs_in_through_the_provider_and_sees_the_worklist(
    oidc_site: OidcSite, context: BrowserContext, artifacts: Path
) -> None:
    site = oidc_site
    page = context.new_page()
    log = _watched(page, site.base_url)
    _through_the_provider(page, site, "ada")

    assert page.url == site.url("/ui/"), log.requests
    assert [r for r in log.requests if r.startswith("GET /ui/ ")] == ["GET /ui/ 200"]
    assert any(r.startswith("GET /ui/oidc/callback?") and r.endswith(" 303") for r in log.requests)
    ada = ACCOUNTS["ada"]
    header = page.locator("header form.signout span")
    assert header.inner_text() == f"{ada['name']} ({TENANT}, radiologist)"
    assert page.locator("h1").inner_text() == "Worklist"
    assert page.locator("#worklist").is_visible()
    cookies = {c["name"]: c for c in context.cookies(site.base_url)}
    assert cookies[SESSION_COOKIE]["httpOnly"] and "preread_oidc" not in cookies
    page.screenshot(path=str(artifacts / "worklist-after-oidc-sign-in.png"), full_page=True)
    log.assert_clean()


def test_a_person_without_a_preread_role_ends_on_the_refusal_page_not_signed_in(
    oidc_site: OidcSite, context: BrowserContext, artifacts: Path
) -> None:
    site = oidc_site
    page = context.new_page()
    log = _watched(page, site.base_url)
    _through_the_provider(page, site, "nobody")  # groups: cardiology, which PreRead maps to none

    assert page.url.startswith(site.url("/ui/oidc/callback?")), page.url
    assert page.locator("h1").inner_text() == f"Sign-in with {PROVIDER_NAME} failed"
    refusal = page.locator("#sign-in-error")
    assert "has no PreRead role" in refusal.inner_text()
    assert page.locator("header form.signout").count() == 0
    page.screenshot(path=str(artifacts / "refused-without-a-role.png"), full_page=True)
    assert SESSION_COOKIE not in {c["name"] for c in context.cookies(site.base_url)}

    page.get_by_role("link", name="Back to the sign-in page").click()
    page.wait_for_url(re.compile(re.escape(site.url("/ui/login"))))
    page.goto(site.url("/ui/"))  # still nobody signed in: the worklist sends to sign in
    assert page.url.startswith(site.url("/ui/login")), page.url
    refused = [r for r in log.requests if r.endswith(" 403")]
    assert len(refused) == 1 and refused[0].startswith("GET /ui/oidc/callback?"), log.requests
    # Chromium reports the refusal page's own 403 as a console error: that one, and only once
    assert len([m for m in log.console_errors if FORBIDDEN.search(m)]) == 1, log.console
    log.assert_clean(allowed=FORBIDDEN)
