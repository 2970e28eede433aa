"""``preread discrepancies``: the hospital's final reports compared with the AI, for operators;
and the MLLP listener ``preread serve`` starts (:func:`mllp_listener`).

``discrepancies --tenant T [--format json|fhir] [--out FILE]`` lists the tenant's final reports
whose study the AI read differently (:mod:`preread.finalreports`): nodules of 6 mm or more one
side does not mention, and sizes that disagree. It names exams (accession numbers), so it
needs a quality-review grant in force for the tenant (the comparison reviews PreRead's
results), is audited as an ``export``, and ``--out`` writes the file with mode 0600; without
``--out`` it goes to stdout. Exit codes: 0 listed, 2 refused or could not run (one line).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.cli import cli_actor
from preread.composition import job_store
from preread.finalreports.errors import FinalReportError
from preread.finalreports.exports import to_fhir_bundle, to_list
from preread.finalreports.intake import MLLP_PURPOSE, check_grant
from preread.finalreports.store import FinalReportStore
from preread.finalreports.worklist import tenant_comparisons
from preread.grants import GrantStore
from preread.private_files import write_private_file
from preread.results import NotAuthorizedError
from preread.security.clients import check_tenant
from preread.settings import Settings

if TYPE_CHECKING:
    from preread.finalreports.mllp import MllpListener

__all__ = ["discrepancies", "mllp_listener", "register"]

Command = Callable[..., Any]
FORMATS = ("json", "fhir")


def register(app: typer.Typer, friendly: Callable[[Command], Command]) -> None:
    """Add ``preread discrepancies`` to ``app``."""
    app.command("discrepancies")(friendly(discrepancies))


def discrepancies(
    tenant: Annotated[str, typer.Option(help="whose final reports")],
    export_format: Annotated[
        str, typer.Option("--format", help="json, or fhir (a FHIR R4 Bundle of DetectedIssues)")
    ] = "json",
    output: Annotated[
        Path | None, typer.Option("--out", help="file to write (0600); default: stdout")
    ] = None,
) -> None:
    """Final reports that disagree with the AI's reading of their study."""
    try:
        check_tenant(tenant)
    except ValueError as exc:
        raise FinalReportError(str(exc)) from None
    if export_format not in FORMATS:
        raise FinalReportError(f"--format {export_format!r}: one of {', '.join(FORMATS)}")
    settings = Settings()
    store = job_store(settings)
    try:
        store.migrate()
        audit = AuditLog(store.engine)
        purpose = MLLP_PURPOSE.value
        actor = cli_actor()
        try:
            check_grant(GrantStore(store.engine), tenant, purpose)
        except NotAuthorizedError as exc:
            audit.record(
                AuditEvent(
                    actor=actor,
                    action=AuditAction.ACCESS_REFUSED,
                    outcome=Outcome.REFUSED,
                    tenant=tenant,
                    purpose=purpose,
                    detail={"what": "discrepancies", "reason": str(exc)},
                )
            )
            raise FinalReportError(f"refused: {exc}") from None
        comparisons = tenant_comparisons(store, FinalReportStore(store, audit=audit), tenant)
        now = dt.datetime.now(dt.UTC)
        listed = to_list(tenant, comparisons, generated_at=now)
        text = (
            listed.model_dump_json(indent=2)
            if export_format == "json"
            else to_fhir_bundle(comparisons, generated_at=now)
        )
        audit.record(
            AuditEvent(
                actor=actor,
                action=AuditAction.EXPORT,
                outcome=Outcome.SUCCESS,
                tenant=tenant,
                purpose=purpose,
                detail={
                    "what": "discrepancies",
                    "format": export_format,
                    "reports": listed.counts.with_discrepancies,
                    "discrepancies": listed.counts.discrepancies,
                },
            )
        )
    finally:
        store.close()
    if output is None:
        typer.echo(text)
        return
    write_private_file(output, text.encode())
    Console(highlight=False, stderr=True).print(
        f"{listed.counts.discrepancies} discrepancies in {listed.counts.with_discrepancies} "
        f"report(s) written to {output}"
    )


def mllp_listener(settings: Settings, service: Any) -> MllpListener | None:
    """The started MLLP listener for ``preread serve`` (None when ``PREREAD_MLLP_PORT`` is
    unset): on the service's job store, grants and audit trail."""
    if settings.mllp_port is None:
        return None
    from preread.finalreports.mllp import FinalReportReceiver, MllpConfig, MllpListener

    config = MllpConfig.from_settings(settings)
    receiver = FinalReportReceiver(
        config,
        FinalReportStore(service.store, audit=service.audit),
        service.grants,
        service.audit,
    )
    try:
        listener = MllpListener(receiver)
    except OSError as exc:
        raise FinalReportError(
            f"the MLLP listener cannot listen on {config.host}:{config.port} "
            f"(PREREAD_MLLP_HOST/PREREAD_MLLP_PORT): {exc.strerror or exc}"
        ) from None
    listener.start()
    Console(highlight=False).print(
        f"MLLP:    {config.host}:{listener.port} (HL7 v2 ORU^R01 final reports; "
        f"{len(config.senders)} sending facilities)"
    )
    return listener
