"""``preread users create|list|disable|enable|reset-password`` through typer's test runner on
the main CLI, on a real job store (SQLite, and PostgreSQL for the whole round)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from preread.accounts import AccountStore, SessionStore, SignInFailure
from preread.audit import AuditAction, AuditLog
from preread.cli import app
from preread.store import make_engine
from tests.accounts.conftest import PASSWORD
from tests.store.conftest import BACKENDS


def _run(env: dict[str, str | None], *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["users", *args], env=env, input=stdin)
    return result.exit_code, result.output


def _printed_password(output: str) -> str:
    found = re.search(r"^password:\s+(\S+)$", output, re.MULTILINE)
    assert found is not None, output
    return found.group(1)


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_users_are_created_listed_disabled_enabled_and_reset(db_url: str, tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "PREREAD_DATA_DIR": str(tmp_path),
        "PREREAD_DATABASE_URL": db_url,
        "COLUMNS": "250",
    }
    engine = make_engine(db_url)
    try:
        accounts = AccountStore(engine)
        sessions = SessionStore(engine)
        mark = len(list(AuditLog(engine).records()))
        code, out = _run(env, "create", "--tenant", "hosp-a", "--role", "radiologist",
                         "--username", "ada", "--display-name", "Dr Ada Lovelace")  # fmt: skip
        assert code == 0, out
        generated = _printed_password(out)
        assert "shown once" in out and len(generated) >= 24
        assert accounts.authenticate("ada", generated).display_name == "Dr Ada Lovelace"
        code, out = _run(env, "create", "--tenant", "hosp-b", "--role", "admin", "--username",
                         "bob", "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
        assert code == 0, out
        assert PASSWORD not in out and "password:" not in out
        assert accounts.authenticate("bob", PASSWORD).role.value == "admin"

        code, out = _run(env, "list")
        assert code == 0 and "ada" in out and "bob" in out and "active" in out, out
        assert generated not in out and "argon2" not in out
        code, out = _run(env, "list", "--tenant", "hosp-b")
        assert code == 0 and "bob" in out and "ada" not in out, out

        session = sessions.start(accounts.by_username("ada").id, method="password")
        code, out = _run(env, "disable", "ada")
        assert code == 0 and "sessions ended" in out, out
        assert sessions.resolve(session.token) is None
        with pytest.raises(SignInFailure):
            accounts.authenticate("ada", generated)
        code, out = _run(env, "list")
        assert "disabled" in out, out
        code, out = _run(env, "enable", "ada")
        assert code == 0 and accounts.authenticate("ada", generated), out

        session = sessions.start(accounts.by_username("ada").id, method="password")
        code, out = _run(env, "reset-password", "ada")
        assert code == 0, out
        fresh = _printed_password(out)
        assert fresh != generated and sessions.resolve(session.token) is None
        assert accounts.authenticate("ada", fresh)
        code, out = _run(env, "reset-password", "ada", "--password-stdin",
                         stdin="another passphrase\n")  # fmt: skip
        assert code == 0 and "another passphrase" not in out, out
        assert accounts.authenticate("ada", "another passphrase")

        actions = [r.event for r in list(AuditLog(engine).records())[mark:]]
        create, change, sign_in = (AuditAction.USER_CREATE, AuditAction.USER_CHANGE,
                                   AuditAction.USER_SIGN_IN)  # fmt: skip
        assert [e.action for e in actions] == [
            create, create, sign_in, change, change, sign_in, change, change
        ]  # fmt: skip
        assert [e.detail.get("change") for e in actions if e.action is change] == [
            "disabled", "enabled", "password reset", "password reset"
        ]  # fmt: skip
        administration = [e for e in actions if e.action is not AuditAction.USER_SIGN_IN]
        assert all(e.actor.startswith("cli") for e in administration)
        for secret in (generated, fresh, PASSWORD, "another passphrase"):
            assert secret not in str(actions)
    finally:
        engine.dispose()


def test_refusals_are_one_line_and_exit_2(db_url: str, tmp_path: Path) -> None:
    env: dict[str, str | None] = {"PREREAD_DATA_DIR": str(tmp_path), "PREREAD_DATABASE_URL": db_url}
    create = ("create", "--tenant", "hosp-a", "--username", "ada")
    for args, stdin, problem in [
        ((*create, "--role", "chief"), None, "unknown role"),
        ((*create, "--role", "admin", "--password-stdin"), "short\n", "at least 12"),
        ((*create, "--role", "admin", "--password-stdin"), "\n", "no password line"),
        (("create", "--tenant", "Hosp A", "--username", "x", "--role", "admin"), None, "tenant"),
        (("disable", "nobody"), None, "no user"),
        (("reset-password", "nobody"), None, "no user"),
    ]:
        code, out = _run(env, *args, stdin=stdin)
        assert code == 2 and problem in out and "Traceback" not in out, (args, out)
    assert _run(env, *create, "--role", "admin")[0] == 0
    code, out = _run(env, *create, "--role", "admin")
    assert code == 2 and "taken" in out, out
    code, out = _run(env, "enable", "ada")
    assert code == 2 and "not disabled" in out, out
