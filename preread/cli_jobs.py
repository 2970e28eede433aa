"""``preread jobs ...``: the jobs, for operators: list them, show one with why it ended as it
did, retry a failed or refused one. Registered on the main CLI by :mod:`preread.cli`.

Admin-only, like ``preread clients``, ``grants`` and ``audit``: the commands work on the job
store itself (``PREREAD_DATABASE_URL``, else SQLite in ``PREREAD_DATA_DIR``, migrated first),
so only whoever holds its credentials can run them, and no API route offers them (a client sees
its own tenant's jobs, through the enforcement point :mod:`preread.api.access`). Each command is
audited before it prints or changes anything, as ``cli:<login name>`` (a listing and a job
shown: ``report.read``; a retry, and a refused one: ``analysis.request``); a failed audit write
stops it.

*Failed* jobs ended on an error; *refused* ones (``not_authorized``) found no grant that
covers their study. ``retry`` queues either again (attempts reset); the running service
(``preread serve``, or ``preread watch``'s leader) sends it to a worker at its next reconcile
(``PREREAD_RECONCILE_INTERVAL_S``, a minute by default). Other states are not retried: a
``not_applicable`` study has no series the model reads (it is read again when it grows), a
``done`` one is read again through ``POST /api/v1/studies/{uid}/analyze``.

What they print identifies a study by its Study Instance UID (``show`` only), as ``preread
read`` and the audit trail do, never by the patient's name, id, birth date or accession number
(the store holds them; they stay there). Reasons are printed as printable ASCII: they quote
header values, which are untrusted bytes. Exit codes: 0 done, 2 the command could not run or
was refused (one line saying why).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dicom_gateway.errors import printable
from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Json
from preread.audit.cli import cli_actor
from preread.cli_console import command_console
from preread.composition import job_store
from preread.errors import PrereadError
from preread.security.clients import check_tenant
from preread.settings import Settings
from preread.store import (
    IllegalTransitionError,
    JobRecord,
    JobState,
    JobStore,
)

__all__ = ["RETRYABLE", "jobs_app", "list_jobs", "register", "retry_job", "show_job"]

jobs_app = typer.Typer(
    no_args_is_help=True,
    help="Jobs, for operators: list, show (with the reason of a failed or refused job), retry.",
)
RETRYABLE = frozenset({JobState.FAILED, JobState.NOT_AUTHORIZED})
"""Failed (an error) and refused (no grant covered the study) jobs: what ``retry`` queues."""
LIST_REASON_CHARS = 160
Command = Callable[..., Any]


def register(app: typer.Typer, friendly: Callable[[Command], Command]) -> None:
    """Add ``preread jobs list|show|retry`` to ``app``; ``friendly`` prints PreRead's errors
    as one line and exits 2 (the main CLI's wrapper)."""
    app.add_typer(jobs_app, name="jobs")
    for name, fn in (("list", list_jobs), ("show", show_job), ("retry", retry_job)):
        jobs_app.command(name)(friendly(fn))


@contextmanager
def _store() -> Iterator[tuple[JobStore, AuditLog]]:
    settings = Settings()
    store = job_store(settings)
    try:
        store.migrate()
        yield store, AuditLog(store.engine)
    finally:
        store.close()


def _job_id(value: str) -> str:
    """``value`` if it is a job id (a UUID as PreRead writes it): nothing else is queried
    (PostgreSQL refuses a NUL byte in text, for one)."""
    from preread.api.ids import PATH_IDS  # here: the API's imports only when a command runs

    if not PATH_IDS["job_id"].accepts(value):
        raise PrereadError(f"job id '{printable(value, 80)}' is not a job id (a UUID)")
    return value


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def _reason(job: JobRecord, limit: int) -> str:
    if not job.reason:
        return ""
    code = job.reason_code if job.reason_code != job.state.value else None  # not_authorized
    text = f"{code}: {job.reason}" if code else job.reason
    return printable(text, limit)


def _event(
    action: AuditAction,
    outcome: Outcome,
    detail: dict[str, Json],
    *,
    tenant: str | None = None,
    study: str | None = None,
) -> AuditEvent:
    return AuditEvent(
        cli_actor(), action, outcome, tenant=tenant, study_instance_uid=study, detail=detail
    )


def _tenant_of(store: JobStore, job: JobRecord) -> str | None:
    study = store.study(job.study_instance_uid)
    return None if study is None else study.tenant


def list_jobs(
    state: Annotated[
        list[JobState] | None,
        typer.Option(help="only jobs in this state (repeat; default: every current job)"),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's studies")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 50,
) -> None:
    """The jobs, most recently changed first, with the reason of every one that failed, was
    refused or was not applicable."""
    if tenant is not None:
        try:
            check_tenant(tenant)
        except ValueError as exc:
            raise PrereadError(printable(str(exc))) from None
    states = tuple(dict.fromkeys(state or ()))
    with _store() as (store, audit):
        page = store.list_jobs(states=states, tenant=tenant, limit=limit)
        detail: dict[str, Json] = {"command": "jobs list", "limit": limit}
        if states:
            detail["states"] = [s.value for s in states]
        detail["shown"] = len(page.items)
        audit.record(_event(AuditAction.REPORT_READ, Outcome.SUCCESS, detail, tenant=tenant))
    out = command_console()
    if not page.items:
        out.print("no jobs match")
        return
    t = Table(title=f"jobs ({len(page.items)} of {page.total}, newest first)")
    t.add_column("job", no_wrap=True, min_width=36)
    for col in ("tenant", "model", "state", "attempts", "updated (UTC)"):
        t.add_column(col)
    t.add_column("reason", overflow="fold")
    for item in page.items:
        job = item.job
        t.add_row(
            job.id,
            item.tenant or "",
            f"{job.model_id} {job.model_version}" + (" (shadow)" if job.shadow else ""),
            job.state.value,
            str(job.attempts),
            _when(job.updated_at),
            escape(_reason(job, LIST_REASON_CHARS)),
        )
    out.print(t)


def show_job(job_id: Annotated[str, typer.Argument(help="the job's id (a UUID)")]) -> None:
    """One job: its study, model, state and why (the reason of a failed, refused or not
    applicable job, and the verdict on each series), times, lease, outputs."""
    wanted = _job_id(job_id)
    with _store() as (store, audit):
        job = store.get(wanted)
        tenant = _tenant_of(store, job)
        decisions = store.decisions(job.id)
        held = job.in_progress and job.lease_expires_at is not None
        audit.record(
            _event(
                AuditAction.REPORT_READ,
                Outcome.SUCCESS,
                {"command": "jobs show", "job_id": job.id},
                tenant=tenant,
                study=job.study_instance_uid,
            )
        )
    lines = [
        ("job", job.id),
        ("study", job.study_instance_uid),
        ("orthanc study", job.orthanc_study_id),
        ("tenant", tenant or "(none)"),
        ("model", f"{job.model_id} {job.model_version}" + (" (shadow)" if job.shadow else "")),
        ("state", job.state.value + ("  (can be retried)" if job.state in RETRYABLE else "")),
        ("attempts", str(job.attempts)),
        ("reason", _reason(job, 2000)),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("updated", _when(job.updated_at)),
        ("lease", f"{job.lease_owner} until {_when(job.lease_expires_at)}" if held else ""),
        ("last worker", "" if held else job.lease_owner or ""),
        ("series read", job.series_instance_uid or ""),
        ("provider", job.provider_used or job.provider_requested or ""),
        ("provider warning", printable(job.provider_warning or "")),
        ("findings", "" if job.findings_count is None else str(job.findings_count)),
        ("SR written", job.outputs.sr.sop_instance_uid if job.outputs.sr else ""),
        ("SEG written", job.outputs.seg.sop_instance_uid if job.outputs.seg else ""),
        ("supersedes", job.supersedes or ""),
        ("superseded by", job.superseded_by or ""),
        ("rerun requested", "yes (the study grew while it ran)" if job.rerun_requested else ""),
    ]
    out = command_console()
    for name, value in lines:
        if value:
            out.print(f"{name + ':':<17} {escape(value)}", soft_wrap=True)
    if decisions:
        out.print("series decisions:")
        for d in decisions:
            verdict = "eligible" if d.eligible else "not eligible"
            out.print(
                f"  {escape(d.series_instance_uid)}  {verdict}: {escape(printable(d.reason))}",
                soft_wrap=True,
            )


def retry_job(job_id: Annotated[str, typer.Argument(help="the job's id (a UUID)")]) -> None:
    """Queue a failed or refused (not_authorized) job again, attempts reset; other states are
    refused, saying why. The running service sends it to a worker at its next reconcile."""
    wanted = _job_id(job_id)
    with _store() as (store, audit):
        job = store.get(wanted)
        tenant = _tenant_of(store, job)
        detail: dict[str, Json] = {
            "command": "jobs retry",
            "job_id": job.id,
            "from_state": job.state.value,
        }

        def record(outcome: Outcome, **more: Json) -> None:
            audit.record(
                _event(
                    AuditAction.ANALYSIS_REQUEST,
                    outcome,
                    {**detail, **more},
                    tenant=tenant,
                    study=job.study_instance_uid,
                )
            )

        if job.state not in RETRYABLE:
            why = _not_retryable(job)
            record(Outcome.REFUSED, reason=why)
            raise PrereadError(f"job {job.id} is not retried: {why}")
        record(Outcome.SUCCESS)  # no retry without its record
        try:
            queued = store.retry(job.id)
        except IllegalTransitionError:  # changed since it was read (a worker, a grant)
            now = store.get(job.id).state.value
            why = f"it changed meanwhile and is {now} now"
            record(Outcome.REFUSED, reason=why)
            raise PrereadError(f"job {job.id} is not retried: {why}") from None
    out = command_console()
    reason = _reason(job, 2000)
    out.print(
        f"job {queued.id} queued again (was {job.state.value}"
        + (f": {escape(reason)})" if reason else ")"),
        soft_wrap=True,
    )
    out.print(
        "a running `preread serve` or `preread watch` sends it to a worker at its next"
        " reconcile (PREREAD_RECONCILE_INTERVAL_S)"
    )
    if job.state is JobState.NOT_AUTHORIZED:
        out.print(
            "it is refused again unless a grant in force covers its study (`preread grants list`)"
        )


def _not_retryable(job: JobRecord) -> str:
    state = job.state
    if state is JobState.SUPERSEDED:
        return f"it is superseded by job {job.superseded_by} (retry that one if it failed)"
    if state is JobState.QUEUED or job.in_progress:
        return f"it is {state.value}: it is being read already"
    if state is JobState.DONE:
        return (
            "it is done: to read the study again, POST"
            f" /api/v1/studies/{job.study_instance_uid}/analyze (or send the study again)"
        )
    return (  # not_applicable
        "it is not_applicable (no series the model reads): the same images give the same answer;"
        " the study is read again when it grows"
    )
