"""Fixtures of the accounts and sign-in tests: the real stores on the job store's databases
(SQLite, and PostgreSQL as in tests/store/conftest.py), and the real app from
``create_app`` with clocks the tests move (sessions: a datetime clock; the sign-in throttle: a
monotonic one), browsers as TestClients each with its own cookie jar and source address."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete

from preread.accounts import AccountStore, Role, SessionPolicy, SessionStore, User
from preread.api.app import create_app
from preread.api.deps import Services
from preread.audit import AuditLog, AuditRecord
from preread.security import FailureThrottle
from preread.settings import Settings
from preread.store import JobStore, make_engine, upgrade
from preread.store.schema import UserRow, UserSessionRow
from tests.grant_support import clinical_preread
from tests.services import services_for
from tests.store.conftest import FakeClock, fresh_postgres_database

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a long enough passphrase"
IDLE_S = 600.0
LIFETIME_S = 3600.0
PER_ACCOUNT = 5
PER_SOURCE = 12
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Ticks:
    """The throttle's monotonic clock: stands still until moved."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database: SQLite unless the test is parametrized with ``postgresql``
    (``@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)``); PostgreSQL's is shared
    by the module, its users and sessions removed after each test (audit records stay)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'accounts.db'}"
        upgrade(url)
        yield url
        return
    url = str(request.getfixturevalue("postgres_url"))
    yield url
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(UserSessionRow))
            conn.execute(delete(UserRow))
    finally:
        engine.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 1, 8, 0, tzinfo=UTC))


def new_records(engine: Engine, seen: int) -> list[AuditRecord]:
    return list(AuditLog(engine).records())[seen:]


def record_count(engine: Engine) -> int:
    return len(list(AuditLog(engine).records()))


@dataclass
class Site:
    """The app under test, its stores and clocks, and a browser per source address."""

    app: object
    client: TestClient
    services: Services
    accounts: AccountStore
    sessions: SessionStore
    clock: FakeClock
    ticks: Ticks
    engine: Engine
    browsers: list[TestClient] = field(default_factory=list)

    def user(
        self,
        username: str = "ada",
        *,
        tenant: str = "hosp-a",
        role: Role = Role.RADIOLOGIST,
        password: str | None = PASSWORD,
        display_name: str | None = "Dr Ada Lovelace",
    ) -> User:
        return self.accounts.create(
            tenant, username, role, password=password, display_name=display_name, by="tests"
        )

    def browser(self, source: str = "10.1.1.1", *, https: bool = False) -> TestClient:
        """A new browser at ``source`` (its own cookies), not following redirects."""
        browser = TestClient(
            self.app,  # type: ignore[arg-type]
            base_url="https://testserver" if https else "http://testserver",
            client=(source, 50000),
            follow_redirects=False,
        )
        self.browsers.append(browser)
        return browser

    def audit_mark(self) -> int:
        return record_count(self.engine)

    def audit_since(self, mark: int) -> list[AuditRecord]:
        return new_records(self.engine, mark)

    def audit_until(self, mark: int, count: int, timeout_s: float = 5.0) -> list[AuditRecord]:
        """The records since ``mark`` once there are ``count`` (the audit writer's thread
        commits what the app submitted without waiting)."""
        deadline = time.monotonic() + timeout_s
        while len(records := new_records(self.engine, mark)) < count:
            assert time.monotonic() < deadline, f"{len(records)} of {count} audit records"
            time.sleep(0.02)
        return records


def login_token(browser: TestClient, path: str = "/ui/login") -> str:
    """Open the sign-in page; the CSRF token its form carries."""
    page = browser.get(path)
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def page_token(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def sign_in(
    browser: TestClient,
    username: str = "ada",
    password: str = PASSWORD,
    *,
    next_path: str | None = None,
    token: str | None = None,
) -> httpx.Response:
    """Fill in and send the sign-in form as a browser does (page first, for its token)."""
    form = {
        "csrf_token": token if token is not None else login_token(browser),
        "username": username,
        "password": password,
    }
    if next_path is not None:
        form["next"] = next_path
    answer: httpx.Response = browser.post("/ui/login", data=form)
    return answer


@pytest.fixture
def site(db_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Site]:
    settings = Settings(
        data_dir=tmp_path / "data",
        models_dir=REPO / "models",
        session_idle_timeout_s=int(IDLE_S),
        session_lifetime_s=int(LIFETIME_S),
    )
    ticks = Ticks()
    with JobStore.create(db_url) as store:
        audit = AuditLog(store.engine, clock=clock)
        accounts = AccountStore(store.engine, audit=audit, clock=clock)
        sessions = SessionStore(
            store.engine, SessionPolicy.from_settings(settings), audit=audit, clock=clock
        )
        services = services_for(
            settings,
            store,
            tmp_path / "keys",
            accounts=accounts,
            sessions=sessions,
            login_throttle=FailureThrottle(
                per_client_and_source=PER_ACCOUNT, per_source=PER_SOURCE, clock=ticks
            ),
        )
        assert services.grant_store is not None
        services.grant_store.create(clinical_preread("tests", tenant="hosp-a"))  # the worklist's
        app = create_app(services)
        site = Site(app, TestClient(app), services, accounts, sessions, clock, ticks, store.engine)
        try:
            with site.client:
                yield site
        finally:
            for browser in site.browsers:
                browser.close()
            services.auditor.close()
