"""``preread audit ...``: verify the audit trail, sign checkpoints of it, export it as FHIR,
purge it after retention.

The store is the job store's database (``PREREAD_DATABASE_URL``, else SQLite in
``PREREAD_DATA_DIR``), migrated first; the signed checkpoints are a file outside it
(``PREREAD_AUDIT_CHECKPOINT_FILE``, key ``PREREAD_AUDIT_CHECKPOINT_KEY_FILE``, see
:mod:`preread.audit.checkpoints`). Exit codes: 0 done (``verify``: the trail is intact), 1
``verify`` or ``checkpoint`` found a problem in the trail or the checkpoint file, 2 the command
could not run (the error says why).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from preread.audit.chain import Checkpoint
from preread.audit.checkpoints import (
    CheckpointFile,
    CheckpointsTampered,
    SignedCheckpoint,
    TrailDoesNotVerify,
    sign_head,
    verify_signed,
)
from preread.audit.fhir import write_audit_bundle
from preread.audit.log import (
    DEFAULT_RETENTION_DAYS,
    AuditAction,
    AuditEvent,
    AuditLog,
    Outcome,
    retention_cutoff,
)
from preread.composition import job_store
from preread.errors import PrereadError
from preread.settings import Settings

audit_app = typer.Typer(
    no_args_is_help=True, help="The audit trail: verify, checkpoint, export (FHIR), purge."
)


@contextmanager
def _audit_log() -> Iterator[AuditLog]:
    """The audit log in the configured store; PreRead's errors end the command (exit 2)."""
    with _trail() as (log, _):
        yield log


@contextmanager
def _trail() -> Iterator[tuple[AuditLog, CheckpointFile]]:
    """The audit log and the configured file of signed checkpoints (exit 2 as above)."""
    try:
        settings = Settings()
        checkpoints = CheckpointFile(
            settings.audit_checkpoint_path, settings.audit_checkpoint_key_path
        )
        store = job_store(settings)
        try:
            store.migrate()
            yield AuditLog(store.engine), checkpoints
        finally:
            store.close()
    except (PrereadError, OSError) as exc:  # OSError: the export file cannot be written
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _signed(checkpoints: CheckpointFile) -> list[SignedCheckpoint]:
    """Every line of the checkpoint file; a line that does not verify ends the command (1)."""
    try:
        return checkpoints.read()
    except CheckpointsTampered as exc:
        typer.echo(f"audit checkpoints broken: {exc}")
        raise typer.Exit(1) from None


def cli_actor() -> str:
    """Who runs this command, for the audit trail: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def _checkpoint(value: str | None) -> Checkpoint | None:
    if value is None:
        return None
    try:
        return Checkpoint.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _when(value: str | None, *, end: bool) -> datetime | None:
    """A date (the whole day counts: ``--until`` is the day after, exclusive) or an ISO 8601
    time (naive means UTC) as an aware UTC datetime."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end and len(value) == 10:  # a date alone: up to the end of that day
        parsed += timedelta(days=1)
    return parsed.astimezone(UTC)


@audit_app.command("verify")
def verify(
    expected_head: Annotated[
        str | None,
        typer.Option(help="a checkpoint '<seq>:<hash>' kept elsewhere (detects a cut tail)"),
    ] = None,
) -> None:
    """Check the chain against every signed checkpoint; exit 1 at the first problem.

    The problem names the checkpoint's line when it contradicts one."""
    expected = _checkpoint(expected_head)
    with _trail() as (log, checkpoints):
        signed = _signed(checkpoints)
        result = verify_signed(log, signed, expected_head=expected, now=datetime.now(UTC))
    typer.echo(result.message)
    if not result.ok:
        raise typer.Exit(1)
    typer.echo(f"head: {result.head}")
    if signed:
        typer.echo(f"signed checkpoints: {len(signed)} in {checkpoints.path}, all held")
    else:
        typer.echo(
            f"signed checkpoints: none in {checkpoints.path}; without them a trail rewritten"
            " by someone who can bypass the database's triggers verifies too"
            " (run `preread audit checkpoint` regularly)",
            err=True,
        )


@audit_app.command("checkpoint")
def checkpoint() -> None:
    """Verify the trail, then sign its head into the checkpoint file; print it.

    The head '<seq>:<hash>' printed also serves as `verify --expected-head`."""
    with _trail() as (log, checkpoints):
        try:
            point = sign_head(log, checkpoints, datetime.now(UTC))
        except TrailDoesNotVerify as exc:
            typer.echo(str(exc))
            typer.echo("refusing to sign the head of a trail that does not verify", err=True)
            raise typer.Exit(1) from None
        except CheckpointsTampered as exc:
            typer.echo(f"audit checkpoints broken: {exc}")
            raise typer.Exit(1) from None
    assert point is not None  # not only_if_new: always signed
    typer.echo(str(point.checkpoint))
    typer.echo(f"signed and appended to {checkpoints.path} (line {point.line})", err=True)


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="the FHIR R4B Bundle (JSON) to write")],
    since: Annotated[str | None, typer.Option(help="from this date/time (UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="up to this date (inclusive) or time")] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
    study: Annotated[str | None, typer.Option(help="only this Study Instance UID's")] = None,
) -> None:
    """Write the records as a FHIR R4B Bundle of AuditEvents (this export is audited too)."""
    start, stop = _when(since, end=False), _when(until, end=True)
    filters = {"since": since, "until": until, "tenant": tenant, "study": study}
    with _audit_log() as log, out.open("wb") as sink:  # no record of an export that cannot be
        log.record(  # written; no export without its record
            AuditEvent(
                cli_actor(),
                AuditAction.AUDIT_EXPORT,
                Outcome.SUCCESS,
                tenant=tenant,
                study_instance_uid=study,
                detail={k: v for k, v in filters.items() if v},
            )
        )
        records = log.records(since=start, until=stop, tenant=tenant, study_uid=study)
        count = write_audit_bundle(records, sink, timestamp=datetime.now(UTC))
    typer.echo(f"exported {count} records to {out}")


@audit_app.command("purge")
def purge(
    days: Annotated[
        int, typer.Option(help="keep this many days (at least 180: six months by law)")
    ] = DEFAULT_RETENTION_DAYS,
) -> None:
    """Remove the records older than the retention period; the chain still verifies."""
    with _audit_log() as log:
        now = datetime.now(UTC)
        cutoff = retention_cutoff(now, days)
        removed = log.purge(days, now, actor=cli_actor())
    typer.echo(f"purged {removed} records before {cutoff:%Y-%m-%d %H:%M:%S} UTC")
