"""AccountStore and SessionStore on the real job store databases (SQLite and PostgreSQL):
accounts, sign-in checks, sessions' ends on an injected clock, and what the audit trail and the
tables hold (never a password, a hash or a token)."""

from __future__ import annotations

import json
import statistics
import time

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select, text, update

from preread.accounts import (
    AccountError,
    AccountStore,
    PasswordPolicyError,
    Role,
    SessionPolicy,
    SessionStore,
    SignInFailure,
    UserExistsError,
    UserNotFoundError,
)
from preread.accounts.sessions import token_hash
from preread.audit import AuditAction, AuditLog
from preread.store.schema import UserRow
from tests.accounts.conftest import PASSWORD, new_records, record_count
from tests.store.conftest import BACKENDS, FakeClock

pytestmark = pytest.mark.parametrize("db_url", BACKENDS, indirect=True)


@pytest.fixture
def accounts(engine: Engine, clock: FakeClock) -> AccountStore:
    return AccountStore(engine, audit=AuditLog(engine, clock=clock), clock=clock)


@pytest.fixture
def sessions(engine: Engine, clock: FakeClock) -> SessionStore:
    return SessionStore(engine, SessionPolicy(600, 3600), audit=AuditLog(engine), clock=clock)


def _everything_stored(engine: Engine) -> str:
    """Every row of the accounts' tables and of the audit trail, as one text."""
    with engine.connect() as conn:
        rows = [
            *conn.execute(text("SELECT * FROM user_sessions")),
            *conn.execute(text("SELECT detail, actor FROM audit_events")),
        ]
    return json.dumps([[str(v) for v in row] for row in rows])


def test_accounts_are_created_listed_and_refused_when_malformed(
    accounts: AccountStore, engine: Engine
) -> None:
    mark = record_count(engine)
    ada = accounts.create("hosp-a", " Ada ", Role.RADIOLOGIST, password=PASSWORD, by="cli:root")
    assert (ada.username, ada.display_name, ada.tenant, ada.role) == ("ada", "ada", "hosp-a",
                                                                      Role.RADIOLOGIST)  # fmt: skip
    assert ada.has_password and not ada.disabled
    accounts.create("hosp-b", "bob", Role.ADMIN, password=None, display_name="Dr B", by="cli:root")
    assert [u.username for u in accounts.list()] == ["ada", "bob"]
    assert [u.username for u in accounts.list("hosp-b")] == ["bob"]
    assert not accounts.by_username("BOB").has_password
    assert accounts.get(ada.id) == ada
    with pytest.raises(UserExistsError):
        accounts.create("hosp-b", "ADA", Role.ADMIN, password=PASSWORD, by="cli:root")
    with pytest.raises(AccountError, match="tenant"):
        accounts.create("Hosp A", "carl", Role.ADMIN, password=PASSWORD, by="cli:root")
    with pytest.raises(AccountError, match="username"):
        accounts.create("hosp-a", "carl smith", Role.ADMIN, password=PASSWORD, by="cli:root")
    with pytest.raises(PasswordPolicyError):
        accounts.create("hosp-a", "carl", Role.ADMIN, password="carl", by="cli:root")
    with pytest.raises(UserNotFoundError):
        accounts.by_username("carl")
    created = [r.event for r in new_records(engine, mark)]
    assert [(e.action, e.actor, e.tenant) for e in created] == [
        (AuditAction.USER_CREATE, "cli:root", "hosp-a"),
        (AuditAction.USER_CREATE, "cli:root", "hosp-b"),
    ]
    assert created[0].detail["local_password"] is True
    assert PASSWORD not in _everything_stored(engine)


def test_sign_in_checks_fail_alike_for_unknown_wrong_disabled_and_passwordless(
    accounts: AccountStore,
) -> None:
    ada = accounts.create("hosp-a", "ada", Role.RADIOLOGIST, password=PASSWORD, by="tests")
    accounts.create("hosp-a", "oidc-only", Role.RADIOLOGIST, password=None, by="tests")
    assert accounts.authenticate("ADA", PASSWORD) == ada
    failures = {}
    for username, password in [
        ("nobody", PASSWORD),
        ("ada", PASSWORD + "x"),
        ("oidc-only", PASSWORD),
        ("", ""),
    ]:
        with pytest.raises(SignInFailure) as caught:
            accounts.authenticate(username, password)
        failures[username] = caught.value
    accounts.disable("ada", by="tests")
    with pytest.raises(SignInFailure) as caught:
        accounts.authenticate("ada", PASSWORD)
    failures["disabled"] = caught.value
    assert len({str(f) for f in failures.values()}) == 1  # one message for every case
    assert {k: (f.actor, f.reason) for k, f in failures.items()} == {
        "nobody": ("unknown-user", "unknown username"),
        "ada": ("user:ada", "wrong password"),
        "oidc-only": ("user:oidc-only", "no local password"),
        "": ("unknown-user", "unknown username"),
        "disabled": ("user:ada", "account disabled"),
    }


def test_an_old_hash_is_replaced_at_the_next_sign_in(
    accounts: AccountStore, engine: Engine
) -> None:
    accounts.create("hosp-a", "ada", Role.RADIOLOGIST, password=PASSWORD, by="tests")
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(update(UserRow).values(password_hash=old))
    accounts.authenticate("ada", PASSWORD)
    with engine.connect() as conn:
        stored = conn.execute(select(UserRow.password_hash)).scalar_one()
    assert stored is not None and stored != old
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_sessions_end_when_idle_at_their_lifetime_and_at_sign_out(
    accounts: AccountStore, sessions: SessionStore, clock: FakeClock, engine: Engine
) -> None:
    ada = accounts.create("hosp-a", "ada", Role.RADIOLOGIST, password=PASSWORD, by="tests")
    mark = record_count(engine)
    first = sessions.start(ada.id, method="password", source="10.0.0.1")
    assert first.token not in repr(first)
    found = sessions.resolve(first.token)
    assert found is not None and found.reader.username == "ada" and found.method == "password"
    assert sessions.resolve(first.token + "x") is None and sessions.resolve("x" * 500) is None
    # idle: each request within the idle timeout keeps it; a gap of the timeout ends it
    for _ in range(5):
        clock.advance(500)
        assert sessions.resolve(first.token) is not None
    clock.advance(600)
    assert sessions.resolve(first.token) is None
    assert sessions.count(ada.id) == 0  # removed, not kept
    # lifetime: however active, an hour after it began
    second = sessions.start(ada.id, method="oidc", source=None)
    for _ in range(7):
        clock.advance(500)
        assert sessions.resolve(second.token) is not None
    clock.advance(101)
    assert sessions.resolve(second.token) is None
    # sign-out
    third = sessions.start(ada.id, method="password", source="10.0.0.2")
    assert sessions.end(third.token, source="10.0.0.2") == third.reader
    assert sessions.resolve(third.token) is None and sessions.end(third.token) is None
    events = [r.event for r in new_records(engine, mark)]
    assert [e.action for e in events] == [AuditAction.USER_SIGN_IN] * 3 + [
        AuditAction.USER_SIGN_OUT
    ]
    assert events[0].actor == "user:ada" and events[0].tenant == "hosp-a"
    assert events[0].detail == {
        "user_id": ada.id,
        "session_id": first.id,
        "method": "password",
        "source": "10.0.0.1",
    }
    assert events[3].detail["session_id"] == third.id
    stored = _everything_stored(engine)
    for started in (first, second, third):
        assert started.token not in stored
    assert token_hash(first.token) not in _audit_only(engine)


def _audit_only(engine: Engine) -> str:
    with engine.connect() as conn:
        return json.dumps([str(r) for r in conn.execute(text("SELECT * FROM audit_events"))])


def test_disable_and_password_reset_end_every_session_of_the_user(
    accounts: AccountStore, sessions: SessionStore, engine: Engine
) -> None:
    ada = accounts.create("hosp-a", "ada", Role.RADIOLOGIST, password=PASSWORD, by="tests")
    bob = accounts.create("hosp-a", "bob", Role.RADIOLOGIST, password=PASSWORD, by="tests")
    tokens = [sessions.start(ada.id, method="password").token for _ in range(2)]
    bobs = sessions.start(bob.id, method="password").token
    mark = record_count(engine)
    disabled = accounts.disable("ada", by="cli:root")
    assert disabled.disabled and all(sessions.resolve(t) is None for t in tokens)
    assert sessions.resolve(bobs) is not None  # someone else's stay
    with pytest.raises(AccountError, match="already disabled"):
        accounts.disable("ada", by="cli:root")
    with pytest.raises(AccountError, match="disabled"):
        sessions.start(ada.id, method="password")
    assert not accounts.enable("ada", by="cli:root").disabled
    with pytest.raises(AccountError, match="not disabled"):
        accounts.enable("ada", by="cli:root")
    again = sessions.start(ada.id, method="password").token
    new = "a completely new passphrase"
    with pytest.raises(PasswordPolicyError):
        accounts.set_password("ada", "short", by="cli:root")
    assert sessions.resolve(again) is not None  # a refused reset changes nothing
    accounts.set_password("ada", new, by="cli:root")
    assert sessions.resolve(again) is None
    assert accounts.authenticate("ada", new).username == "ada"
    with pytest.raises(SignInFailure):
        accounts.authenticate("ada", PASSWORD)
    with pytest.raises(UserNotFoundError):
        accounts.disable("nobody", by="cli:root")
    changes = [
        (r.event.action, r.event.detail.get("change"), r.event.detail.get("sessions_ended"))
        for r in new_records(engine, mark)
        if r.event.action is AuditAction.USER_CHANGE
    ]
    assert changes == [
        (AuditAction.USER_CHANGE, "disabled", 2),
        (AuditAction.USER_CHANGE, "enabled", None),
        (AuditAction.USER_CHANGE, "password reset", 1),
    ]
    stored = _everything_stored(engine)
    assert new not in stored and PASSWORD not in stored and "$argon2" not in stored


def test_an_unknown_username_costs_a_password_check_too(accounts: AccountStore) -> None:
    """No user enumeration by time: an unknown name is checked against a dummy argon2 hash
    (without it, it would answer in well under a tenth of the time)."""
    accounts.create("hosp-a", "ada", Role.RADIOLOGIST, password=PASSWORD, by="tests")

    def seconds(username: str) -> float:
        start = time.perf_counter()
        with pytest.raises(SignInFailure):
            accounts.authenticate(username, "not the password")
        return time.perf_counter() - start

    seconds("nobody")  # the dummy hash is made once, on first use
    unknown = statistics.median(seconds("nobody") for _ in range(5))
    wrong = statistics.median(seconds("ada") for _ in range(5))
    assert unknown > 0.4 * wrong, (unknown, wrong)
