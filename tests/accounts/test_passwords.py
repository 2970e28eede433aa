"""The password policy and argon2id hashing (no database)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from preread.accounts import PasswordPolicyError, check_password, new_password
from preread.accounts.passwords import (
    ITERATIONS,
    LANES,
    MEMORY_KIB,
    hash_password,
    needs_rehash,
    verify_password,
)


def test_the_policy_refuses_short_passwords_and_the_username_saying_why() -> None:
    with pytest.raises(PasswordPolicyError, match="at least 12 characters") as short:
        check_password("elevenchars", "ada")
    assert "elevenchars" not in str(short.value)
    with pytest.raises(PasswordPolicyError, match="username"):
        check_password("radiologist1", "radiologist1")
    with pytest.raises(PasswordPolicyError, match="username"):
        check_password("my name is Lovelace!", "lovelace")
    with pytest.raises(PasswordPolicyError, match="at most"):
        check_password("x" * 1025, "ada")
    assert check_password("twelve chars", "ada") == "twelve chars"
    assert check_password("ada likes long passphrases", "ada")  # a 3-letter name may appear


def test_generated_passwords_are_long_random_and_pass_the_policy() -> None:
    passwords = {new_password() for _ in range(20)}
    assert len(passwords) == 20
    for password in passwords:
        assert len(password) >= 24
        check_password(password, "ada")


def test_argon2id_with_the_owasp_baseline_and_unicode_normalized() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith(f"$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={LANES}$")
    assert "correct horse battery" not in stored
    assert hash_password("correct horse battery") != stored  # a new salt each time
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("correct horse battery", "not a hash")
    assert not verify_password("x" * 5000, stored)  # not even hashed
    # NFKC: the full-width form of a character is the character
    assert verify_password("ｃorrect horse battery", stored)
    assert not needs_rehash(stored)
    older = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("x" * 12)
    assert needs_rehash(older) and needs_rehash("garbage")
