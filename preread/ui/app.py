"""Putting the pages into the app: :func:`install`."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse

from preread.api.ids import check_path_ids
from preread.ui import discrepancies, login, monitoring, oidc, pages, review
from preread.ui.access import PageRefused, refused_page
from preread.ui.auth import SignInRequired, page_reader, sign_in_redirect, xhr_reader
from preread.ui.csrf import unprotected_routes


async def _to_sign_in(_: Request, exc: Exception) -> RedirectResponse:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(sign_in_redirect(exc.next_path), 303)


def install(app: FastAPI) -> None:
    """Add the pages' routes (``/ui/…``) to ``app`` and their sign-in redirect.

    Call it after the app's other routers: it refuses (RuntimeError) an app with a route that
    takes unsafe methods without a CSRF check, among the ``/ui`` routes and every route signed
    in by cookie (:func:`~preread.ui.csrf.unprotected_routes`).
    """
    for module in (login, oidc, pages, review, monitoring, discrepancies):
        app.include_router(module.router, dependencies=[Depends(check_path_ids)])
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_exception_handler(PageRefused, refused_page)
    missing = unprotected_routes(app.routes, cookie_auth=(page_reader, xhr_reader))
    if missing:
        raise RuntimeError(f"routes without a CSRF check (preread.ui.csrf): {missing}")
