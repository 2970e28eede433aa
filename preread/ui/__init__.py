"""PreRead's pages for people: sign-in, and the pages signed-in readers use (``/ui/…``).

Server-rendered HTML (Jinja2, :mod:`.templates`), no script needed to sign in. What other
pages build on:

* :data:`PageReader` / :data:`XhrReader` — the signed-in :class:`~preread.accounts.Reader` as a
  dependency: HTML pages redirect (303) to the sign-in page, JSON routes answer 401;
* :func:`sign_in` — start a session for a user and set its cookie (the password form and the
  OpenID Connect callback);
* :func:`require_csrf` — on every router of unsafe routes; :func:`csrf_token` and the
  ``csrf_input`` / ``csrf_token`` template variables put the token into forms and ``fetch()``;
* :func:`render` — a template as a page, with the pages' security headers;
* :func:`install` — the routes and the sign-in redirect, into the app.
"""

from preread.ui.app import install
from preread.ui.auth import (
    PageReader,
    SignInRequired,
    XhrReader,
    page_reader,
    sign_in,
    sign_out,
    signed_in,
    xhr_reader,
)
from preread.ui.csrf import csrf_token, require_csrf
from preread.ui.navigation import safe_next
from preread.ui.templates import render

__all__ = [
    "PageReader",
    "SignInRequired",
    "XhrReader",
    "csrf_token",
    "install",
    "page_reader",
    "render",
    "require_csrf",
    "safe_next",
    "sign_in",
    "sign_out",
    "signed_in",
    "xhr_reader",
]
