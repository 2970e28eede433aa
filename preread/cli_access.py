"""``preread clients ...`` and ``preread keys ...``: who may call the API, and the keys that sign
their tokens. Registered on the main CLI by :mod:`preread.cli`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from inference.registry import Registry
from preread.cli_console import command_console
from preread.composition import job_store
from preread.errors import PrereadError
from preread.grants import GrantSpec, GrantStore, Purpose
from preread.grants.purposes import PURPOSES
from preread.grants.records import check_senders
from preread.grants.requeue import queue_newly_covered
from preread.security import SCOPES, ClientStore, KeyRing
from preread.settings import Settings
from preread.store import JobStore

clients_app = typer.Typer(no_args_is_help=True, help="API clients (OAuth2 client credentials).")
keys_app = typer.Typer(no_args_is_help=True, help="Token signing keys: list, rotate, retire.")


@contextmanager
def _clients(settings: Settings) -> Iterator[ClientStore]:
    store = job_store(settings)
    try:
        store.migrate()
        yield ClientStore(store.engine)
    finally:
        store.close()


def create_client(
    tenant: Annotated[str, typer.Option(help="the tenant whose studies the client sees")],
    scopes: Annotated[
        str, typer.Option(help=f"space- or comma-separated, among: {' '.join(SCOPES)}")
    ] = "reports:read",
    name: Annotated[str, typer.Option(help="who uses it (e.g. 'RIS of hospital A')")] = "",
    rate_limit: Annotated[int, typer.Option(help="requests per minute (default setting)")] = 0,
    purposes: Annotated[
        str,
        typer.Option(
            help=f"purposes of use its tokens may declare, first = default: {' '.join(PURPOSES)}"
        ),
    ] = "clinical-preread",
) -> None:
    """Create a client; prints its id and secret ONCE (only a hash of the secret is kept)."""
    settings = Settings()
    wanted = [s for s in scopes.replace(",", " ").split() if s]
    uses = [p for p in purposes.replace(",", " ").split() if p]
    with _clients(settings) as clients:
        try:
            client, secret = clients.create(
                tenant, name, wanted, rate_limit or settings.rate_limit_per_minute, uses
            )
        except ValueError as exc:
            raise PrereadError(str(exc)) from None
    out = command_console()
    out.print(f"client_id:     {client.client_id}")
    out.print(f"client_secret: {secret}")
    out.print(f"tenant:        {client.tenant}")
    out.print(f"scopes:        {' '.join(sorted(client.scopes))}")
    out.print(f"purposes:      {' '.join(client.purposes)}")
    out.print("The secret is shown once; store it in the client's secret manager.")


def list_clients(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
) -> None:
    """The API clients (never their secrets)."""
    with _clients(Settings()) as clients:
        rows = clients.list(tenant)
    t = Table(title="API clients")
    t.add_column("client_id", no_wrap=True, min_width=20)  # whole on any terminal: it is typed
    for col in ("tenant", "name", "scopes", "per minute", "created", "revoked"):
        t.add_column(col)
    for c in rows:
        t.add_row(
            c.client_id,
            c.tenant,
            c.name,
            " ".join(sorted(c.scopes)),
            str(c.rate_limit_per_minute),
            f"{c.created_at:%Y-%m-%d %H:%M}",
            f"{c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "",
        )
    command_console().print(t)


def revoke_client(client_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a client: no new tokens; its tokens stop working within 30 s."""
    with _clients(Settings()) as clients:
        client = clients.revoke(client_id)
    command_console().print(f"revoked {client.client_id} (tenant {client.tenant})")


def list_keys() -> None:
    """The signing keys (newest signs)."""
    ring = KeyRing(Settings().signing_keys_dir)
    ids = ring.ids()
    out = command_console()
    for kid in ids:
        out.print(f"{kid}{'  (signs)' if kid == ids[-1] else ''}")
    if not ids:
        out.print("no signing key yet (one is made when the API first starts)")


def rotate_keys() -> None:
    """Make a new signing key; the older ones keep verifying until retired."""
    key = KeyRing(Settings().signing_keys_dir).rotate()
    command_console().print(
        f"new signing key {key.kid}; retire older keys after one token lifetime"
    )


def retire_key(kid: Annotated[str, typer.Argument()]) -> None:
    """Delete an older key: tokens it signed stop verifying."""
    KeyRing(Settings().signing_keys_dir).retire(kid)
    command_console().print(f"retired {kid}")


grants_app = typer.Typer(no_args_is_help=True, help="Authorization grants: create, list, revoke.")


@contextmanager
def _grants(settings: Settings) -> Iterator[tuple[JobStore, GrantStore]]:
    store = job_store(settings)
    try:
        store.migrate()
        yield store, GrantStore(store.engine)
    finally:
        store.close()


def _date(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    compact = value.replace("-", "")
    if len(compact) != 8 or not compact.isdigit():
        raise PrereadError(f"{name} {value!r}: a date YYYY-MM-DD")
    return compact


def _moment(value: str | None, default: datetime, name: str) -> datetime:
    if value is None:
        return default
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PrereadError(f"{name} {value!r}: an ISO 8601 date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def create_grant(
    tenant: Annotated[str, typer.Option(help="the data source: the tenant whose studies")],
    purpose: Annotated[str, typer.Option(help=f"one of: {' '.join(PURPOSES)}")],
    legal_basis: Annotated[str, typer.Option(help="law, contract or consent reference")],
    issued_by: Annotated[str, typer.Option(help="who issued it on the platform")],
    sender: Annotated[
        list[str] | None, typer.Option(help="only studies sent by this AE title (repeat)")
    ] = None,
    modality: Annotated[list[str] | None, typer.Option(help="only this modality (repeat)")] = None,
    study_date_from: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD")] = None,
    study_date_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD")] = None,
    study: Annotated[list[str] | None, typer.Option(help="only this StudyInstanceUID")] = None,
    valid_from: Annotated[str | None, typer.Option(help="ISO date-time (default now)")] = None,
    valid_to: Annotated[str | None, typer.Option(help="ISO date-time (default +365 days)")] = None,
) -> None:
    """Issue a grant; studies of the source that waited for it are queued for reading."""
    now = datetime.now(UTC)
    start = _moment(valid_from, now, "--valid-from")
    try:
        wanted = Purpose(purpose)
    except ValueError:
        raise PrereadError(f"unknown purpose {purpose!r} (known: {', '.join(PURPOSES)})") from None
    spec = GrantSpec(
        tenant=tenant,
        purpose=wanted,
        valid_from=start,
        valid_to=_moment(valid_to, start + timedelta(days=365), "--valid-to"),
        legal_basis=legal_basis,
        issued_by=issued_by,
        sender_aets=tuple(sender or ()),
        modalities=tuple(modality or ()),
        study_date_from=_date(study_date_from, "--from"),
        study_date_to=_date(study_date_to, "--to"),
        study_uids=tuple(study) if study else None,
    )
    settings = Settings()
    with _grants(settings) as (store, grants):
        grant = grants.create(check_senders(spec, settings.tenant_of))
        queued = queue_newly_covered(store, grant)
    out = command_console()
    out.print(f"grant {grant.id}: {grant.purpose.value} of {grant.tenant}'s studies")
    spec = grant.spec
    out.print(f"  valid {spec.valid_from:%Y-%m-%d %H:%M} to {spec.valid_to:%Y-%m-%d %H:%M} UTC")
    if queued:
        out.print(f"  {len(queued)} studies that waited for a grant are queued for reading")


def list_grants(
    tenant: Annotated[str | None, typer.Option()] = None,
    purpose: Annotated[str | None, typer.Option()] = None,
) -> None:
    """The grants, newest first."""
    wanted = Purpose(purpose) if purpose else None
    with _grants(Settings()) as (_, grants):
        rows = grants.list(tenant=tenant, purpose=wanted)
    t = Table(title="grants")
    t.add_column("id", no_wrap=True, min_width=36)  # whole on any terminal: it is typed
    for col in ("tenant", "purpose", "scope", "valid", "legal basis", "revoked"):
        t.add_column(col)
    for g in rows:
        s = g.spec
        scope = " ".join(
            part
            for part in (
                f"AE {','.join(s.sender_aets)}" if s.sender_aets else "",
                " ".join(s.modalities),
                f"{s.study_date_from or '…'}–{s.study_date_to or '…'}"
                if s.study_date_from or s.study_date_to
                else "",
                f"{len(s.study_uids)} studies" if s.study_uids is not None else "",
            )
            if part
        )
        t.add_row(
            g.id,
            g.tenant,
            g.purpose.value,
            scope or "all",
            f"{s.valid_from:%Y-%m-%d}–{s.valid_to:%Y-%m-%d}",
            s.legal_basis,
            f"{g.revoked_at:%Y-%m-%d} {g.revoked_by}" if g.revoked_at else "",
        )
    command_console().print(t)


def revoke_grant(
    grant_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="why")],
    by: Annotated[str, typer.Option(help="who revokes it")],
) -> None:
    """Revoke a grant now; lists the installed models trained on its studies."""
    settings = Settings()
    with _grants(settings) as (_, grants):
        grant = grants.revoke(grant_id, by=by, reason=reason)
    out = command_console()
    out.print(f"revoked grant {grant.id} ({grant.purpose.value} of {grant.tenant})")
    trained = [
        f"{p.card.id} {p.card.version}"
        for p in Registry(settings.models_dir).list()
        if grant.id in p.card.training.grants
    ]
    if trained:
        out.print("models trained on its studies (review them): " + ", ".join(trained))
    elif grant.purpose is Purpose.MODEL_TRAINING:
        out.print("no installed model was trained on its studies")
