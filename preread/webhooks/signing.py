"""Standard Webhooks signatures: HMAC-SHA256 over ``"{id}.{timestamp}.{body}"`` (pure functions).

See https://www.standardwebhooks.com (the specification's "Signature scheme" section). A
message carries three headers:

* ``webhook-id``: the message id, the same on every attempt (receivers de-duplicate on it);
* ``webhook-timestamp``: Unix seconds of the attempt (receivers refuse old ones: replays);
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` signatures, one per secret
  in force (several while a secret is rotated).

Secrets are ``whsec_`` followed by the base64 of the key bytes (32 random bytes here). Nothing
here touches the network or the database; a receiver may use :func:`verify` on its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from preread.errors import PrereadError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
DEFAULT_TOLERANCE_S = 300
"""How far (seconds) a message's timestamp may be from the receiver's clock, either way."""


class SignatureError(PrereadError):
    """A message's Standard Webhooks headers do not prove it came from the secret's holder.

    The message says which: a missing or malformed header, a timestamp outside the tolerance,
    or no signature that matches.
    """


def new_secret() -> str:
    """A new signing secret: ``"whsec_"`` + base64 of 32 random bytes (``secrets`` module)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: its base64 part decoded (the ``whsec_`` prefix is optional).

    Raises :class:`ValueError` when the rest is not valid base64 (a configuration error).
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(
            "not a Standard Webhooks secret: its part after whsec_ is not base64"
        ) from exc
    if not key:
        raise ValueError("not a Standard Webhooks secret: it is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one message: ``"v1,<base64 HMAC-SHA256>"``.

    The HMAC (key: :func:`secret_key`) covers ``f"{msg_id}.{timestamp}."`` (UTF-8) followed by
    the exact body bytes sent.
    """
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt at sending ``body``."""
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: datetime | None = None,
) -> None:
    """Check that ``body`` and its ``headers`` were signed with ``secret``; return quietly if so.

    Header names are matched case-insensitively. ``now`` (aware; default: the current time) is
    compared with ``webhook-timestamp``, which must be within ``tolerance_s`` either way. Any of
    the space-separated ``v1,`` signatures may match (others, e.g. ``v1a,``, are skipped); the
    comparison is constant-time (:func:`hmac.compare_digest`).

    Raises :class:`SignatureError` saying what is wrong.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = _header(lowered, HEADER_ID)
    raw_timestamp = _header(lowered, HEADER_TIMESTAMP)
    signatures = _header(lowered, HEADER_SIGNATURE)
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise SignatureError(
            f"{HEADER_TIMESTAMP} {raw_timestamp[:32]!r} is not a Unix time in seconds"
        ) from None
    current = int((now or datetime.now(UTC)).timestamp())
    if timestamp < current - tolerance_s:
        raise SignatureError(
            f"{HEADER_TIMESTAMP} is too old: {current - timestamp} s before now"
            f" (tolerance {tolerance_s} s)"
        )
    if timestamp > current + tolerance_s:
        raise SignatureError(
            f"{HEADER_TIMESTAMP} is too new: {timestamp - current} s after now"
            f" (tolerance {tolerance_s} s)"
        )
    expected = sign(secret, msg_id, timestamp, body).encode("ascii")
    for candidate in signatures.split(" "):
        version, _, _ = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError(f"no matching {SIGNATURE_VERSION} signature in {HEADER_SIGNATURE}")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise SignatureError(f"missing header {name}")
    return value
