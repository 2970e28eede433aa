"""Limits of the served API over real HTTP: the app under ``preread.api.server.server_config``
(what ``preread serve`` runs) on a free loopback port, with each of uvicorn's parsers.

A chunked body over the limit used to get 400 (FastAPI answered the middleware's exception as
a parse error) and a 2 MB request header was accepted (httptools has no limit).
``X-Forwarded-For`` is believed from the configured proxies only (uvicorn's own default would
trust any local process)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
import uvicorn

from preread.api.app import create_app
from preread.api.server import HttpParser, server_config
from preread.audit import AuditAction, AuditLog
from tests.api.conftest import Api

BODY_LIMIT = 4096
HEAD_LIMIT = 16_384


@pytest.fixture(params=["h11", "httptools"])
def port(request: pytest.FixtureRequest, api: Api) -> Iterator[int]:
    limits = {"max_request_bytes": BODY_LIMIT, "max_header_bytes": HEAD_LIMIT}
    with _served(api, limits, request.param) as port:
        yield port


@contextlib.contextmanager
def _served(api: Api, update: dict[str, Any], http: HttpParser = "auto") -> Iterator[int]:
    """The app on ``api``'s services with ``update`` applied to its settings, served as
    ``preread serve`` serves it on a free loopback port."""
    settings = api.services.settings.model_copy(update=update)
    # the guard of unauthenticated traffic is made from the settings
    services = dataclasses.replace(api.services, settings=settings, unauthenticated=None)
    app = create_app(services)
    config = server_config(app, settings, host="127.0.0.1", port=0, http=http)
    config.lifespan = "off"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it (a server that
    closes while data are still arriving may reset the connection: what came back counts)."""
    received: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        with contextlib.suppress(OSError):  # the server answered and closed first
            conn.sendall(data)
        try:
            while chunk := conn.recv(65536):
                received.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(received)


def _status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def _chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def _post(headers: bytes, body: bytes) -> bytes:
    return (
        b"POST /oauth/token HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n" + headers + b"\r\n" + body
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bodies_over_the_limit_are_413_however_they_are_sent(port: int) -> None:
    form = b"grant_type=client_credentials&client_id=prc_x&client_secret=" + b"s" * 5000
    chunked = _exchange(port, _post(b"Transfer-Encoding: chunked\r\n", _chunked(form)))
    assert _status(chunked) == 413, chunked[:300]
    assert b"exceeds 4096 bytes" in chunked
    declared = _exchange(port, _post(b"Content-Length: %d\r\n" % len(form), form))
    assert _status(declared) == 413, declared[:300]
    # under the limit, chunked: the app gets the whole body (the client is unknown: 401)
    small = b"grant_type=client_credentials&client_id=prc_x&client_secret=y"
    fine = _exchange(port, _post(b"Transfer-Encoding: chunked\r\n", _chunked(small, 7)))
    assert _status(fine) == 401 and b"invalid_client" in fine, fine[:300]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_request_heads_over_the_limit_are_431(port: int) -> None:
    def get(header_bytes: int) -> bytes:
        return (
            b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\nX-Big: "
            + b"a" * header_bytes
            + b"\r\n\r\n"
        )

    assert _status(_exchange(port, get(8_000))) == 200
    over = _exchange(port, get(HEAD_LIMIT + 1000))
    assert _status(over) == 431, over[:300]
    many = b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 90) for n in range(300))  # ~30 kB in pieces
    split = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: test\r\n" + many + b"\r\n")
    assert _status(split) == 431, split[:300]
    huge = _exchange(port, get(2_000_000))  # the finding: 2 MB used to be accepted
    assert _status(huge) in (431, None), huge[:300]  # refused (or reset while still sending)
    assert b"200 OK" not in huge


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("trusted", [True, False], ids=["proxy-trusted", "proxy-not-trusted"])
def test_x_forwarded_for_is_believed_only_from_the_configured_proxies(
    api: Api, trusted: bool
) -> None:
    """Behind a trusted proxy every client has its own unauthenticated allowance and is the
    audit trail's source, and cannot escape its allowance by prepending addresses; from a
    peer that is not a trusted proxy the header is ignored (all its clients are one source)."""
    networks = [ip_network("127.0.0.0/8")] if trusted else []
    update = {"forwarded_allow_networks": networks, "unauthenticated_per_minute": 2}
    with _served(api, update) as port:

        def status(forwarded_for: str) -> int:
            answer = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/studies/1.2.3/report/json",
                headers={"Authorization": "Bearer not-a-token", "X-Forwarded-For": forwarded_for},
            )
            return answer.status_code

        assert [status("203.0.113.7") for _ in range(3)] == [401, 401, 429]
        assert status("198.51.100.9, 203.0.113.7") == 429  # its own address is the last hop
        assert status("198.51.100.9") == (401 if trusted else 429)
    sources = {
        str(r.event.detail.get("source"))
        for r in AuditLog(api.store.engine).records()
        if r.event.action == AuditAction.AUTH_FAILED
    }
    assert sources == ({"203.0.113.7", "198.51.100.9"} if trusted else {"127.0.0.1"})
