"""People's passwords: the policy, argon2id hashes, generated passwords.

Hashing: **argon2id** (RFC 9106) through ``argon2-cffi``, OWASP's first choice for password
storage (Password Storage Cheat Sheet), with OWASP's baseline cost: 19 MiB of memory, 2
iterations, 1 lane (about 30 ms of one core). Client secrets keep stdlib scrypt
(:mod:`preread.security.passwords`): they are 32 random bytes, whereas people choose guessable
passwords, so their hash has to make each guess expensive. The memory cost is bounded on purpose:
every sign-in in flight holds it, and sign-ins run on the server's thread pool. The parameters are
in each stored PHC string (``$argon2id$v=19$m=19456,t=2,p=1$…``), so they can be raised later:
:func:`needs_rehash` tells the store to re-hash at the next successful sign-in.

Policy (NIST SP 800-63B §3.1.1.2): at least 12 characters (after Unicode NFKC normalization,
which is also what is hashed), at most 1024, and not the username nor containing it; no
composition rules.
"""

from __future__ import annotations

import functools
import secrets
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from preread.accounts.records import PasswordPolicyError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # longer inputs are refused before any hashing work
MEMORY_KIB = 19 * 1024
ITERATIONS = 2
LANES = 1
_HASHER = PasswordHasher(time_cost=ITERATIONS, memory_cost=MEMORY_KIB, parallelism=LANES)


def _normalized(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def check_password(password: str, username: str) -> str:
    """``password`` if the policy accepts it for ``username``; PasswordPolicyError saying why
    (never repeating the password) otherwise."""
    text = _normalized(password)
    if len(text) < MIN_LENGTH:
        raise PasswordPolicyError(f"a password needs at least {MIN_LENGTH} characters")
    if len(text) > MAX_LENGTH:
        raise PasswordPolicyError(f"a password has at most {MAX_LENGTH} characters")
    name = username.lower()
    folded = text.lower()
    if folded == name or (len(name) >= 4 and name in folded):
        raise PasswordPolicyError("a password must not be or contain the username")
    return password


def new_password() -> str:
    """A generated password: 18 random bytes, URL-safe base64 (24 characters, 144 bits)."""
    return secrets.token_urlsafe(18)


def hash_password(password: str) -> str:
    """The argon2id PHC string of ``password`` (a new random salt each time)."""
    return _HASHER.hash(_normalized(password))


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (False for a malformed hash or a password over
    :data:`MAX_LENGTH`, which is not hashed at all)."""
    if len(password) > 4 * MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored, _normalized(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against when the username is unknown: the same work either way."""
    return hash_password(secrets.token_urlsafe(18))
