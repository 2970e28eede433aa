"""``preread clients ...`` and ``preread keys ...``: who may call the API, and the keys that sign
their tokens. Registered on the main CLI by :mod:`preread.cli`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from preread.errors import PrereadError
from preread.security import SCOPES, ClientStore, KeyRing
from preread.settings import Settings
from preread.store import JobStore, default_url

clients_app = typer.Typer(no_args_is_help=True, help="API clients (OAuth2 client credentials).")
keys_app = typer.Typer(no_args_is_help=True, help="Token signing keys: list, rotate, retire.")
out = Console()


@contextmanager
def _clients(settings: Settings) -> Iterator[ClientStore]:
    store = JobStore.create(settings.database_url or default_url(settings.data_dir))
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
) -> None:
    """Create a client; prints its id and secret ONCE (only a hash of the secret is kept)."""
    settings = Settings()
    wanted = [s for s in scopes.replace(",", " ").split() if s]
    with _clients(settings) as clients:
        try:
            client, secret = clients.create(
                tenant, name, wanted, rate_limit or settings.rate_limit_per_minute
            )
        except ValueError as exc:
            raise PrereadError(str(exc)) from None
    out.print(f"client_id:     {client.client_id}")
    out.print(f"client_secret: {secret}")
    out.print(f"tenant:        {client.tenant}")
    out.print(f"scopes:        {' '.join(sorted(client.scopes))}")
    out.print("The secret is shown once; store it in the client's secret manager.")


def list_clients(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
) -> None:
    """The API clients (never their secrets)."""
    with _clients(Settings()) as clients:
        rows = clients.list(tenant)
    t = Table(title="API clients")
    for col in ("client_id", "tenant", "name", "scopes", "per minute", "created", "revoked"):
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
    out.print(t)


def revoke_client(client_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a client: no new tokens; its tokens stop working within 30 s."""
    with _clients(Settings()) as clients:
        client = clients.revoke(client_id)
    out.print(f"revoked {client.client_id} (tenant {client.tenant})")


def list_keys() -> None:
    """The signing keys (newest signs)."""
    ring = KeyRing(Settings().signing_keys_dir)
    ids = ring.ids()
    for kid in ids:
        out.print(f"{kid}{'  (signs)' if kid == ids[-1] else ''}")
    if not ids:
        out.print("no signing key yet (one is made when the API first starts)")


def rotate_keys() -> None:
    """Make a new signing key; the older ones keep verifying until retired."""
    key = KeyRing(Settings().signing_keys_dir).rotate()
    out.print(f"new signing key {key.kid}; retire older keys after one token lifetime")


def retire_key(kid: Annotated[str, typer.Argument()]) -> None:
    """Delete an older key: tokens it signed stop verifying."""
    KeyRing(Settings().signing_keys_dir).retire(kid)
    out.print(f"retired {kid}")
