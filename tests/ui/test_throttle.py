"""Failed sign-ins are throttled per (account, source) and per source, on the throttle's
injected clock: guessing from one address never locks the account's owner out elsewhere; a
success clears its own count; throttled attempts are answered 429 before any password check
and audited in the aggregated ``auth.failed`` records."""

from __future__ import annotations

from preread.audit import AuditAction
from tests.accounts.conftest import PASSWORD, PER_ACCOUNT, PER_SOURCE, Site, sign_in

WRONG = "not the password at all"


def test_guessing_from_one_address_never_locks_the_owner_out_elsewhere(site: Site) -> None:
    site.user()
    site.user("bob", display_name="Dr Bob")
    attacker = site.browser("203.0.113.7")
    mark = site.audit_mark()
    for _ in range(PER_ACCOUNT):
        assert sign_in(attacker, "ada", WRONG).status_code == 401
    blocked = sign_in(attacker, "ada", PASSWORD)  # even the right password: not checked
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in blocked.text
    owner = site.browser("198.51.100.20")  # the radiologist, at the hospital
    assert sign_in(owner, "ada", PASSWORD).status_code == 303
    assert owner.get("/ui/").status_code == 200
    assert sign_in(attacker, "bob", PASSWORD).status_code == 303  # another account from there
    # the leaky bucket drains: one window later the address may try again
    site.ticks.now += 600
    retry = site.browser("203.0.113.7")
    assert sign_in(retry, "ada", PASSWORD).status_code == 303
    failed = [r.event for r in site.audit_since(mark) if r.event.action is AuditAction.AUTH_FAILED]
    assert failed and all(e.detail["source"] == "203.0.113.7" for e in failed)
    assert {e.actor for e in failed} == {"user:ada", "unknown-user"}
    throttled = [e for e in failed if e.detail["reason"] == "too many failures"]
    assert throttled and throttled[0].detail["rate_limited"] == 1


def test_a_success_clears_its_own_count(site: Site) -> None:
    site.user()
    browser = site.browser("192.0.2.10")
    for _ in range(PER_ACCOUNT - 1):
        assert sign_in(browser, "ada", WRONG).status_code == 401
    assert sign_in(browser, "ada", PASSWORD).status_code == 303
    other = site.browser("192.0.2.10")  # the same address, signed out
    for _ in range(PER_ACCOUNT - 1):
        assert sign_in(other, "ada", WRONG).status_code == 401
    assert sign_in(other, "ada", PASSWORD).status_code == 303  # not 429: the count restarted


def test_an_address_that_fails_with_many_names_is_slowed_down_alone(site: Site) -> None:
    site.user()
    sprayer = site.browser("203.0.113.99")
    for i in range(PER_SOURCE):
        assert sign_in(sprayer, f"guess{i}", WRONG).status_code == 401
    assert sign_in(sprayer, "ada", PASSWORD).status_code == 429
    assert sign_in(site.browser("198.51.100.21"), "ada", PASSWORD).status_code == 303
