"""Client secrets: generated random, stored as scrypt hashes (stdlib ``hashlib.scrypt``).

scrypt rather than a new dependency: it is memory-hard, in the standard library, and a client
secret is 32 random bytes (not a human password), so the cost only has to make a leaked table
useless, not to slow down guessing of weak secrets. Format: ``scrypt$n$r$p$salt$hash`` (base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Protocol

_N, _R, _P = 2**14, 8, 1
_DKLEN = 32


class SecretVerifier(Protocol):
    """Checks a presented secret against a stored hash (:func:`verify_secret`; tests wrap it
    to count how often the expensive hash runs)."""

    def __call__(self, secret: str, stored: str) -> bool: ...


def new_secret() -> str:
    """A client secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches ``stored`` (constant time; False for a malformed hash)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)
