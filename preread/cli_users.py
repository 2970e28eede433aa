"""``preread users ...``: people's local accounts, for administrators: create, list, disable,
enable, reset a password. Registered on the main CLI by :mod:`preread.cli`.

Like ``preread clients`` and ``grants``, the commands work on the job store itself
(``PREREAD_DATABASE_URL``, else SQLite in ``PREREAD_DATA_DIR``, migrated first): whoever holds
its credentials administers accounts. Every change is audited as ``cli:<login name>``
(``user.create``, ``user.change``) in the transaction that makes it.

Passwords: ``create`` and ``reset-password`` generate a strong one and print it **once**
(only its argon2id hash is kept), or, with ``--password-stdin``, read one line from standard
input (checked against the policy: at least 12 characters, not the username). Disabling a user
and resetting their password end their browser sessions at once. Exit codes: 0 done, 2 refused
(one line saying why).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from preread.accounts import AccountError, AccountStore, new_password, role
from preread.audit.cli import cli_actor
from preread.cli_console import command_console
from preread.composition import job_store
from preread.settings import Settings

__all__ = ["register", "users_app"]

users_app = typer.Typer(
    no_args_is_help=True,
    help="People's accounts: create, list, disable, enable, reset-password.",
)
Command = Callable[..., Any]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="read the password from the first line of standard input (else one is generated "
        "and printed once)",
    ),
]


def register(app: typer.Typer, friendly: Callable[[Command], Command]) -> None:
    """Add ``preread users …`` to ``app``; ``friendly`` prints PreRead's errors as one line
    and exits 2 (the main CLI's wrapper)."""
    app.add_typer(users_app, name="users")
    for name, fn in (
        ("create", create_user),
        ("list", list_users),
        ("disable", disable_user),
        ("enable", enable_user),
        ("reset-password", reset_password),
    ):
        users_app.command(name)(friendly(fn))


@contextmanager
def _accounts() -> Iterator[AccountStore]:
    settings = Settings()
    store = job_store(settings)
    try:
        store.migrate()
        yield AccountStore(store.engine)
    finally:
        store.close()


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The password to set, and whether it was generated (then it is printed once)."""
    if not from_stdin:
        return new_password(), True
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise AccountError("--password-stdin: standard input has no password line")
    return line, False


def _show_once(out: Console, username: str, password: str) -> None:
    out.print(f"password:     {password}", markup=False)
    out.print(f"The password is shown once; give it to {username} over a safe channel.")


def create_user(
    tenant: Annotated[str, typer.Option(help="the tenant (hospital) whose studies they read")],
    role_name: Annotated[str, typer.Option("--role", help="radiologist or admin")],
    username: Annotated[str, typer.Option(help="1-64 of a-z 0-9 . _ @ - (unique)")],
    display_name: Annotated[
        str | None, typer.Option(help="the name pages show (default: the username)")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user; prints a generated password ONCE (or reads one with --password-stdin)."""
    wanted = role(role_name)
    password, generated = _password(password_stdin)
    with _accounts() as accounts:
        user = accounts.create(
            tenant,
            username,
            wanted,
            password=password,
            display_name=display_name,
            by=cli_actor(),
        )
    out = command_console()
    out.print(f"user:         {user.username}", markup=False)
    out.print(f"tenant:       {user.tenant}", markup=False)
    out.print(f"role:         {user.role.value}")
    out.print(f"display name: {user.display_name}", markup=False)
    if generated:
        _show_once(out, user.username, password)


def list_users(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
) -> None:
    """The users (never their passwords or hashes)."""
    with _accounts() as accounts:
        users = accounts.list(tenant)
    out = command_console()
    if not users:
        out.print("no users" + (f" in tenant {tenant}" if tenant else ""), markup=False)
        return
    table = Table(title="users")
    for column in ("username", "tenant", "role", "display name", "state", "created", "password"):
        table.add_column(column)
    for user in users:
        table.add_row(
            user.username,
            user.tenant,
            user.role.value,
            user.display_name,
            f"disabled {user.disabled_at:%Y-%m-%d}" if user.disabled_at else "active",
            f"{user.created_at:%Y-%m-%d %H:%M}",
            f"set {user.password_changed_at:%Y-%m-%d}"
            if user.password_changed_at
            else ("set" if user.has_password else "none (identity provider only)"),
        )
    out.print(table)


def disable_user(username: Annotated[str, typer.Argument()]) -> None:
    """Disable a user: no more sign-ins, and their sessions end now."""
    with _accounts() as accounts:
        user = accounts.disable(username, by=cli_actor())
    command_console().print(
        f"disabled {user.username} (tenant {user.tenant}); their sessions ended"
    )


def enable_user(username: Annotated[str, typer.Argument()]) -> None:
    """Enable a disabled user again."""
    with _accounts() as accounts:
        user = accounts.enable(username, by=cli_actor())
    command_console().print(f"enabled {user.username} (tenant {user.tenant})")


def reset_password(
    username: Annotated[str, typer.Argument()],
    password_stdin: PasswordStdin = False,
) -> None:
    """Reset a password (printed ONCE, or read with --password-stdin); sessions end now."""
    password, generated = _password(password_stdin)
    with _accounts() as accounts:
        user = accounts.set_password(username, password, by=cli_actor())
    out = command_console()
    out.print(f"new password set for {user.username}; their sessions ended", markup=False)
    if generated:
        _show_once(out, user.username, password)
