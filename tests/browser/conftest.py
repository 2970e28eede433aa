"""Browser tests: PreRead served for real, driven by Playwright in Debian's Chromium.

What the fixtures give (reusable by any test under ``tests/browser/``):

* ``live_site`` (session) — :class:`LiveSite`: a real :class:`~preread.service.Service`
  (SQLite job store, the shipped lung-nodule model) on a private Orthanc started for the session,
  which has read one phantom chest CT (``tests/pipeline/conftest.py::easy_phantom_study``,
  seed 33: one solid 20 mm nodule) and stored its SR and SEG (and key images) in the study; the
  app served by uvicorn on a free loopback port (``live_site.base_url``, ``live_site.url(path)``),
  its lifespan running. ``live_site.study_uid`` is that study; ``live_site.radiologist`` a
  radiologist of its tenant (``default``, clinical-preread grant in force) and
  ``live_site.outsider`` one of another tenant (``elsewhere``, its own grant, no studies);
  ``live_site.add_reader(...)`` makes more.
* ``browser`` (session) — one Chromium (``/usr/bin/chromium``, ``--no-sandbox``, software WebGL
  through SwiftShader) for the whole session.
* ``signed_in`` — a factory: ``signed_in(reader)`` opens a new browser context (its own
  cookies), signs ``reader`` in through the real sign-in form and returns
  ``(page, PageLog)``; the :class:`PageLog` has collected the page's console messages, uncaught
  errors and Content-Security-Policy refusals from the start. Contexts close after the test.
* ``artifacts`` — this test's folder for screenshots, ``tests/browser/artifacts/<test>/``
  (git-ignored), emptied first.

A missing Chromium or Playwright fails the tests, naming ``./run setup`` (CI runs it first):
a skip would hide a broken install. Playwright's own browser download is never used.

Example (a keyboard test of the review page)::

    def test_review_by_keyboard(live_site: LiveSite, signed_in: SignedIn) -> None:
        page, log = signed_in(live_site.radiologist)
        page.goto(live_site.url(f"/ui/studies/{live_site.study_uid}"))
        page.keyboard.press("a")
        ...
        log.assert_clean()
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from dicom_gateway.orthanc_server import (
    DICOMWEB_PLUGIN,
    ORTHANC_BINARY,
    DicomPeer,
    OrthancConfig,
    OrthancServer,
)
from preread.accounts import AccountStore, Role
from preread.api.server import server_config
from preread.grants import GrantSpec, Purpose
from preread.service import Service
from preread.settings import Settings
from preread.store import JobState
from tests.orthanc_support import HOSPITAL_AET, storescu
from tests.pipeline.conftest import MODELS_DIR, StudyOnDisk, easy_phantom_study

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "a long enough passphrase for the browser"
TENANT = "default"  # where the private Orthanc's studies go (PREREAD_TENANT_BY_AET unset)
OTHER_TENANT = "elsewhere"
READ_TIMEOUT_S = 180.0
CHROMIUM_ARGS = (
    "--no-sandbox",  # root in a container: no user namespace for Chromium's sandbox
    "--use-gl=angle",
    "--use-angle=swiftshader",  # software WebGL (no GPU here): OHIF's viewports need WebGL
    "--enable-unsafe-swiftshader",
    "--disable-dev-shm-usage",
)
CSP_REFUSAL = re.compile(r"Refused to|Content Security Policy|Content-Security-Policy")


@dataclass(frozen=True)
class Reader:
    """A person with a local account (password :data:`PASSWORD`)."""

    username: str
    tenant: str
    display_name: str
    role: Role = Role.RADIOLOGIST


@dataclass
class LiveSite:
    """PreRead served on a loopback port, with a study read by the real model."""

    base_url: str
    study_uid: str
    service: Service
    orthanc: OrthancServer
    radiologist: Reader
    outsider: Reader
    study: StudyOnDisk

    def url(self, path: str) -> str:
        return self.base_url + path

    def add_reader(
        self,
        username: str,
        tenant: str = TENANT,
        role: Role = Role.RADIOLOGIST,
        display_name: str | None = None,
    ) -> Reader:
        """A new local account (password :data:`PASSWORD`)."""
        shown = display_name or f"Dr {username.title()}"
        return _account(AccountStore(self.service.store.engine), username, tenant, shown, role)


def _account(
    accounts: AccountStore,
    username: str,
    tenant: str,
    display_name: str,
    role: Role = Role.RADIOLOGIST,
) -> Reader:
    accounts.create(
        tenant, username, role, password=PASSWORD, display_name=display_name, by="tests"
    )
    return Reader(username, tenant, display_name, role)


@dataclass
class PageLog:
    """What a page said: console messages (``"type: text"``), uncaught errors, and the
    Content-Security-Policy refusals among them."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    """``METHOD path?query status`` of each answered request to this origin."""

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def on_error(self, error: Any) -> None:
        self.errors.append(str(error))

    @property
    def console_errors(self) -> list[str]:
        return [m for m in self.console if m.startswith("error: ")]

    @property
    def csp_refusals(self) -> list[str]:
        return [m for m in self.console + self.errors if CSP_REFUSAL.search(m)]

    def assert_clean(self, allowed: re.Pattern[str] | None = None) -> None:
        """No uncaught error, no CSP refusal, and no console error unless ``allowed``
        matches it."""
        assert not self.csp_refusals, self.csp_refusals
        assert not self.errors, self.errors
        unexpected = [m for m in self.console_errors if not (allowed and allowed.search(m))]
        assert not unexpected, unexpected


SignedIn = Callable[[Reader], "tuple[Page, PageLog]"]


def _settings(tmp: Path, orthanc: OrthancServer) -> Settings:
    return Settings(
        data_dir=tmp / "data",
        models_dir=MODELS_DIR,
        orthanc_url=orthanc.url,
        orthanc_username=orthanc.username,
        orthanc_password=orthanc.password,  # type: ignore[arg-type]
        poll_interval_s=0.2,
        reconcile_interval_s=3600,
        webhook_interval_s=1.0,
    )


def _grant(service: Service, tenant: str) -> None:
    now = datetime.now(UTC)
    service.grants.create(
        GrantSpec(
            tenant=tenant,
            purpose=Purpose.CLINICAL_PREREAD,
            valid_from=now - timedelta(minutes=1),
            valid_to=now + timedelta(days=1),
            legal_basis="synthetic phantom studies, no patient data",
            issued_by="tests",
        )
    )


def _read(service: Service, study: StudyOnDisk, orthanc: OrthancServer) -> None:
    sent = storescu(orthanc, [study.ct_dir])
    assert sent.returncode == 0, sent.stderr
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        jobs = service.store.current_for_study(study.study_uid)
        if jobs and jobs[0].state is JobState.DONE:
            assert jobs[0].outputs is not None and jobs[0].outputs.seg is not None, jobs[0]
            return
        if jobs and jobs[0].state in (JobState.FAILED, JobState.NOT_APPLICABLE):
            pytest.fail(f"the phantom was not read: {jobs[0].state} {jobs[0].reason}")
        time.sleep(0.2)
    pytest.fail(f"the phantom was not read within {READ_TIMEOUT_S} s")


@dataclass
class _Served:
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _serve(service: Service) -> _Served:
    config = server_config(service.app(), service.settings, host="127.0.0.1", port=0)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="preread-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return _Served(server, thread)


@pytest.fixture(scope="session")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    if not ORTHANC_BINARY.is_file() or not DICOMWEB_PLUGIN.is_file():
        pytest.fail("Orthanc and its DICOMweb plugin are not installed: run ./run setup")
    tmp = tmp_path_factory.mktemp("live-site")
    study = easy_phantom_study(33, tmp / "study", "PHANTOM-BROWSER-33")
    config = OrthancConfig(
        storage_dir=tmp / "orthanc",
        stable_age_s=1,
        dicom_modalities=(DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),),
    )
    (tmp / "orthanc").mkdir()
    with OrthancServer(config) as orthanc, Service(_settings(tmp, orthanc)) as service:
        for tenant in (TENANT, OTHER_TENANT):
            _grant(service, tenant)
        service.start_loop()
        _read(service, study, orthanc)
        accounts = AccountStore(service.store.engine)
        served = _serve(service)
        site = LiveSite(
            base_url=f"http://127.0.0.1:{served.port}",
            study_uid=study.study_uid,
            service=service,
            orthanc=orthanc,
            radiologist=_account(accounts, "ada", TENANT, "Dr Ada Lovelace"),
            outsider=_account(accounts, "otto", OTHER_TENANT, "Dr Otto Other"),
            study=study,
        )
        try:
            yield site
        finally:
            served.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed (pip install -e '.[dev]'; ./run setup does)")
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing (Debian: chromium; ./run setup installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def signed_in(live_site: LiveSite, browser: Browser) -> Iterator[SignedIn]:
    contexts = []

    def open_page(reader: Reader) -> tuple[Page, PageLog]:
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        log = PageLog()
        page.on("console", log.on_console)
        page.on("pageerror", log.on_error)
        origin = live_site.base_url

        def answered(response: Any) -> None:
            url = str(response.url)
            if url.startswith(origin):
                log.requests.append(f"{response.request.method} {url[len(origin):]} "
                                    f"{response.status}")  # fmt: skip

        page.on("response", answered)
        page.goto(live_site.url("/ui/login"))
        page.fill("#username", reader.username)
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.click("form.signin button[type=submit]")
        assert page.url.startswith(live_site.url("/ui/")), page.url
        return page, log

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "PASSWORD",
    "LiveSite",
    "PageLog",
    "Reader",
    "SignedIn",
    "artifacts",
    "browser",
    "live_site",
    "signed_in",
]
