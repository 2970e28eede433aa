"""Rendering the pages: Jinja2 templates from ``preread/ui/templates`` (autoescaped), with the
CSRF token and the signed-in reader in every template's context, and the headers every page
gets (a strict Content-Security-Policy, no framing, no caching of signed-in pages).

In a template: ``{{ csrf_input }}`` inside every ``<form method="post">``; ``{{ csrf_token }}``
for other uses (``base.html`` puts it in ``<meta name="csrf-token">`` for ``fetch()``, sent as
the ``X-CSRF-Token`` header); ``reader`` is the :class:`~preread.accounts.Reader` or None.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
from starlette.templating import Jinja2Templates

from preread.ui.auth import signed_in
from preread.ui.csrf import FIELD, csrf_token

PAGE_HEADERS: Mapping[str, str] = {
    # No inline script or style, nothing from elsewhere. No form-action: the OpenID Connect
    # sign-in submits a form that redirects to the identity provider (browsers apply
    # form-action to that redirect too).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _context(request: Request) -> dict[str, Any]:
    token = csrf_token(request)
    return {
        "csrf_token": token,
        "csrf_input": Markup(f'<input type="hidden" name="{FIELD}" value="{escape(token)}">'),
        "reader": signed_in(request),
    }


@functools.cache
def templates() -> Jinja2Templates:
    """The pages' templates (built on first use, once per process)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("preread.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return Jinja2Templates(env=env, context_processors=[_context])


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The template ``name`` as a page, with :data:`PAGE_HEADERS` (and ``headers``)."""
    return templates().TemplateResponse(
        request,
        name,
        dict(context or {}),
        status_code=status_code,
        headers={**PAGE_HEADERS, **(headers or {})},
    )
