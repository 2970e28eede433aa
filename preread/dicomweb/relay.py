"""Forwarding a checked request to Orthanc's DICOMweb (PS3.18) and its answer back.

Two kinds of answer:

* **DICOM JSON** (QIDO-RS searches, WADO-RS metadata): read whole, up to
  :data:`MAX_JSON_BYTES`, because Orthanc writes its own address into it — every Retrieve URL
  (0008,1190) and ``BulkDataURI`` is ``http://<orthanc>/dicom-web/studies/…`` — and the
  browser must see PreRead's path instead (:func:`public_urls`: ``/dicomweb/studies/…``, a
  root-relative URL that OHIF resolves against its own origin). A URL that cannot be made
  PreRead's is dropped, never passed on.
* **everything else** (frames, bulk data: pixels): streamed as Orthanc sends it, chunk by
  chunk, with its ``Content-Type`` (the multipart boundary included) and length; nothing is
  held beyond one chunk, however large the series.

The browser's ``Accept`` (media type and ``transfer-syntax``, PS3.18 §8.7.3) goes to Orthanc as
it is, which negotiates; ``Accept-Encoding: identity`` always (Orthanc would gzip pixels). No
cookie and no other header of the browser reaches Orthanc; Orthanc's login is added here.

A GET that fails before Orthanc answers because a kept-alive connection was closed under it
is sent once more (GETs are safe to repeat). A failure is a
:class:`~preread.dicomweb.errors.UpstreamError` with the status PreRead answers
(404 when Orthanc has no such object, 502 when it fails or does not answer, 503 without an
Orthanc); its message never holds Orthanc's URL or login, and what went wrong is logged by kind
only. A failure after the first bytes were sent cannot change the status: the connection is
closed early, and the browser sees a truncated answer.

The HTTP client: one pooled ``httpx.AsyncClient`` while the app runs (:meth:`Relay.running`, in
the app's lifespan); a request outside it (an app driven without its lifespan) gets a client of
its own, closed with its answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from dicom_gateway.client import DicomwebEndpoint
from preread.dicomweb.errors import UpstreamError

__all__ = [
    "ANSWER_HEADERS",
    "MAX_JSON_BYTES",
    "PUBLIC_ROOT",
    "TIMEOUT",
    "Relay",
    "public_url",
    "public_urls",
]

log = logging.getLogger(__name__)

PUBLIC_ROOT = "/dicomweb"
"""Where PreRead answers DICOMweb (:data:`preread.api.viewer.DICOMWEB`, OHIF's data source)."""
TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=30.0, pool=10.0)
"""Per request to Orthanc: connect, between two chunks read, write, waiting for a connection."""
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=0.5)
"""Connections to Orthanc: idle ones are dropped after 0.5 s, before Orthanc closes them
(civetweb's ``KeepAliveTimeout`` is 1 s by default; reusing a connection it is closing fails)."""
MAX_JSON_BYTES = 128 * 1024 * 1024
"""The largest DICOM JSON answer relayed (metadata of a 2,000-slice series is ~10 MB)."""
_PARSE_IN_THREAD_BYTES = 256 * 1024  # larger JSON is parsed and written off the event loop
ANSWER_HEADERS = {
    "Cache-Control": "no-store",  # patient data: kept in no cache of the browser or between
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""On every answer of the proxy."""
_PASSED_BACK = ("content-type", "content-length", "content-encoding")
_URL_TAGS = frozenset({"00081190"})  # Retrieve URL (PS3.18 §10.6.3.3.1)
_MAX_ACCEPT = 1024
_SAFE_PATH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./,-_")


def public_url(url: str, upstream_path: str = "") -> str | None:
    """Orthanc's URL of a DICOMweb resource as PreRead's root-relative one
    (``http://127.0.0.1:8042/dicom-web/studies/1.2/series/3.4`` → ``/dicomweb/studies/1.2/
    series/3.4``), or None when ``url`` names no resource under ``/studies/`` (it is then
    dropped). ``upstream_path``: the path of Orthanc's DICOMweb root, when known."""
    path = urlsplit(url).path
    if upstream_path and path.startswith(upstream_path + "/studies/"):
        rest = path[len(upstream_path) :]
    else:
        start = path.find("/studies/")
        if start < 0:
            return None
        rest = path[start:]
    if not set(rest) <= _SAFE_PATH or "/../" in rest or rest.endswith("/.."):
        return None
    return PUBLIC_ROOT + rest


def public_urls(answer: Any, upstream_path: str = "") -> Any:
    """``answer`` (DICOM JSON, PS3.18 §F.2: a dataset or a list of them) with every Retrieve
    URL and ``BulkDataURI`` made PreRead's (:func:`public_url`), in place; returned."""
    if isinstance(answer, list):
        for item in answer:
            public_urls(item, upstream_path)
        return answer
    if not isinstance(answer, dict):
        return answer
    for tag, element in answer.items():
        if not isinstance(element, dict):
            continue
        uri = element.get("BulkDataURI")
        if isinstance(uri, str):
            fixed = public_url(uri, upstream_path)
            if fixed is None:
                del element["BulkDataURI"]
            else:
                element["BulkDataURI"] = fixed
        values = element.get("Value")
        if not isinstance(values, list):
            continue
        if tag.upper() in _URL_TAGS:
            kept = [public_url(v, upstream_path) for v in values if isinstance(v, str)]
            element["Value"] = [v for v in kept if v is not None]
        elif element.get("vr") == "SQ":
            public_urls(values, upstream_path)
    return answer


def accept_of(headers: Mapping[str, str], default: str) -> str:
    """The ``Accept`` header to send Orthanc: the browser's (bounded), else ``default``."""
    accept = headers.get("accept", "").strip()
    if not accept or len(accept) > _MAX_ACCEPT or "\x00" in accept:
        return default
    return accept


class Relay:
    """Requests to one DICOMweb server (``endpoint``; None: there is none, every request is
    refused with 503). ``transport``: an ``httpx`` transport, for tests at the network edge."""

    def __init__(
        self,
        endpoint: DicomwebEndpoint | None,
        *,
        timeout: httpx.Timeout = TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._timeout = timeout
        self._transport = transport
        self._upstream_path = urlsplit(endpoint.url).path.rstrip("/") if endpoint else ""
        self._shared: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # the endpoint's repr leaves the password out
        return f"Relay({self.endpoint!r})"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """One pooled client for the requests of this event loop, closed at the end (the
        app's lifespan)."""
        if self.endpoint is None:
            yield
            return
        client = self._new_client()
        mine = self._shared is None  # a second lifespan at once (tests) keeps the first's
        if mine:
            self._shared, self._loop = client, asyncio.get_running_loop()
        try:
            yield
        finally:
            if mine:
                self._shared, self._loop = None, None
            await client.aclose()

    def _new_client(self) -> httpx.AsyncClient:
        assert self.endpoint is not None
        return httpx.AsyncClient(
            auth=httpx.BasicAuth(self.endpoint.username, self.endpoint.password),
            headers={"Accept-Encoding": "identity"},
            timeout=self._timeout,
            limits=LIMITS,
            transport=self._transport,
            follow_redirects=False,
        )

    def _client(self) -> tuple[httpx.AsyncClient, bool]:
        """A client and whether the caller must close it (it is not the shared one)."""
        if self.endpoint is None:
            raise UpstreamError(503, "no DICOMweb server: this PreRead reads studies from a folder")
        if self._shared is not None and self._loop is asyncio.get_running_loop():
            return self._shared, False
        return self._new_client(), True

    def _request(
        self, client: httpx.AsyncClient, path: str, params: Sequence[tuple[str, str]], accept: str
    ) -> httpx.Request:
        assert self.endpoint is not None
        url = self.endpoint.url + path
        return client.build_request("GET", url, params=list(params), headers={"Accept": accept})

    async def _send(
        self, client: httpx.AsyncClient, owned: bool, request: httpx.Request, route: str
    ) -> httpx.Response:
        try:
            try:
                response = await client.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                # a kept-alive connection Orthanc closed as it was reused: once more, afresh
                response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            if owned:
                await client.aclose()
            log.warning("DICOMweb %s: Orthanc did not answer (%s)", route, type(exc).__name__)
            raise UpstreamError(502, "the image archive did not answer") from None
        if response.is_success:
            return response
        await response.aclose()
        if owned:
            await client.aclose()
        log.info("DICOMweb %s: Orthanc answered %d", route, response.status_code)
        raise UpstreamError.for_status(response.status_code)

    async def json(
        self, path: str, params: Sequence[tuple[str, str]], accept: str, *, route: str
    ) -> Any:
        """Orthanc's DICOM JSON answer at ``path`` (under its DICOMweb root), its URLs made
        PreRead's (:func:`public_urls`); ``[]`` for an empty answer (204)."""
        client, owned = self._client()
        response = await self._send(
            client, owned, self._request(client, path, params, accept), route
        )
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JSON_BYTES:
                    log.warning("DICOMweb %s: a JSON answer over %d bytes", route, MAX_JSON_BYTES)
                    raise UpstreamError(502, "the image archive's answer is too large")
        except httpx.HTTPError as exc:
            log.warning("DICOMweb %s: the answer broke off (%s)", route, type(exc).__name__)
            raise UpstreamError(502, "the image archive did not answer") from None
        finally:
            await response.aclose()
            if owned:
                await client.aclose()
        if not body.strip():
            return []
        if len(body) > _PARSE_IN_THREAD_BYTES:
            return await run_in_threadpool(self._parse, bytes(body), route)
        return self._parse(bytes(body), route)

    def _parse(self, body: bytes, route: str) -> Any:
        try:
            answer = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("DICOMweb %s: Orthanc's answer is not JSON", route)
            raise UpstreamError(502, "the image archive's answer is not DICOM JSON") from None
        return public_urls(answer, self._upstream_path)

    async def stream(self, path: str, accept: str, *, route: str) -> Response:
        """Orthanc's answer at ``path`` streamed as it comes (frames, bulk data)."""
        client, owned = self._client()
        request = self._request(client, path, (), accept)
        response = await self._send(client, owned, request, route)
        headers = {k: v for k in _PASSED_BACK if (v := response.headers.get(k)) is not None}
        return _Relayed(response, client if owned else None, {**headers, **ANSWER_HEADERS}, route)


def json_answer(answer: Any) -> Response:
    """DICOM JSON as PreRead answers it."""
    body = json.dumps(answer, separators=(",", ":")).encode()
    return Response(body, media_type="application/dicom+json", headers=ANSWER_HEADERS)


class _Relayed(StreamingResponse):
    """Orthanc's streamed answer, closed (and its own client, if any) however the relay ends:
    complete, the browser gone, or Orthanc broken off."""

    def __init__(
        self,
        upstream: httpx.Response,
        client: httpx.AsyncClient | None,
        headers: dict[str, str],
        route: str,
    ) -> None:
        super().__init__(self._chunks(upstream, route), status_code=upstream.status_code)
        self.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self._upstream = upstream
        self._client = client

    @staticmethod
    async def _chunks(upstream: httpx.Response, route: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            log.warning("DICOMweb %s: Orthanc broke off (%s)", route, type(exc).__name__)
            raise UpstreamError(502, "the image archive broke off") from None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._upstream.aclose()
            if self._client is not None:
                await self._client.aclose()
