"""The signed-in pages through the one enforcement point (:mod:`preread.api.access`).

A radiologist reading in the browser is checked exactly like an API client: the study is looked
up for their tenant only, a ``clinical-preread`` grant in force must cover it, and the view (or
the refusal) is audited before the page is built — the actor is ``user:<username>``. A refusal is
a page that says why (403; a study that is not the tenant's, or not there: 404, the same page).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from preread.accounts import Reader
from preread.api.access import DetailFn, StudyAccess, listing_access, study_access
from preread.api.deps import ServicesDep
from preread.audit import AuditAction
from preread.grants import Purpose
from preread.results import NotAuthorizedError, StudyNotFoundError
from preread.security import Principal, Scope
from preread.ui.auth import PageReader
from preread.ui.templates import render

#: what a signed-in reader may do, in the enforcement point's terms
READER_SCOPES = frozenset({Scope.REPORTS_READ.value, Scope.STUDIES_ANALYZE.value})


class PageRefused(Exception):
    """A page the reader may not see: answered with ``error.html`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def refused_page(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, PageRefused)
    return render(request, "error.html", {"message": exc.message}, status_code=exc.status)


def reader_principal(reader: Reader) -> Principal:
    """The reader as the enforcement point's caller: their tenant, a clinical pre-read."""
    return Principal(
        client_id=reader.username,
        tenant=reader.tenant,
        scopes=READER_SCOPES,
        token_id="session",
        rate_limit_per_minute=0,
        purpose=Purpose.CLINICAL_PREREAD.value,
        kind="user",
    )


async def reader_listing(request: Request, services: ServicesDep, reader: PageReader) -> Principal:
    """A dependency: the reader, if a clinical-preread grant of their tenant is in force; the
    listing (it shows patients' names) audited, a refusal too (403 with the reason)."""
    try:
        return await listing_access(request, services, reader_principal(reader))
    except NotAuthorizedError as exc:
        raise PageRefused(403, f"Not authorized: {exc}") from exc


ReaderListing = Annotated[Principal, Depends(reader_listing)]


def reader_study(
    action: AuditAction = AuditAction.REPORT_READ, *, detail: DetailFn | None = None
) -> Callable[..., Awaitable[StudyAccess]]:
    """A dependency: the page's ``{study_uid}`` for the signed-in reader, checked and audited
    as ``action`` (:func:`preread.api.access.study_access`); ``detail`` adds to the audit
    record what the request asked for (e.g. which key image)."""

    async def check(request: Request, services: ServicesDep, reader: PageReader) -> StudyAccess:
        who = reader_principal(reader)
        try:
            return await study_access(
                request, services, who, None, action, Purpose.CLINICAL_PREREAD, detail
            )
        except StudyNotFoundError as exc:
            raise PageRefused(404, "No such study.") from exc
        except NotAuthorizedError as exc:
            raise PageRefused(403, f"Not authorized: {exc}") from exc

    return check
