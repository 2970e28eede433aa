"""Who is signed in: the session cookie, the reader dependencies, signing in and out.

The cookie ``preread_session`` holds the session's token (:mod:`preread.accounts.sessions`):
HttpOnly, ``SameSite=Lax`` (sent on a top-level navigation back from the identity provider,
which Strict would not; never on cross-site subrequests or POSTs), ``Path=/`` (the viewer and
its DICOMweb proxy use it too), Secure over https or when ``PREREAD_SESSION_COOKIE_SECURE``,
and no ``Max-Age`` (it ends with the browser; the server ends it sooner, idle or at its
lifetime).

A route asks for the reader::

    @router.get("/ui/worklist")
    def worklist(request: Request, reader: PageReader) -> HTMLResponse: ...   # 303 to sign-in

    @router.get("/ui/api/findings")
    def findings(reader: XhrReader) -> list[Finding]: ...                      # 401

and the OpenID Connect callback, once it knows the user, calls :func:`sign_in`.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Request, Response

from preread.accounts import AccountStore, ActiveSession, Reader, SessionStore
from preread.api.deps import Services, ServicesDep
from preread.security import FailureThrottle, source_key
from preread.ui.csrf import (
    SESSION_COOKIE,
    forget_login_token,
    remember,
    secure,
    session_token_for_csrf,
)
from preread.ui.navigation import HOME, safe_next

LOGIN_PATH = "/ui/login"
_SESSION = "preread_session"
_READER = "preread_reader"


class SignInRequired(Exception):
    """Raised by :func:`page_reader` without a live session; answered 303 to the sign-in
    page with ``next`` = where the person was going (:func:`sign_in_redirect`)."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path


def accounts(services: Services) -> AccountStore:
    assert services.accounts is not None  # Services.__post_init__ makes one
    return services.accounts


def sessions(services: Services) -> SessionStore:
    assert services.sessions is not None
    return services.sessions


def login_throttle(services: Services) -> FailureThrottle:
    assert services.login_throttle is not None
    return services.login_throttle


def source_of(request: Request) -> str:
    """The request's source address as failures are counted (an IPv6 /64 counts as one)."""
    return source_key(request.client.host if request.client is not None else None)


def cookie_is_secure(request: Request, services: Services) -> bool:
    return secure(request, services.settings.session_cookie_secure)


def signed_in(request: Request) -> Reader | None:
    """The reader a reader dependency found for ``request`` (None before, or when none)."""
    reader = getattr(request.state, _READER, None)
    return reader if isinstance(reader, Reader) else None


def current_session(request: Request, services: Services) -> ActiveSession | None:
    """The live session of ``request``'s cookie, looked up once per request."""
    if hasattr(request.state, _SESSION):
        found: ActiveSession | None = getattr(request.state, _SESSION)
        return found
    token = request.cookies.get(SESSION_COOKIE)
    found = sessions(services).resolve(token) if token else None
    setattr(request.state, _SESSION, found)
    if found is not None and token:
        setattr(request.state, _READER, found.reader)
        remember(request, session_token_for_csrf(token))
    return found


def page_reader(request: Request, services: ServicesDep) -> Reader:
    """A dependency of HTML pages: the signed-in reader; without a live session,
    :class:`SignInRequired` (303 to the sign-in page, back here after)."""
    found = current_session(request, services)
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(safe_next(target) if request.method == "GET" else HOME)
    return found.reader


def xhr_reader(request: Request, services: ServicesDep) -> Reader:
    """A dependency of JSON routes called by the pages (``fetch()``): the signed-in reader;
    401 without a live session."""
    found = current_session(request, services)
    if found is None:
        raise HTTPException(
            401, "sign-in required", headers={"WWW-Authenticate": 'Session realm="preread"'}
        )
    return found.reader


PageReader = Annotated[Reader, Depends(page_reader)]
XhrReader = Annotated[Reader, Depends(xhr_reader)]


def sign_in(
    request: Request, response: Response, services: Services, user_id: str, *, method: str
) -> Reader:
    """Start a session for ``user_id`` (audited ``user.sign_in``) and set its cookie on
    ``response``; the browser's previous session, if any, ends (audited ``user.sign_out``).

    For every way of proving who one is: the password form (``method="password"``) and the
    OpenID Connect callback (``method="oidc"``), after its own checks.

    Raises:
        UserNotFoundError, AccountError: no such user, or disabled.
        AuditError: the sign-in could not be recorded (no session started).
    """
    store = sessions(services)
    source = source_of(request)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        store.end(previous, source=source)
    started = store.start(user_id, method=method, source=source)
    is_secure = cookie_is_secure(request, services)
    response.set_cookie(
        SESSION_COOKIE, started.token, path="/", secure=is_secure, httponly=True, samesite="lax"
    )
    forget_login_token(response, is_secure=is_secure)
    setattr(request.state, _READER, started.reader)
    remember(request, session_token_for_csrf(started.token))
    return started.reader


def sign_out(request: Request, response: Response, services: Services) -> Reader | None:
    """End the request's session server-side (audited ``user.sign_out``) and clear its
    cookie; the reader it was, or None when it was no live session."""
    token = request.cookies.get(SESSION_COOKIE)
    reader = sessions(services).end(token, source=source_of(request)) if token else None
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=cookie_is_secure(request, services),
        httponly=True,
        samesite="lax",
    )
    return reader


def sign_in_redirect(next_path: str) -> str:
    """The sign-in page's URL, coming back to ``next_path`` after."""
    return LOGIN_PATH if next_path == HOME else f"{LOGIN_PATH}?{urlencode({'next': next_path})}"
