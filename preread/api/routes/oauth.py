"""OAuth2 token endpoint (client-credentials grant, RFC 6749 4.4) and the public keys.

Errors follow RFC 6749 5.2: ``{"error": ..., "error_description": ...}``, 400 for a bad
request, 401 with ``WWW-Authenticate: Basic`` for failed client authentication, 429
``slow_down`` with ``Retry-After`` when the source failed too often (counted per source and per
(client, source) by :class:`~preread.security.FailureThrottle`, *before* the secret is hashed)
or a client asked for too many tokens (counted on successes only, so nobody without the secret
can lock a client out).

Failed attempts (a wrong secret, or one refused with 429 for the failures before it) are
audited as ``auth.failed`` aggregated per (client, source) and window, by the mechanism that
aggregates failed bearer tokens (:mod:`preread.api.unauthenticated`): a guessing run adds at
most two records per client, source and minute, each with its ``count``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from preread.api.deps import Services, ServicesDep
from preread.api.ids import is_client_id
from preread.audit import AuditError
from preread.security import AuthError, InvalidClientError, source_key

log = logging.getLogger(__name__)
router = APIRouter(tags=["oauth"])
TOKEN_REQUESTS_PER_MINUTE = 60  # tokens issued per client id (successes only)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str
    purpose: str


def _error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="preread"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _slow_down(wait: float) -> JSONResponse:
    return JSONResponse(
        {"error": "slow_down", "error_description": "too many token requests"},
        status_code=429,
        headers={"Retry-After": str(max(1, int(wait) + 1)), "Cache-Control": "no-store"},
    )


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _audit_failure(
    services: Services, source: str, client_id: str, reason: str, *, limited: bool
) -> None:
    """Count a failed token request in the aggregated ``auth.failed`` records of
    :class:`~preread.api.unauthenticated.UnauthenticatedGuard` (per client, source and
    window): the first of a window is recorded before the answer, the rest as one record with
    their count when the window closes."""
    event = services.guard.failed(source, f"client:{client_id}", reason, rate_limited=limited)
    if event is None:
        return
    try:
        services.auditor.record(event)
    except AuditError as exc:
        log.error("could not audit a failed authentication: %s", exc)


@router.post(
    "/oauth/token",
    response_model=TokenOut,
    responses={400: {"description": "invalid request"}, 401: {"description": "invalid client"}},
)
def token(
    request: Request,
    services: ServicesDep,
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
    purpose: Annotated[
        str | None, Form(description="purpose of use (default: the client's first)")
    ] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Any:
    """Exchange client credentials (HTTP Basic or form fields) for a short-lived access token."""
    if grant_type != "client_credentials":
        return _error(400, "unsupported_grant_type", "only client_credentials is supported")
    basic = _basic(authorization)
    if basic is not None:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        return _error(401, "invalid_client", "client_id and client_secret are required")
    if not is_client_id(client_id) or len(client_secret) > 256:  # e.g. a NUL: never queried
        return _error(401, "invalid_client", "client authentication failed")
    source = source_key(request.client.host if request.client else None)
    wait = services.token_failures.wait(client_id, source)
    if wait > 0:  # before any hashing: failed guesses cannot be turned into CPU load
        _audit_failure(services, source, client_id, "too many failed attempts", limited=True)
        return _slow_down(wait)
    try:
        client = services.clients.authenticate(client_id, client_secret)
    except InvalidClientError:
        services.token_failures.failed(client_id, source)
        _audit_failure(services, source, client_id, "invalid_client", limited=False)
        return _error(401, "invalid_client", "client authentication failed")
    services.token_failures.succeeded(client_id, source)
    wait = services.limiter.take(f"token:{client_id}", TOKEN_REQUESTS_PER_MINUTE)
    if wait > 0:  # only the secret's holder can get here
        return _slow_down(wait)
    try:
        issued = services.tokens.issue(client, scope.split() if scope else None, purpose)
    except AuthError as exc:
        return _error(400, "invalid_scope", str(exc))
    return JSONResponse(
        TokenOut(
            access_token=issued.access_token,
            expires_in=issued.expires_in,
            scope=issued.scope,
            purpose=issued.purpose,
        ).model_dump(),
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@router.get("/oauth/jwks.json")
def jwks(services: ServicesDep) -> dict[str, Any]:
    """The public keys that verify PreRead's access tokens (JSON Web Key Set)."""
    return services.tokens.keys.jwks()
