"""What the routes depend on, in one place: the services (built by the caller and passed to
:func:`preread.api.app.create_app`), the authenticated principal, scope checks, rate limits.

A route asks for ``Principal`` with the scope it needs::

    @router.get("/studies")
    def list_studies(api: ApiDep, who: Annotated[Principal, Depends(require(Scope.REPORTS_READ))]):
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2

from dicom_gateway.source import StudySource
from inference.registry import Registry
from preread.accounts import AccountStore, SessionPolicy, SessionStore
from preread.api.idempotency import IdempotencyKeys
from preread.api.metrics import ApiMetrics
from preread.api.unauthenticated import UnauthenticatedGuard
from preread.audit import AuditError, AuditLog
from preread.audit.batch import AuditWriter
from preread.caches import RenderCache, ViewCache
from preread.grants import Grant, GrantStore
from preread.lifecycle import LiveLineup
from preread.oidc import OidcSignIn
from preread.results import GrantLookup
from preread.security import (
    AuthError,
    ClientStore,
    FailureThrottle,
    Principal,
    RateLimiter,
    Scope,
    TokenService,
    source_key,
)
from preread.settings import Settings
from preread.store import JobRecord, JobStore
from preread.volume_cache import VolumeCache
from preread.webhooks.addresses import DestinationPolicy
from preread.webhooks.outbox import WebhookStore

log = logging.getLogger(__name__)
AnalyzeFn = Callable[[str], Sequence[JobRecord]]  # StudyInstanceUID -> its current jobs


@dataclass
class Services:
    """Everything the API uses; nothing is built at import time."""

    settings: Settings
    store: JobStore
    clients: ClientStore
    tokens: TokenService
    webhooks: WebhookStore
    registry: Registry
    limiter: RateLimiter = field(default_factory=RateLimiter)
    token_failures: FailureThrottle = field(default_factory=FailureThrottle)
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    source: StudySource | None = None
    analyze: AnalyzeFn | None = None
    ready_checks: Mapping[str, Callable[[], object]] = field(default_factory=dict)
    grant_store: GrantStore | None = None
    grants: GrantLookup | None = None  # a GrantCache in a served process; else the store
    on_grant_created: Callable[[Grant], int] | None = None  # re-queue and dispatch
    renders: RenderCache | None = None
    views: ViewCache | None = None
    audit: AuditWriter | None = None
    idempotency: IdempotencyKeys | None = None
    unauthenticated: UnauthenticatedGuard | None = None  # default: from the settings
    webhook_policy: DestinationPolicy | None = None  # default: from the settings
    accounts: AccountStore | None = None  # people's accounts (preread.ui signs them in)
    sessions: SessionStore | None = None  # their browser sessions; default: from the settings
    login_throttle: FailureThrottle | None = None  # failed sign-ins; default: from the settings
    volumes: VolumeCache[Any] | None = None  # series the review page shows; from the settings
    oidc: OidcSignIn | None = None  # the identity provider's sign-in; default: PREREAD_OIDC_*
    lineup: LiveLineup | None = None  # the model versions' stages; default: made on first use

    def __post_init__(self) -> None:
        if self.renders is None:
            self.renders = RenderCache(self.settings.report_cache_size)
        if self.grant_store is None:
            self.grant_store = GrantStore(self.store.engine)
        if self.grants is None:
            self.grants = self.grant_store
        if self.audit is None:
            self.audit = AuditWriter(AuditLog(self.store.engine))
        if self.idempotency is None:
            self.idempotency = IdempotencyKeys(self.store.engine)
        if self.unauthenticated is None:
            self.unauthenticated = UnauthenticatedGuard(
                self.audit, self.settings.unauthenticated_per_minute
            )
        if self.webhook_policy is None:
            self.webhook_policy = DestinationPolicy.from_settings(self.settings)
        if self.accounts is None:
            self.accounts = AccountStore(self.store.engine)
        if self.oidc is None:  # OidcConfigError for incomplete settings: the app does not start
            self.oidc = OidcSignIn.from_settings(
                self.settings, self.store.engine, audit=self.accounts.audit
            )
        if self.sessions is None:
            self.sessions = SessionStore(
                self.store.engine, SessionPolicy.from_settings(self.settings)
            )
        if self.login_throttle is None:
            self.login_throttle = FailureThrottle(
                per_client_and_source=self.settings.login_failures_per_account,
                per_source=self.settings.login_failures_per_source,
            )
        if self.volumes is None:
            self.volumes = VolumeCache(
                self.settings.ui_volume_cache_mb * 1024 * 1024, self.settings.ui_volume_cache_ttl_s
            )

    @property
    def auditor(self) -> AuditWriter:
        assert self.audit is not None
        return self.audit

    @property
    def guard(self) -> UnauthenticatedGuard:
        """Unauthenticated traffic: its limit per source and its aggregated audit."""
        assert self.unauthenticated is not None
        return self.unauthenticated

    @property
    def destinations(self) -> DestinationPolicy:
        """Which webhook URLs may be registered (the deliverer checks them again)."""
        assert self.webhook_policy is not None
        return self.webhook_policy


def services_of(request: Request) -> Services:
    """The app's services (``create_app`` puts them in its state)."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]

OAUTH2_SCHEME = "OAuth2ClientCredentials"
"""The OAuth2 scheme's name in the OpenAPI document (a route that declares its parameters by
hand names it in its ``security``)."""
oauth2 = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="/oauth/token",
            scopes={
                Scope.REPORTS_READ.value: "read studies, jobs and reports of the tenant",
                Scope.REPORTS_WRITE.value: "send the tenant's final radiology reports",
                Scope.STUDIES_ANALYZE.value: "request the (re)analysis of a study",
                Scope.MODELS_READ.value: "read model cards and evaluations",
                Scope.WEBHOOKS_MANAGE.value: "register and manage webhooks",
                Scope.ADMIN.value: "every scope, within the tenant (not grants:manage)",
                Scope.GRANTS_MANAGE.value: "the authorization platform: issue and revoke grants",
            },
        )
    ),
    scheme_name=OAUTH2_SCHEME,
    auto_error=False,
)


Bearer = Annotated[str | None, Depends(oauth2)]
"""The ``Authorization`` header, through the OAuth2 scheme (so that OpenAPI shows it)."""


def _unauthorized(detail: str, error: str = "invalid_token") -> HTTPException:
    return HTTPException(
        401,
        detail,
        headers={"WWW-Authenticate": f'Bearer realm="preread", error="{error}"'},
    )


async def authenticate(
    request: Request, services: Services, authorization: str | None
) -> Principal:
    """The caller, from ``Authorization: Bearer <JWT>``: verified, active, within its rate.

    A request without a valid token counts against its source's allowance of unauthenticated
    traffic (429 beyond it); a failed authentication is audited, aggregated per source
    (:mod:`preread.api.unauthenticated`).

    ``async``: it runs on the event loop (no thread hop per request); its work is in memory
    (verified tokens and client states are cached) except a client-state query every 30 s.
    """
    if not authorization:
        raise await _unauthenticated(
            services,
            request,
            HTTPException(
                401,
                "authentication required",
                headers={"WWW-Authenticate": 'Bearer realm="preread"'},
            ),
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise await _unauthenticated(
            services,
            request,
            _unauthorized("use Authorization: Bearer <access token>", "invalid_request"),
        )
    try:
        who = services.tokens.verify(token.strip())
    except AuthError as exc:
        raise await _unauthenticated(
            services, request, _unauthorized(str(exc)), "unauthenticated", str(exc)
        ) from None
    if not services.clients.is_active(who.client_id):  # cached: a query every 30 s at most
        raise await _unauthenticated(
            services,
            request,
            _unauthorized("the client of this token is revoked"),
            f"client:{who.client_id}",
            "revoked client",
        )
    wait = services.limiter.take(who.client_id, who.rate_limit_per_minute)
    if wait > 0:
        raise HTTPException(
            429,
            f"rate limit of {who.rate_limit_per_minute} requests per minute exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    request.state.client_id = who.client_id
    return who


async def _unauthenticated(
    services: Services,
    request: Request,
    refusal: HTTPException,
    actor: str | None = None,
    reason: str | None = None,
) -> HTTPException:
    """``refusal`` (401), or 429 once the source has sent more unauthenticated requests than
    its allowance. A failed authentication (``reason``) is counted for the audit trail; the
    first of its source's window is recorded before the answer (if that fails, it is logged:
    the request is refused either way, nothing is accessed)."""
    guard = services.guard
    source = source_key(request.client.host if request.client is not None else None)
    wait = guard.take(source)
    if reason is not None:
        event = guard.failed(source, actor or "unauthenticated", reason, rate_limited=wait > 0)
        if event is not None:
            try:
                await services.auditor.arecord(event)
            except AuditError as exc:
                log.error("could not audit a failed authentication: %s", exc)
    if wait > 0:
        return HTTPException(
            429,
            "too many unauthenticated requests from this address",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return refusal


async def authorized_caller(request: Request, authorization: str | None, scope: Scope) -> Principal:
    """The caller (:func:`authenticate`), if its token carries ``scope`` (or ``admin``): what
    :func:`require`'s dependency and :func:`preread.api.access.authorized_study`'s run."""
    who = await authenticate(request, services_of(request), authorization)
    if not who.can(scope):
        raise HTTPException(
            403,
            f"this token lacks the scope {scope.value}",
            headers={
                "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope.value}"'
            },
        )
    return who


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the principal, if its token carries ``scope`` (or ``admin``).

    One dependency with the bearer scheme as its only sub-dependency, the checks plain calls
    inside it: each level of dependencies costs FastAPI tens of microseconds per request
    (``bench/api_reports.py``)."""

    async def check(request: Request, authorization: Bearer) -> Principal:
        return await authorized_caller(request, authorization, scope)

    return check


ReportsReader = Annotated[Principal, Depends(require(Scope.REPORTS_READ))]
GrantsManager = Annotated[Principal, Depends(require(Scope.GRANTS_MANAGE))]
Analyzer = Annotated[Principal, Depends(require(Scope.STUDIES_ANALYZE))]
ModelsReader = Annotated[Principal, Depends(require(Scope.MODELS_READ))]
WebhooksManager = Annotated[Principal, Depends(require(Scope.WEBHOOKS_MANAGE))]
