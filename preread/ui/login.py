"""Signing in with a local account and out: ``/ui/login`` (GET the form, POST it),
``/ui/logout`` (POST), and the pages' stylesheet.

A failed sign-in is answered with one message whatever was wrong (unknown username, wrong
password, disabled account) after the same argon2 work (:meth:`AccountStore.authenticate`).
Failures are throttled (:class:`~preread.security.FailureThrottle`) per (username, source
address) and per source address, checked before any hashing: guessing one account's password
from one place is slowed down, while the account's owner, signing in from anywhere else, is
never refused for it; a success clears its (username, source) count. They are audited as
``auth.failed`` aggregated per source, actor and minute (:mod:`preread.api.unauthenticated`),
the actor ``user:<username>`` for an existing account and ``unknown-user`` otherwise (a
password typed into the username field must not reach the trail); the real reason is in the
record, never in the answer.
"""

from __future__ import annotations

import functools
import logging
import math
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import Field

from preread.accounts import AccountError, SignInFailure
from preread.accounts.records import normalize_username
from preread.accounts.store import SIGN_IN_FAILED
from preread.api.bodies import RequestBody
from preread.api.deps import Services, ServicesDep
from preread.audit import AuditError
from preread.ui.auth import (
    LOGIN_PATH,
    accounts,
    cookie_is_secure,
    current_session,
    login_throttle,
    sign_in,
    sign_out,
    source_of,
)
from preread.ui.csrf import (
    login_token,
    require_csrf,
    require_login_csrf,
    set_login_cookie,
)
from preread.ui.navigation import safe_next
from preread.ui.templates import render

log = logging.getLogger(__name__)
router = APIRouter(prefix="/ui", include_in_schema=False)
MAX_USERNAME_FIELD = 256
MAX_PASSWORD_FIELD = 4096


class SignInForm(RequestBody):
    """The sign-in form's fields (a NUL byte in any: 422, never a database query)."""

    username: str = Field(default="", max_length=MAX_USERNAME_FIELD)
    password: str = Field(default="", max_length=MAX_PASSWORD_FIELD)
    next: str = ""


def _form(
    request: Request,
    services: Services,
    target: str,
    *,
    username: str = "",
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    is_secure = cookie_is_secure(request, services)
    token = login_token(request, is_secure=is_secure)
    response = render(
        request,
        "login.html",
        {
            "next": target,
            "username": username,
            "error": error,
            "oidc": services.oidc.name if services.oidc is not None else None,
        },
        status_code=status_code,
        headers=headers,
    )
    set_login_cookie(response, token, is_secure=is_secure)
    return response


@router.get("/login", name="ui_login")
def login_form(
    request: Request,
    services: ServicesDep,
    next_path: Annotated[str | None, Query(alias="next")] = None,
) -> Response:
    """The sign-in form (already signed in: straight on to ``next``)."""
    target = safe_next(next_path)
    if current_session(request, services) is not None:
        return RedirectResponse(target, 303)
    return _form(request, services, target)


def _audit_failure(
    services: Services, source: str, actor: str, reason: str, *, rate_limited: bool
) -> None:
    event = services.guard.failed(source, actor, reason, rate_limited=rate_limited)
    if event is None:
        return  # counted in its window's summary
    try:
        services.auditor.record(event)
    except AuditError as exc:  # refused either way; nothing was accessed
        log.error("could not audit a failed sign-in: %s", exc)


@router.post("/login", name="ui_login_submit", dependencies=[Depends(require_login_csrf)])
def login(
    request: Request,
    services: ServicesDep,
    form: Annotated[SignInForm, Form()],
) -> Response:
    """Check the username and password; on success a session begins and the browser goes on
    to ``next`` (a path of this site only)."""
    username, password, next_path = form.username, form.password, form.next
    target = safe_next(next_path)
    source = source_of(request)
    key = normalize_username(username)[:64] or "-"
    throttle = login_throttle(services)
    wait = throttle.wait(key, source)
    if wait > 0:
        _audit_failure(services, source, "unknown-user", "too many failures", rate_limited=True)
        minutes = max(1, math.ceil(wait / 60))
        return _form(
            request,
            services,
            target,
            username=username,
            error=f"Too many failed sign-ins from this address. Try again in {minutes} min.",
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    try:
        user = accounts(services).authenticate(username, password)
        response = RedirectResponse(target, 303)
        sign_in(request, response, services, user.id, method="password")
    except SignInFailure as failure:
        throttle.failed(key, source)
        _audit_failure(services, source, failure.actor, failure.reason, rate_limited=False)
        return _failed(request, services, target, username, str(failure))
    except AccountError as exc:  # disabled between the check and the session
        throttle.failed(key, source)
        _audit_failure(services, source, f"user:{key}", str(exc), rate_limited=False)
        return _failed(request, services, target, username, SIGN_IN_FAILED)
    throttle.succeeded(key, source)
    return response


def _failed(
    request: Request, services: Services, target: str, username: str, message: str
) -> Response:
    return _form(
        request,
        services,
        target,
        username=username,
        error=f"Sign-in failed: {message}.",
        status_code=401,
        headers={"WWW-Authenticate": 'Session realm="preread"'},
    )


@router.post("/logout", name="ui_logout", dependencies=[Depends(require_csrf)])
def logout(request: Request, services: ServicesDep) -> Response:
    """End the session server-side and clear its cookie; back to the sign-in page."""
    response = RedirectResponse(LOGIN_PATH, 303)
    sign_out(request, response, services)
    return response


@functools.cache
def _stylesheet() -> bytes:
    return resources.files("preread.ui").joinpath("static/preread.css").read_bytes()


@router.get("/static/preread.css", name="ui_stylesheet")
def stylesheet() -> Response:
    """The pages' one stylesheet."""
    return Response(
        _stylesheet(),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
