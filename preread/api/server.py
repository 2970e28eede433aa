"""The HTTP server of the API (uvicorn), with a limit on the request head.

uvicorn parses requests with httptools (llhttp) when it is installed, else with h11. Neither
refuses an oversized request head as it should: httptools has no limit at all (a 2 MB header
was accepted), h11 stops at ``h11_max_incomplete_event_size`` (16 KiB by default) but uvicorn
answers that with 400. The two protocols here refuse a request line plus headers over
``PREREAD_MAX_HEADER_BYTES`` with **431 Request Header Fields Too Large** (RFC 6585 §5) and
close the connection, before the app sees anything. Bodies are limited by the app itself
(:class:`preread.api.app.BodyLimit`: 413).

:func:`server_config` is what ``preread serve`` runs (httptools when installed, else h11).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import h11
import uvicorn
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.protocols.http.h11_impl import H11Protocol

from preread.settings import Settings

TOO_LARGE = 431
_MESSAGE = b"request header fields too large"
_HEAD_OVERHEAD = 4  # ": " and CRLF around each header


class _Conn(h11.Connection):
    """An h11 connection that refuses request heads over ``head_limit`` and remembers the
    status of its last protocol error. h11 itself only bounds an *incomplete* head (its
    ``max_incomplete_event_size``); a larger head that arrives whole is measured here."""

    refused_with: int | None = None

    def __init__(self, head_limit: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=head_limit)
        self.head_limit = head_limit

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refused_with = exc.error_status_hint
            raise
        if isinstance(event, h11.Request):
            size = (
                len(event.method)
                + len(event.target)
                + sum(len(name) + len(value) + _HEAD_OVERHEAD for name, value in event.headers)
            )
            if size > self.head_limit:
                self.refused_with = TOO_LARGE
                raise h11.RemoteProtocolError("request head too large", TOO_LARGE)
        return event


class H11HeadLimit(H11Protocol):
    """uvicorn's h11 protocol answering 431 (not 400) for a request head over the limit
    (``config.h11_max_incomplete_event_size``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size
        self.conn = _Conn(limit or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE)

    def send_400_response(self, msg: str) -> None:
        if not isinstance(self.conn, _Conn) or self.conn.refused_with != TOO_LARGE:
            super().send_400_response(msg)
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        for event in (
            h11.Response(
                status_code=TOO_LARGE, headers=headers, reason=b"Request Header Fields Too Large"
            ),
            h11.Data(data=_MESSAGE),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def _httptools_protocol() -> type[Any] | None:
    if importlib.util.find_spec("httptools") is None:
        return None
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsHeadLimit(HttpToolsProtocol):
        """uvicorn's httptools protocol with a limit on the request head: counted in the
        parser's callbacks (exact), and on the raw bytes while a head is incomplete (so that
        httptools never buffers more than about the limit of one header value)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._limit = (
                self.config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
            )
            self._head = 0  # parsed bytes of the current head
            self._raw = 0  # bytes received while a head was incomplete
            self._in_head = True
            self._refused = False

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._raw += len(data)
            super().data_received(data)
            if self._in_head and self._raw > self._limit and not self._refused:
                self._refuse()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head = 0

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + _HEAD_OVERHEAD)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._raw = True, 0

        def _count(self, size: int) -> None:
            self._head += size
            if self._head > self._limit:
                self._refused = True
                raise _HeadTooLarge  # httptools raises a parser error: send_400_response

        def send_400_response(self, msg: str) -> None:
            if self._refused:
                self._write_431()
            else:
                super().send_400_response(msg)

        def _refuse(self) -> None:
            self._refused = True
            self._write_431()

        def _write_431(self) -> None:
            if self.transport.is_closing():
                return
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(_MESSAGE)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + _MESSAGE
            )
            self.transport.close()

    return HttpToolsHeadLimit


class _HeadTooLarge(Exception):
    pass


HttpParser = Literal["auto", "h11", "httptools"]


def protocol(http: HttpParser = "auto") -> type[Any]:
    """The protocol class for ``http`` (auto: httptools when installed, else h11)."""
    if http != "h11":
        found = _httptools_protocol()
        if found is not None:
            return found
        if http == "httptools":
            raise RuntimeError("httptools is not installed")
    return H11HeadLimit


def server_config(
    app: Any,
    settings: Settings,
    *,
    host: str,
    port: int,
    http: HttpParser = "auto",
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration that serves ``app``: the head limit of ``settings``, no
    uvicorn access log (it prints paths, which hold study UIDs; the app logs route templates
    instead: :class:`preread.api.app.AccessLog`), ``X-Forwarded-For`` / ``-Proto`` taken only
    from the proxies of ``settings.forwarded_allow_networks`` (uvicorn's own default would
    also read uvicorn's ``FORWARDED_ALLOW_IPS`` environment variable); ``options`` go to
    :class:`uvicorn.Config`."""
    options.setdefault("log_level", "warning")
    trusted = [str(network) for network in settings.forwarded_allow_networks]
    options.setdefault("proxy_headers", bool(trusted))
    options.setdefault("forwarded_allow_ips", trusted)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(http),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        access_log=False,
        **options,
    )
