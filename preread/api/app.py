"""The FastAPI app: an authenticated, tenant-scoped report API under ``/api/v1``.

Handlers only translate: they call PreRead's functions with the caller's tenant and map
PreRead's errors to HTTP in one place (:func:`_errors`). Everything the app uses comes in as
one :class:`~preread.api.deps.Services`; nothing is built at import time.

Every path id is checked against its format before anything else (:mod:`preread.api.ids`:
404 when malformed); every study is reached through one enforcement point
(:mod:`preread.api.access`: tenant, purpose, grant, audit).

Two pure-ASGI middlewares wrap every request: a body size limit (413, :class:`BodyLimit`) and
the access log + latency histogram, which record the route *template*
(``/api/v1/studies/{study_uid}``), never the path, so no identifier reaches a log line or a
metric label. Request heads over ``PREREAD_MAX_HEADER_BYTES`` are refused by the server
(431, :mod:`preread.api.server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicom_gateway.errors import GatewayError, ResourceNotFoundError
from preread.api.deps import Services
from preread.api.idempotency import IdempotencyConflictError
from preread.api.ids import check_path_ids, unchecked_path_params
from preread.api.routes import (
    finalreports,
    grants,
    models,
    oauth,
    ops,
    reports,
    reviews,
    studies,
    webhooks,
)
from preread.api.viewer import install as install_viewer
from preread.audit import AuditError
from preread.dicomweb import install as install_dicomweb
from preread.grants import GrantError, GrantNotFoundError
from preread.monitoring.monitor import open_alerts
from preread.reports import ReportError
from preread.results import NotAuthorizedError, ReportNotReadyError, StudyNotFoundError
from preread.reviews import (
    ReviewConflictError,
    ReviewError,
    ReviewNotFoundError,
    ReviewNotStoredError,
)
from preread.store import JobNotFoundError, StoreError
from preread.ui import install as install_ui
from preread.webhooks.outbox import (
    DeliveryNotFoundError,
    DeliveryStateError,
    WebhookError,
    WebhookNotFoundError,
)

log = logging.getLogger("preread.api")
_T = TypeVar("_T")
VERSION = "1.0.0"


FLUSH_INTERVAL_S = 5.0  # how often closed windows of failed authentications are recorded


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Everything imported and built so far lives as long as the process: move it out of the
    # garbage collector's reach. Full collections otherwise walk the whole heap (pydicom,
    # highdicom, fhir.resources models) and stall every request in flight: measured p99 of a
    # trivial route 117 ms -> 21 ms (bench/api_reports.py).
    gc.collect()
    gc.freeze()
    guard = app.state.services.guard

    async def flush() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            guard.flush()

    task = asyncio.create_task(flush())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        guard.flush(everything=True)


def create_app(services: Services, *, title: str = "PreRead") -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan,
        title=title,
        summary="AI pre-reads of CT studies (AI-generated, preliminary) for hospital systems",
        description=(
            "Authenticate with OAuth2 client credentials at `POST /oauth/token`, then send "
            "`Authorization: Bearer <token>`. Every study belongs to one tenant; a client sees "
            "its tenant's studies only (another tenant's study answers 404, like a missing one)."
        ),
        version=VERSION,
    )
    app.state.services = services
    services.metrics.watch_store(services.store.counts_by_state)
    services.metrics.watch_alerts(
        lambda: [(a.model_id, a.version, a.metric) for a in open_alerts(services.store)]
    )
    for module in (oauth, studies, reports, reviews, finalreports, models, webhooks, grants, ops):
        app.include_router(module.router, dependencies=[Depends(check_path_ids)])
    install_dicomweb(app, services)  # /dicomweb for OHIF: signed-in readers, relayed to Orthanc
    install_ui(app)  # the pages (/ui/…); after the routers: it checks them for CSRF
    install_viewer(app, services.settings)  # OHIF at /viewer/ (static files, PREREAD_VIEWER)
    unchecked = unchecked_path_params(app.routes)
    if unchecked:
        raise RuntimeError(f"path parameters without a format in preread.api.ids: {unchecked}")
    _errors(app)
    app.add_middleware(AccessLog, services=services)
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_request_bytes)
    return app


def _json_error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


# PreRead's errors whose message is the answer, by HTTP status (most specific class wins).
_PLAIN_ERRORS: dict[type[Exception], int] = {
    JobNotFoundError: 404,
    StudyNotFoundError: 404,
    ReportNotReadyError: 404,
    WebhookNotFoundError: 404,
    DeliveryNotFoundError: 404,
    GrantNotFoundError: 404,
    ResourceNotFoundError: 404,
    NotAuthorizedError: 403,
    GrantError: 422,
    IdempotencyConflictError: 422,
    WebhookError: 422,
    DeliveryStateError: 409,
    ReviewNotFoundError: 404,
    ReviewConflictError: 409,
    ReviewError: 422,
}
# Errors answered with a fixed text (their message may name internals), logged by class.
_HIDDEN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    AuditError: (503, "the audit trail is unavailable: nothing was accessed"),
    ReviewNotStoredError: (
        502,
        "the review is signed and recorded, but its SR and SEG are not in the study yet",
    ),
    GatewayError: (502, "Orthanc did not answer as expected"),
    StoreError: (503, "the job store is unavailable"),
}


def _errors(app: FastAPI) -> None:
    for kind in _PLAIN_ERRORS:
        app.add_exception_handler(kind, _plain)
    for kind in _HIDDEN_ERRORS:
        app.add_exception_handler(kind, _hidden)

    @app.exception_handler(ReportError)
    async def unrenderable(_: Request, exc: ReportError) -> JSONResponse:
        return _json_error(409, f"the stored pre-read cannot be rendered in this format: {exc}")


def _entry(table: Mapping[type[Exception], _T], exc: Exception) -> _T:
    """The entry of the nearest class of ``exc`` in ``table``."""
    return next(table[k] for k in type(exc).__mro__ if k in table)


async def _plain(_: Request, exc: Exception) -> JSONResponse:
    return _json_error(_entry(_PLAIN_ERRORS, exc), str(exc))


async def _hidden(_: Request, exc: Exception) -> JSONResponse:
    status, text = _entry(_HIDDEN_ERRORS, exc)
    log.error("%s -> %d", type(exc).__name__, status)
    return _json_error(status, text)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, however they are sent.

    A declared ``Content-Length`` over the limit is refused at once. Otherwise (chunked, or a
    length that lies) the body is read here, up to the limit, *before* the app runs: one byte
    more and the answer is 413, with nothing authenticated, parsed or stored. The app then
    receives the body it would have read. (Raising inside the app's ``receive`` instead would
    be caught by FastAPI's body parsing and answered 400.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: disconnect

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _json_error(413, f"the request body exceeds {self.max_bytes} bytes")
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


class AccessLog:
    """One log line and one histogram observation per request, by route template."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            seconds = time.perf_counter() - start
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = str(scope.get("method", ""))
            self.services.metrics.http_seconds.labels(method, template, str(status)).observe(
                seconds
            )
            state = scope.get("state")
            client = state.get("client_id") if isinstance(state, dict) else None
            log.info("%s %s %d %.1f ms client=%s", method, template, status, 1000 * seconds, client)
