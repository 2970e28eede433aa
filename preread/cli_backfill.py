"""``preread backfill run|status|worklist``: re-reading the archive, for operators.

``run`` finds the tenant's CT studies of a date range on the hospital's PACS
(``PREREAD_PRIORS_PEER``), and reads each one a quality-review grant covers, one at a time, in
this process, only while no live study waits (:mod:`preread.backfill.reader`). It is resumable:
the same command again continues the run where it stopped, and never reads a study twice.
``worklist`` lists the patients whose archived CT called for follow-up and who have no later CT
on the PACS, as JSON, CSV or a FHIR Bundle (:mod:`preread.backfill.exports`); it names the
patients (PatientID), so it is written to a file (0600) unless ``--out -`` asks for stdout.

The backfill works on the deployment's Orthanc and job store (``PREREAD_ORTHANC_URL``,
``PREREAD_DATABASE_URL``) beside the live service. With the embedded default (a private
Orthanc in ``PREREAD_DATA_DIR``), ``run`` starts that Orthanc itself, so it runs while
``preread serve`` is stopped — and then reads the live studies that arrive too, first. Beside
a deployment's Orthanc it reads no live study (the live service and its workers do).
Exit codes: 0 done, 2 the command could not run or was refused (one line saying why).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from preread.audit.cli import cli_actor
from preread.backfill.exports import to_csv, to_fhir, to_json
from preread.backfill.reader import (
    BackfillContext,
    BackfillError,
    live_jobs_waiting,
    run_backfill,
)
from preread.backfill.store import BackfillStore
from preread.backfill.worklist import lost_to_follow_up
from preread.composition import job_store
from preread.followup.priors import priors_setup
from preread.private_files import write_private_file
from preread.security.clients import check_tenant
from preread.settings import Settings

if TYPE_CHECKING:
    from dicom_gateway.client import OrthancClient
    from preread.service import Service

__all__ = ["backfill_app", "backfill_context", "register"]

backfill_app = typer.Typer(
    no_args_is_help=True,
    help="Re-read the archive (chest CTs on the PACS, under a quality-review grant) and list "
    "the patients who may have been lost to follow-up.",
)
Command = Callable[..., Any]
FORMATS = ("json", "csv", "fhir")


def register(app: typer.Typer, friendly: Callable[[Command], Command]) -> None:
    """Add ``preread backfill run|status|worklist`` to ``app``."""
    app.add_typer(backfill_app, name="backfill")
    for name, fn in (("run", run), ("status", status), ("worklist", worklist)):
        backfill_app.command(name)(friendly(fn))


def _orthanc(service: Service) -> OrthancClient:
    from dicom_gateway.client import OrthancClient

    if not isinstance(service.source, OrthancClient):
        raise BackfillError("the backfill needs PreRead's Orthanc (its REST API)")
    return service.source


def backfill_context(
    service: Service, *, live_busy: Callable[[], bool] | None = None
) -> BackfillContext:
    """A :class:`BackfillContext` on a started :class:`~preread.service.Service` (its Orthanc,
    job store, grants, audit trail and first model); the PACS is ``PREREAD_PRIORS_PEER``."""
    settings = service.settings
    client = _orthanc(service)
    setup = priors_setup(settings, client)
    if setup is None:
        raise BackfillError(
            "re-reading the archive needs the hospital's PACS: set PREREAD_PRIORS_PEER"
        )
    model = service.models[0]
    return BackfillContext(
        jobs=service.store,
        store=BackfillStore(service.store),
        workspace=client,
        archive=setup.source,  # type: ignore[arg-type]  # OrthancPriors: an ArchiveSource
        grants=service.grants,
        audit=service.audit,
        predictor=service.predictor(model.id, model.version),
        limits=settings.series_limits(),
        lung_rads=settings.lung_rads_policy(),
        peer_aet=setup.peer_aet,
        actor=cli_actor(),
        live_busy=live_busy if live_busy is not None else live_jobs_waiting(service.store),
    )


def _tenant(value: str) -> str:
    try:
        return check_tenant(value)
    except ValueError as exc:
        raise BackfillError(str(exc)) from None


def _date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BackfillError(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


def run(
    tenant: Annotated[str, typer.Option(help="whose archive (the grants are this tenant's)")],
    first: Annotated[str, typer.Option("--from", help="first study date, YYYY-MM-DD")],
    last: Annotated[str, typer.Option("--to", help="last study date, YYYY-MM-DD (included)")],
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.001, help="at most N studies an hour")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="stop after N studies (the same command resumes the run)"),
    ] = None,
) -> None:
    """Find the tenant's CT studies of the range on the PACS and read those not yet read."""
    from preread.service import Service

    _tenant(tenant)
    start, end = _date(first, "--from"), _date(last, "--to")
    if start > end:
        raise BackfillError(f"the range {start} to {end} ends before it starts")
    if Settings().priors_peer is None:
        raise BackfillError(
            "re-reading the archive needs the hospital's PACS: set PREREAD_PRIORS_PEER"
        )
    os.nice(19)  # live studies first, on this machine's cores too: the lowest CPU priority
    out = Console(highlight=False)
    with Service(Settings()) as service:
        if service.settings.orthanc_url is None:
            # the private Orthanc is this process's: the live studies that arrive are read
            # here, first; beside a deployment's Orthanc, its live service reads them
            service.start_loop()
        ctx = backfill_context(service)
        report = run_backfill(
            ctx,
            tenant,
            start,
            end,
            rate_per_hour=rate,
            started_by=cli_actor(),
            limit=limit,
            progress=lambda item: out.print(
                f"{item.study_date:%Y-%m-%d} {item.study_instance_uid}: {item.state}"
                + (f" ({item.reason})" if item.reason and item.state != "done" else "")
            ),
        )
    out.print(
        f"run {report.run.id} ({'resumed' if report.resumed else 'new'}): {report.found} "
        f"studies in the range, {report.new} new, {report.read} looked at now; "
        + ", ".join(f"{k} {v}" for k, v in report.counts.items() if v)
        + ("; finished" if report.finished else "; not finished: run the same command again")
    )


def status(tenant: Annotated[str, typer.Option(help="whose backfill runs")]) -> None:
    """The tenant's backfill runs and their studies per state."""
    _tenant(tenant)
    settings = Settings()
    jobs = job_store(settings)
    try:
        jobs.migrate()
        store = BackfillStore(jobs)
        table = Table(title=f"backfill runs of {tenant}")
        for column in ("run", "range", "started", "finished", "studies"):
            table.add_column(column)
        for r in store.runs(tenant):
            counts = store.counts(tenant, r.id)
            table.add_row(
                r.id,
                f"{r.first} .. {r.last}",
                f"{r.created_at:%Y-%m-%d %H:%M}",
                f"{r.finished_at:%Y-%m-%d %H:%M}" if r.finished_at else "",
                ", ".join(f"{k} {v}" for k, v in counts.items() if v),
            )
        Console(highlight=False).print(table)
    finally:
        jobs.close()


def worklist(
    tenant: Annotated[str, typer.Option(help="whose archive")],
    output: Annotated[Path, typer.Option("--out", help="file to write (0600); '-' for stdout")],
    export_format: Annotated[
        str, typer.Option("--format", help="json, csv or fhir (a FHIR R4 Bundle of Flags)")
    ] = "json",
) -> None:
    """Patients whose archived CT called for follow-up and who have no later CT on the PACS."""
    from preread.audit import AuditLog
    from preread.grants import GrantStore
    from preread.service import Service

    _tenant(tenant)
    if export_format not in FORMATS:
        raise BackfillError(f"--format {export_format!r}: one of {', '.join(FORMATS)}")
    with Service(Settings()) as service:
        setup = priors_setup(service.settings, _orthanc(service))
        if setup is None:
            raise BackfillError("the worklist asks the hospital's PACS: set PREREAD_PRIORS_PEER")
        audit: AuditLog = service.audit
        grants: GrantStore = service.grants
        cases = lost_to_follow_up(
            BackfillStore(service.store),
            setup.source,  # type: ignore[arg-type]  # OrthancPriors: an ArchiveSource
            audit,
            grants,
            tenant,
            sender_aet=setup.peer_aet or "",
            actor=cli_actor(),
            export_format=export_format,
        )
    now = dt.datetime.now(dt.UTC)
    text = {
        "json": lambda: to_json(cases),
        "csv": lambda: to_csv(cases),
        "fhir": lambda: to_fhir(cases, generated_at=now),
    }[export_format]()
    if str(output) == "-":
        typer.echo(text, nl=False)
        return
    write_private_file(output, text.encode())
    Console(highlight=False, stderr=True).print(f"{len(cases)} patient(s) listed in {output}")
