"""Fixtures of the OpenID Connect tests: a real OpenID provider (panva's oidc-provider, OpenID
Certified, run by ``provider.mjs`` under node; pinned in this folder's package.json and
package-lock.json, installed by ``./run setup``), PreRead's app signed in to through it, and a
browser that follows the provider's pages by posting their forms.

Two providers run in one node process, sharing one signing key: ``main`` (the one PreRead is
configured with) and ``other`` (another issuer, whose tokens only their ``iss`` tells apart).
Both register PreRead's client and a second client, ``other-app``. The people at the providers
are the JSON of ``accounts.json``, which the provider reads at every look-up: a test changes a
person's claims with :meth:`Provider.set_account`. The provider's development sign-in form takes
any password; the login typed in is the person's ``sub``.

A missing node or package fails the tests (CI runs ``./run setup`` first), naming what to run.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from preread.accounts import Role
from preread.oidc import ClaimRules, OidcConfig, OidcSignIn
from tests.accounts.conftest import (
    Site,
    clock,
    db_url,
    engine,
    login_token,
    postgres_url,
    site,
)
from tests.ohif_support import node

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "provider.mjs"
PACKAGE = HERE / "node_modules" / "oidc-provider" / "package.json"
SITE = "http://testserver"  # the TestClient's origin: PreRead as the browser sees it
REDIRECT_URI = f"{SITE}/ui/oidc/callback"
CLIENT_ID = "preread"
CLIENT_SECRET = "a-client-secret-only-the-tests-know-0123456789"
OTHER_CLIENT_ID = "other-app"
OTHER_REDIRECT_URI = "http://other-app.test/callback"
PROVIDER_NAME = "St Elsewhere SSO"
START_TIMEOUT_S = 20.0
RULES = ClaimRules(
    tenant_claim="hospital",
    tenants={"St Elsewhere": "hosp-a", "Other General": "hosp-b"},
    role_claim="groups",
    roles={"radiology": Role.RADIOLOGIST, "pacs-admins": Role.ADMIN},
)
ACCOUNTS: dict[str, dict[str, Any]] = {
    "ada": {
        "preferred_username": "ada.lovelace",
        "name": "Dr Ada Lovelace",
        "hospital": "St Elsewhere",
        "groups": ["staff", "radiology"],
    },
    "grace": {
        "preferred_username": "grace",
        "name": "Dr Grace Hopper",
        "hospital": "Other General",
        "groups": ["radiology", "pacs-admins"],
    },
    "nobody": {  # a cardiologist: no PreRead group
        "preferred_username": "nobody",
        "name": "Dr No Role",
        "hospital": "St Elsewhere",
        "groups": ["cardiology"],
    },
    "drifter": {  # a radiologist whose account names no hospital
        "preferred_username": "drifter",
        "name": "Dr Drifter",
        "groups": ["radiology"],
    },
}
__all__ = ["clock", "db_url", "engine", "postgres_url", "site"]  # the accounts tests' fixtures
_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
_PROMPT = re.compile(r'name="prompt" value="([a-z]+)"')


@dataclass
class Provider:
    """The running OpenID providers."""

    issuers: dict[str, str]
    accounts_file: Path

    @property
    def issuer(self) -> str:
        """The issuer PreRead is configured with."""
        return self.issuers["main"]

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        self.accounts_file.write_text(json.dumps(accounts), encoding="utf-8")

    def set_account(self, login: str, **claims: Any) -> None:
        """Change ``login``'s claims at the provider (``None`` removes a claim)."""
        accounts = json.loads(self.accounts_file.read_text(encoding="utf-8"))
        account = {**accounts[login], **claims}
        accounts[login] = {k: v for k, v in account.items() if v is not None}
        self.set_accounts(accounts)


def _client(client_id: str, redirect_uri: str) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    }


def _ready(process: subprocess.Popen[str], log: Path) -> dict[str, str]:
    """The providers' issuers, read from the script's output until it says ready."""
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read(out: IO[str]) -> None:  # select() cannot see what the text buffer holds
        for line in out:
            lines.put(line)

    threading.Thread(target=read, args=(process.stdout,), daemon=True).start()
    issuers: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            line = ""
        if line.strip() == "ready":
            return issuers
        if line:
            found = json.loads(line)
            issuers[found["name"]] = found["issuer"]
            continue
        process.kill()
        pytest.fail(
            f"the OpenID provider did not start ({SCRIPT.name}, exit {process.wait()}): "
            f"{log.read_text(encoding='utf-8')[-2000:]}"
        )


@contextmanager
def running_provider(folder: Path, redirect_uri: str = REDIRECT_URI) -> Iterator[Provider]:
    """The OpenID providers (one node process, its files in ``folder``), PreRead's client
    registered with ``redirect_uri`` (another site's tests: its own origin's callback),
    :data:`ACCOUNTS` the people; stopped on leaving."""
    if not PACKAGE.is_file():
        pytest.fail(f"{PACKAGE.parent} is missing: run ./run setup (npm ci in {HERE})")
    accounts = folder / "accounts.json"
    config = folder / "config.json"
    config.write_text(
        json.dumps(
            {
                "providers": [{"name": "main"}, {"name": "other"}],
                "clients": [
                    _client(CLIENT_ID, redirect_uri),
                    _client(OTHER_CLIENT_ID, OTHER_REDIRECT_URI),
                ],
                "accounts": str(accounts),
            }
        ),
        encoding="utf-8",
    )
    found = Provider({}, accounts)
    found.set_accounts(ACCOUNTS)
    log = folder / "provider.log"
    with log.open("w", encoding="utf-8") as errors:
        process = subprocess.Popen(
            [node(), str(SCRIPT), str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        found.issuers = _ready(process, log)
        yield found
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the script exits when its input closes
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """The OpenID providers, one node process for the whole test session."""
    with running_provider(tmp_path_factory.mktemp("oidc-provider")) as found:
        yield found


@pytest.fixture
def people(provider: Provider) -> Provider:
    """The providers with :data:`ACCOUNTS` as they are at the start of each test."""
    provider.set_accounts(ACCOUNTS)
    return provider


class WallClock:
    """Now, moved on by :meth:`advance` (the ID tokens carry real times)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


def config_for(issuer: str, **changes: Any) -> OidcConfig:
    values: dict[str, Any] = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET),
        "rules": RULES,
        "provider_name": PROVIDER_NAME,
        **changes,
    }
    return OidcConfig(**values)


@pytest.fixture
def oidc_site(site: Site, people: Provider, wall: WallClock) -> Site:
    """The app of ``site`` with sign-in through the ``main`` provider (its sign-ins, ID token
    times and account records on ``wall``)."""
    site.services.oidc = OidcSignIn(
        config_for(people.issuer), site.engine, audit=site.accounts.audit, clock=wall
    )
    return site


def begin(browser: TestClient, next_path: str | None = None) -> httpx.Response:
    """Press "Sign in with …" on the sign-in page (opened first, for its form's token)."""
    form = {"csrf_token": login_token(browser)}
    if next_path is not None:
        form["next"] = next_path
    answer: httpx.Response = browser.post("/ui/login/oidc", data=form)
    return answer


def at_provider(url: str, login: str, *, abort: bool = False) -> str:
    """Follow the provider from its authorization ``url`` as a browser would: its sign-in form
    (as ``login``; with ``abort``, its cancel link instead), then its consent form; the URL it
    sends the browser back to (PreRead's callback, or another client's)."""
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        answer = browser.get(url)
        for _ in range(12):
            if answer.is_redirect:
                target = urljoin(str(answer.url), answer.headers["location"])
                if urlsplit(target).netloc != urlsplit(str(answer.url)).netloc:
                    return target  # off the provider: the client's redirect URI
                answer = browser.get(target)
                continue
            assert answer.status_code == 200, answer.text
            action = _FORM_ACTION.search(answer.text)
            prompt = _PROMPT.search(answer.text)
            assert action is not None and prompt is not None, answer.text
            submit = urljoin(str(answer.url), action.group(1))
            if abort:
                answer = browser.get(f"{submit}/abort")
            elif prompt.group(1) == "login":
                answer = browser.post(
                    submit, data={"prompt": "login", "login": login, "password": "any"}
                )
            else:
                answer = browser.post(submit, data={"prompt": "consent"})
        raise AssertionError(f"the provider did not send the browser back: {answer.text[:500]}")


def back_at_preread(browser: TestClient, url: str) -> httpx.Response:
    """The provider's redirect back, followed in PreRead's browser."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == SITE, url
    answer: httpx.Response = browser.get(f"{parts.path}?{parts.query}")
    return answer


def sign_in_through(browser: TestClient, login: str, next_path: str | None = None) -> str:
    """The whole way through the provider for ``login``: the callback URL it sends back."""
    started = begin(browser, next_path)
    assert started.status_code == 303, started.text
    return at_provider(started.headers["location"], login)
