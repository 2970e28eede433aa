"""A real HTTP proxy in front of Orthanc that records every request PreRead makes (the outer
edge: it forwards bytes, decides nothing), to prove what was and was not asked for."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@contextmanager
def counting_proxy(target: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Yields the proxy's URL and the (method, path) of every request, in order."""
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()
    client = httpx.Client(base_url=target, timeout=120.0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            with lock:
                seen.append((self.command, self.path))
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            answer = client.request(self.command, self.path, content=body, headers=headers)
            data = answer.content
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in HOP and name.lower() != "content-encoding":
                    self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        client.close()
