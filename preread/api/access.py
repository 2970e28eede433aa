"""The one enforcement point for study data: every route that touches a study — reads and
writes — gets it through :func:`authorized_study` (the tenant's studies listing through
:func:`authorized_listing`), never from the store directly.

In this order, for the study a route names (``{study_uid}``, or the study of ``{job_id}``):

1. **tenant** — the study is looked up for the caller's tenant only: the view cache is keyed by
   the tenant and the database statement is scoped by it, so another tenant's study and a
   missing one take the same path to the same 404 (:mod:`preread.results`);
2. **purpose** — a route that serves one purpose of use (``POST .../analyze``: a clinical
   pre-read) refuses a token that declares another;
3. **grant** — a grant in force for the purpose covers the study (none, expired, revoked, for
   another purpose or scope: 403 saying why);
4. **audit** — the access (or the refusal) is recorded, group-committed, *before* the route
   runs: a route that gets a :class:`StudyAccess` has been authorized and audited. A failed
   audit write stops it (503).

``tests/api/test_access.py`` walks the app's route table: a route that is not on its short
allow-list and does not refuse and audit for every bad grant state fails the test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from preread.api import auditing
from preread.api.deps import (
    Bearer,
    Services,
    ServicesDep,
    authorized_caller,
    require,
    services_of,
)
from preread.api.ids import MODEL_ID_PATTERN
from preread.audit import AuditAction, Outcome
from preread.audit.chain import Json
from preread.caches import GrantCache
from preread.grants import Grant, Purpose
from preread.results import (
    NotAuthorizedError,
    StudyView,
    authorize,
    authorize_listing,
    cached_view,
    load_view,
    tenant_job,
)
from preread.security import Principal, Scope
from preread.store import JobRecord, StudyRecord

ModelQuery = Annotated[
    str | None,
    Query(max_length=128, pattern=MODEL_ID_PATTERN, description="model id (default: first)"),
]
DetailFn = Callable[[Request], Mapping[str, Json]]
"""What a route adds to its audit record, from the request (e.g. the report format)."""


@dataclass(frozen=True)
class StudyAccess:
    """A study the caller may use for its purpose, its access recorded."""

    who: Principal
    view: StudyView
    grant: Grant
    job: JobRecord | None = None
    """The job a ``/jobs/{job_id}`` route names."""

    @property
    def study(self) -> StudyRecord:
        return self.view.study

    @property
    def study_uid(self) -> str:
        return self.view.study.facts.study_instance_uid


def authorized_study(
    scope: Scope,
    action: AuditAction = AuditAction.REPORT_READ,
    *,
    purpose: Purpose | None = None,
    detail: DetailFn | None = None,
    by_model: bool = False,
) -> Callable[..., Awaitable[StudyAccess]]:
    """A dependency: the route's study as :class:`StudyAccess`, for a token with ``scope``,
    checked and audited as ``action`` (see the module docstring). ``purpose``: the purpose of
    use the route serves (default: the token's). ``by_model``: the route takes ``?model_id=``
    (the view holds that model's jobs)."""
    # one dependency, the bearer scheme its only sub-dependency: the caller's checks are calls
    # inside it (each level of dependencies costs FastAPI tens of microseconds per request)
    if by_model:

        async def with_model(
            request: Request, authorization: Bearer, model_id: ModelQuery = None
        ) -> StudyAccess:
            who = await authorized_caller(request, authorization, scope)
            return await study_access(
                request, services_of(request), who, model_id, action, purpose, detail
            )

        return with_model

    async def without_model(request: Request, authorization: Bearer) -> StudyAccess:
        who = await authorized_caller(request, authorization, scope)
        return await study_access(request, services_of(request), who, None, action, purpose, detail)

    return without_model


async def study_access(
    request: Request,
    services: Services,
    who: Principal,
    model_id: str | None,
    action: AuditAction,
    purpose: Purpose | None,
    detail: DetailFn | None,
    *,
    audit_success: bool = True,
) -> StudyAccess:
    """The route's study for ``who`` (tenant → purpose → grant → audit; the module docstring):
    what :func:`authorized_study`'s dependencies and the signed-in pages' (``preread.ui``)
    run. ``audit_success=False``: the caller has recorded this reader's access to this study
    moments ago (the DICOMweb proxy's frames, :mod:`preread.dicomweb`), so a granted access
    leaves no new record; every check still runs, and a refusal is always recorded."""
    params = request.path_params
    job: JobRecord | None = None
    if "study_uid" in params:
        uid = str(params["study_uid"])
        view = cached_view(services.views, who.tenant, uid, model_id)
        if view is None:
            view = await run_in_threadpool(
                load_view, services.store, who.tenant, uid, model_id, views=services.views
            )
    elif "job_id" in params:
        study, named = await run_in_threadpool(
            tenant_job, services.store, who.tenant, str(params["job_id"])
        )
        view, job = StudyView(study, (named,)), named
    else:  # a programming error, found by the route-table test
        raise RuntimeError(f"{_route(request)} names no study ({{study_uid}} or {{job_id}})")
    extra: dict[str, Json] = {"route": _route(request), **(detail(request) if detail else {})}
    shown = job or view.done or (view.jobs[0] if view.jobs else None)
    if shown is not None:
        extra["job_id"] = shown.id
    grant = await _authorize(services, who, view.study, action, purpose, extra, audit_success)
    return StudyAccess(who, view, grant, job)


async def authorized_listing(
    request: Request,
    services: ServicesDep,
    who: Annotated[Principal, Depends(require(Scope.REPORTS_READ))],
) -> Principal:
    """A dependency: the caller, if some grant for its purpose of use is in force for its
    tenant (each study shown still needs its own grant to be read); the listing is audited
    (it shows patient ids), a refusal too."""
    return await listing_access(request, services, who)


async def listing_access(request: Request, services: Services, who: Principal) -> Principal:
    """:func:`authorized_listing`'s check, for the signed-in pages' worklist too."""
    grant_store = services.grant_store
    assert grant_store is not None
    route: dict[str, Json] = {"route": _route(request)}
    try:
        await run_in_threadpool(authorize_listing, grant_store, who.tenant, who.purpose)
    except NotAuthorizedError as exc:
        await services.auditor.arecord(auditing.refused(who, None, str(exc), **route))
        raise
    await services.auditor.arecord(auditing.read(who, None, **route))
    return who


async def _authorize(
    services: Services,
    who: Principal,
    study: StudyRecord,
    action: AuditAction,
    purpose: Purpose | None,
    detail: dict[str, Json],
    audit_success: bool = True,
) -> Grant:
    uid = study.facts.study_instance_uid
    grants = services.grants
    assert grants is not None
    try:
        if purpose is not None and who.purpose != purpose.value:
            raise NotAuthorizedError(
                f"this route serves the purpose of use {purpose.value}; "
                f"the token declares {who.purpose}"
            )
        if isinstance(grants, GrantCache) and grants.active():
            grant = authorize(grants, study, who.purpose)  # from memory once filled
        else:
            grant = await run_in_threadpool(authorize, grants, study, who.purpose)
    except NotAuthorizedError as exc:
        await services.auditor.arecord(auditing.refused(who, uid, str(exc), **detail))
        raise
    if audit_success:
        event = auditing.access(who, action, Outcome.SUCCESS, uid, {**detail, "grant_id": grant.id})
        await services.auditor.arecord(event)
    return grant


def _route(request: Request) -> str:
    route: Any = request.scope.get("route")
    return str(getattr(route, "name", None) or "<unmatched>")
