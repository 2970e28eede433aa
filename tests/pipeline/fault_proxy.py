"""A real HTTP proxy in front of Orthanc that misbehaves the way a network or a failing Orthanc
does, as a test scripts it (the outer edge: it forwards bytes and decides nothing about PreRead).

``decide(method, path)`` is called for every request, in the proxy's thread (it may block: the
request waits, as PreRead's would on a slow Orthanc), and answers with an :data:`Action`:

* ``"forward"``: passed to Orthanc, its answer passed back;
* ``"refuse"``: ``503 Service Unavailable`` at once; Orthanc never sees the request;
* ``"lose"``: passed to Orthanc (which acts on it), then ``502 Bad Gateway`` instead of
  Orthanc's answer, as when a gateway's connection to the client broke after the work was done.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx

Action = Literal["forward", "refuse", "lose"]
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def is_stow(method: str, path: str) -> bool:
    """STOW-RS Store Instances (PS3.18 10.5): ``POST {dicomweb root}/studies``."""
    return method == "POST" and path.rstrip("/").endswith("/dicom-web/studies")


def is_series_retrieve(method: str, path: str) -> bool:
    """WADO-RS Retrieve Series (the pixels): ``GET /dicom-web/studies/{uid}/series/{uid}``."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    return method == "GET" and len(parts) == 5 and parts[0] == "dicom-web" and parts[3] == "series"


@dataclass
class Seen:
    """What the proxy did: (method, path, action) of every request, in order."""

    requests: list[tuple[str, str, Action]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def actions(self, match: Callable[[str, str], bool]) -> list[Action]:
        with self.lock:
            return [a for m, p, a in self.requests if match(m, p)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # not a client that went away
            super().handle_error(request, client_address)


@contextmanager
def fault_proxy(target: str, decide: Callable[[str, str], Action]) -> Iterator[tuple[str, Seen]]:
    """Yields the proxy's URL and its :class:`Seen` record."""
    seen = Seen()
    client = httpx.Client(base_url=target, timeout=120.0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            action = decide(self.command, self.path)
            with seen.lock:
                seen.requests.append((self.command, self.path, action))
            if action == "refuse":
                self._answer(503, [("content-type", "text/plain")], b"unavailable")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            answer = client.request(self.command, self.path, content=body, headers=headers)
            if action == "lose":
                self._answer(502, [("content-type", "text/plain")], b"bad gateway")
                return
            passed = [
                (name, value)
                for name, value in answer.headers.items()
                if name.lower() not in HOP and name.lower() != "content-encoding"
            ]
            self._answer(answer.status_code, passed, answer.content)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        client.close()
