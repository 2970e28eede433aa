"""Fixtures of the webhook tests: the job store's databases (SQLite and PostgreSQL, see
tests/store/conftest.py), a webhook store on a fake clock, and a real HTTP receiver.

:class:`Receiver` is a ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) whose answer a test
switches: ``ok`` (200), ``error`` (500), ``throttle`` (429 + ``Retry-After``), ``gone`` (410),
``redirect`` (302), ``hang`` (answers only after ``hang_s``); :meth:`Receiver.stop` closes the
port (connection refused) and :meth:`Receiver.start` opens the same one again. With ``tls`` (a
server-side :class:`ssl.SSLContext`) it speaks https.

Webhooks refuse loopback by default; these tests deliver to the receiver on 127.0.0.1 because
they allow ``127.0.0.0/8`` the way an operator allows a network (:data:`LOOPBACK_ALLOWED`, from
``PREREAD_WEBHOOK_ALLOWED_NETWORKS``), not by weakening the check.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from preread.settings import Settings
from preread.store import JobOutputs, JobRecord, JobState, StudyFingerprint
from preread.webhooks.addresses import DestinationPolicy
from preread.webhooks.outbox import WebhookStore
from tests.store.conftest import FakeClock, backend, clock, db_url, engine, postgres_url

__all__ = ["backend", "clock", "db_url", "engine", "postgres_url"]

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"

LOOPBACK_ALLOWED = DestinationPolicy.from_settings(
    Settings(webhook_allowed_networks=[ip_network("127.0.0.0/8")])
)
"""The policy of an operator who set ``PREREAD_WEBHOOK_ALLOWED_NETWORKS=["127.0.0.0/8"]``."""


@pytest.fixture
def webhooks(engine: Engine, clock: FakeClock) -> WebhookStore:
    return WebhookStore(engine, clock=clock)


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server whose behaviour tests switch (see the module docstring)."""

    mode: str = "ok"
    retry_after: str = "600"
    hang_s: float = 5.0
    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/preread?token=QUERY-SECRET"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.received.append(Received(self.path, headers, body))
                    mode = receiver.mode
                if mode == "hang":
                    receiver._released.wait(receiver.hang_s)
                status, extra = {
                    "ok": (200, {}),
                    "hang": (200, {}),
                    "error": (500, {}),
                    "gone": (410, {}),
                    "redirect": (302, {"location": "http://127.0.0.1:1/elsewhere"}),
                    "throttle": (429, {"retry-after": receiver.retry_after}),
                }[mode]
                try:
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (timeout): nothing to answer
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._released.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the port: the next connection is refused."""
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers["webhook-id"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:
        yield client


def finished_job(**changes: Any) -> JobRecord:
    """A job that finished ``done`` with two findings (change any field with ``changes``)."""
    at = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    job = JobRecord(
        id="6f1c1a52-8d0e-4d55-9b3c-3f2a3c1d9e01",
        study_instance_uid="1.2.826.0.1.3680043.8.498.1",
        orthanc_study_id="5a9e8a5c-0c1f5fe1-2b5b4bcf-b4cd0e3b-3a3e2a14",
        model_id="lung-nodules",
        model_version="1.2.0",
        state=JobState.DONE,
        attempts=1,
        fingerprint=StudyFingerprint(120, "20250301T080000"),
        rerun_fingerprint=None,
        series_instance_uid="1.2.3.9",
        reason=None,
        reason_code=None,
        provider_requested="cpu",
        provider_used="cpu",
        provider_warning=None,
        timings={"infer": 1.5},
        result={"findings": [{"label": "nodule"}, {"label": "nodule"}]},
        findings_count=2,
        outputs=JobOutputs(),
        outputs_removed_at=None,
        created_at=at,
        updated_at=at,
        started_at=at,
        finished_at=at,
        lease_owner=None,
        lease_expires_at=None,
        supersedes=None,
        superseded_by=None,
    )
    return replace(job, **changes)
