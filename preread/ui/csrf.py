"""Cross-site request forgery protection for every unsafe request of the browser pages.

Signed-in requests (:func:`require_csrf`): a **synchronizer token bound to the session**. The
token is HMAC-SHA256 of a fixed label keyed by the session's own token (the cookie), so it is
the same for the whole session, different for every session, checked without storing anything,
and useless without the cookie; it reveals nothing about the cookie (the HMAC is one-way). Pages
put it in every form (``{{ csrf_input }}`` in a template) and in a ``<meta name="csrf-token">``
for ``fetch()``, which sends it as the ``X-CSRF-Token`` header.

The sign-in form (:func:`require_login_csrf`): there is no session yet, so a **double-submit
cookie**: ``GET /ui/login`` sets a random token in an HttpOnly cookie and the same token in the
form; the POST must bring both, equal. This stops a forged sign-in into the attacker's account.
Over https the cookie is named with the ``__Host-`` prefix, which a sibling subdomain cannot set.

A refusal is 403 naming what was wrong (missing, or not this session's). Both checks are
dependencies; :func:`unprotected_routes` lists routes that need one and lack it, and
:func:`preread.ui.install` refuses to build an app with any.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

SESSION_COOKIE = "preread_session"
LOGIN_COOKIE = "preread_login_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
LOGIN_COOKIE_MAX_AGE_S = 3600
_LABEL = b"preread csrf v1"
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_STATE = "preread_csrf"


def session_token_for_csrf(session_token: str) -> str:
    """The CSRF token of the session whose cookie holds ``session_token``."""
    digest = hmac.new(session_token.encode("utf-8", "surrogateescape"), _LABEL, hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def csrf_token(request: Request) -> str:
    """The token the page rendered for ``request`` must put in its forms: the session's once a
    reader dependency ran (or :func:`preread.ui.sign_in`), the sign-in form's on the login
    page; "" when the request has neither (a page without forms)."""
    return str(getattr(request.state, _STATE, ""))


def remember(request: Request, token: str) -> None:
    """Make ``token`` what :func:`csrf_token` gives for ``request``."""
    setattr(request.state, _STATE, token)


def secure(request: Request, forced: bool) -> bool:
    """Whether cookies set in answer to ``request`` are Secure: always when ``forced``
    (``PREREAD_SESSION_COOKIE_SECURE``), else when the request came over https."""
    return forced or request.url.scheme == "https"


def login_cookie_name(is_secure: bool) -> str:
    return f"__Host-{LOGIN_COOKIE}" if is_secure else LOGIN_COOKIE


def login_token(request: Request, *, is_secure: bool) -> str:
    """The sign-in form's token for ``request``: the browser's current one if it has one (two
    open sign-in tabs both work), else a new one; :func:`csrf_token` gives it from now on. Put
    it in the cookie with :func:`set_login_cookie`."""
    token = request.cookies.get(login_cookie_name(is_secure), "")
    if not (40 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()):
        token = secrets.token_urlsafe(32)
    remember(request, token)
    return token


def set_login_cookie(response: Response, token: str, *, is_secure: bool) -> None:
    response.set_cookie(
        login_cookie_name(is_secure),
        token,
        max_age=LOGIN_COOKIE_MAX_AGE_S,
        path="/",
        secure=is_secure,
        httponly=True,
        samesite="lax",
    )


def forget_login_token(response: Response, *, is_secure: bool) -> None:
    name = login_cookie_name(is_secure)
    response.delete_cookie(name, path="/", secure=is_secure, httponly=True, samesite="lax")


def _refuse(problem: str) -> HTTPException:
    return HTTPException(403, f"CSRF check failed: {problem}")


async def _presented(request: Request) -> str | None:
    header = request.headers.get(HEADER)
    if header is not None:
        return header
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in _FORMS:
        return None
    value = (await request.form()).get(FIELD)
    return value if isinstance(value, str) else None


async def require_csrf(request: Request) -> None:
    """A dependency: an unsafe request (not GET, HEAD, OPTIONS, TRACE) must carry its session's
    CSRF token, as the form field ``csrf_token`` or the header ``X-CSRF-Token``; 403 otherwise."""
    if request.method in SAFE_METHODS:
        return
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        raise _refuse("no session cookie: sign in again, then resend")
    presented = await _presented(request)
    if not presented:
        raise _refuse(f"the request carries no CSRF token (form field {FIELD} or {HEADER} header)")
    if not hmac.compare_digest(presented.encode(), session_token_for_csrf(session).encode()):
        raise _refuse("the CSRF token is not this session's: reload the page and try again")


async def require_login_csrf(request: Request) -> None:
    """A dependency of the sign-in POST: the form's ``csrf_token`` must equal the sign-in
    cookie's (double submit); 403 otherwise."""
    services = getattr(request.app.state, "services", None)
    forced = bool(services is not None and services.settings.session_cookie_secure)
    cookie = request.cookies.get(login_cookie_name(secure(request, forced)))  # only that name
    presented = await _presented(request)
    if not cookie:
        raise _refuse("the sign-in cookie is missing: reload the sign-in page (cookies needed)")
    if not presented:
        raise _refuse(f"the sign-in form carries no CSRF token ({FIELD})")
    if not hmac.compare_digest(presented.encode(), cookie.encode()):
        raise _refuse("the sign-in form's CSRF token does not match its cookie: reload the page")


CHECKS: tuple[Callable[[Request], Any], ...] = (require_csrf, require_login_csrf)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def unprotected_routes(
    routes: Sequence[BaseRoute], cookie_auth: Sequence[Callable[..., Any]] = ()
) -> list[str]:
    """``METHOD path`` of each route that takes unsafe methods and lacks a CSRF check, among
    the routes under ``/ui`` and those that depend on one of ``cookie_auth`` (the reader
    dependencies: a route signed in by cookie is a form route wherever it is)."""
    missing: list[str] = []
    for context in iter_route_contexts(routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        unsafe = sorted(set(context.methods or ()) - SAFE_METHODS)
        dependant = getattr(context, "dependant", None)
        if not unsafe or not isinstance(dependant, Dependant):
            continue
        calls = set(_calls(dependant))
        path = str(context.path)
        by_cookie = path.startswith("/ui") or any(c in calls for c in cookie_auth)
        if by_cookie and not any(check in calls for check in CHECKS):
            missing.extend(f"{method} {path}" for method in unsafe)
    return missing
