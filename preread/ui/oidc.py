"""Signing in through the hospital's identity provider: ``POST /ui/login/oidc`` (the sign-in
page's "Sign in with …" button) sends the browser to the provider, ``GET /ui/oidc/callback``
takes it back (:class:`~preread.oidc.OidcSignIn` does the protocol).

The browser is bound to its sign-ins by a random token in the cookie ``preread_oidc``
(``__Host-preread_oidc`` over https): HttpOnly, ``SameSite=Lax`` (it comes along on the
provider's top-level redirect back), for :data:`~preread.oidc.LOGIN_TTL_S`; the server keeps
only its hash beside each sign-in's state, nonce and PKCE verifier. A callback that this
browser did not start, a used or expired one, is refused before any code is exchanged.

Starting is unauthenticated traffic: each start spends one of the source address's
``PREREAD_UNAUTHENTICATED_PER_MINUTE`` (429 beyond), which bounds the sign-ins in progress that
one address can leave in the table.

Every refusal is a page that says what happened and what to do, answered 400 (the callback is
not one of ours), 403 (the provider, the ID token's checks, the claims or the account refused)
or 502 (the provider cannot be reached), and is audited as ``auth.failed`` (aggregated per
source and actor like the password form's; the reason names the check, never a code or a
token). A success starts a session (:func:`~preread.ui.sign_in`, ``method="oidc"``, audited
``user.sign_in``) and goes on to where the person was going.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse

from preread.accounts import AccountError
from preread.api.bodies import RequestBody
from preread.api.deps import Services, ServicesDep
from preread.audit import AuditError
from preread.oidc import (
    LOGIN_TTL_S,
    Callback,
    LoginStateError,
    OidcError,
    OidcSignIn,
    ProviderError,
    new_browser_token,
)
from preread.ui.auth import cookie_is_secure, sign_in, sign_in_redirect, source_of
from preread.ui.csrf import require_login_csrf
from preread.ui.navigation import HOME, safe_next
from preread.ui.templates import render

log = logging.getLogger(__name__)
router = APIRouter(prefix="/ui", include_in_schema=False)
BROWSER_COOKIE = "preread_oidc"
_TOKEN_LENGTH = 43


def browser_cookie_name(is_secure: bool) -> str:
    return f"__Host-{BROWSER_COOKIE}" if is_secure else BROWSER_COOKIE


def status_of(error: OidcError) -> int:
    """The HTTP status of a refused sign-in (the one place that maps them)."""
    if isinstance(error, LoginStateError):
        return 400
    if isinstance(error, ProviderError):
        return 502
    return 403


def _oidc(services: Services) -> OidcSignIn:
    if services.oidc is None:
        raise HTTPException(404, "OpenID Connect sign-in is not configured")
    return services.oidc


def _browser(request: Request, is_secure: bool) -> str | None:
    token = request.cookies.get(browser_cookie_name(is_secure), "")
    usable = len(token) == _TOKEN_LENGTH and token.replace("-", "").replace("_", "").isalnum()
    return token if usable else None


def _refused(
    request: Request, services: Services, oidc: OidcSignIn, error: OidcError, next_path: str
) -> Response:
    source = source_of(request)
    event = services.guard.failed(source, error.actor, error.reason, rate_limited=False)
    if event is not None:
        try:
            services.auditor.record(event)
        except AuditError as exc:  # refused either way
            log.error("could not audit a refused OpenID Connect sign-in: %s", exc)
    log.info("OpenID Connect sign-in refused from %s: %s", source, error.reason)
    return render(
        request,
        "oidc_error.html",
        {"provider": oidc.name, "message": str(error), "retry": sign_in_redirect(next_path)},
        status_code=status_of(error),
    )


class StartForm(RequestBody):
    """The "Sign in with …" form: where to go afterwards (a NUL byte: 422, never stored)."""

    next: str = ""


@router.post("/login/oidc", name="ui_login_oidc", dependencies=[Depends(require_login_csrf)])
def start(
    request: Request,
    services: ServicesDep,
    form: Annotated[StartForm, Form()],
) -> Response:
    """Begin a sign-in at the identity provider: 303 to its authorization endpoint."""
    oidc = _oidc(services)
    target = safe_next(form.next)
    wait = services.guard.take(source_of(request))  # each start keeps a row for minutes
    if wait > 0:
        return render(
            request,
            "oidc_error.html",
            {
                "provider": oidc.name,
                "message": "Too many sign-ins started from this address: try again in a minute.",
                "retry": sign_in_redirect(target),
            },
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    is_secure = cookie_is_secure(request, services)
    browser = _browser(request, is_secure) or new_browser_token()
    redirect_uri = oidc.config.redirect_uri or str(request.url_for("ui_oidc_callback"))
    try:
        url = oidc.start(browser, redirect_uri=redirect_uri, next_path=target)
    except OidcError as error:
        return _refused(request, services, oidc, error, target)
    response = RedirectResponse(url, 303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        browser_cookie_name(is_secure),
        browser,
        max_age=int(LOGIN_TTL_S),
        path="/",
        secure=is_secure,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/oidc/callback", name="ui_oidc_callback")
def callback(
    request: Request,
    services: ServicesDep,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    error_description: Annotated[str | None, Query(max_length=1024)] = None,
    iss: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """The provider's redirect back: a session and on to where the person was going, or a
    page that says why not."""
    oidc = _oidc(services)
    is_secure = cookie_is_secure(request, services)
    answer = Callback(
        state=state, code=code, error=error, error_description=error_description, iss=iss
    )
    try:
        done = oidc.finish(answer, _browser(request, is_secure) or "")
    except OidcError as refused:
        return _refused(request, services, oidc, refused, HOME)
    response = RedirectResponse(done.next_path, 303, headers={"Cache-Control": "no-store"})
    try:
        sign_in(request, response, services, done.user.id, method="oidc")
    except AccountError as exc:  # disabled since, or removed
        late = OidcError(f"Your PreRead account cannot sign in: {exc}.", f"oidc: {exc}")
        late.actor = f"user:{done.user.username}"
        return _refused(request, services, oidc, late, done.next_path)
    response.delete_cookie(
        browser_cookie_name(is_secure), path="/", secure=is_secure, httponly=True, samesite="lax"
    )
    return response
