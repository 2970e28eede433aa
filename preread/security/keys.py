"""Token signing keys: ECDSA P-256 (JWS ``ES256``), one PEM file per key in a folder.

The newest key (the greatest key id; ids sort by creation time) signs; every key in the folder
verifies, so rotation is: ``preread keys rotate`` (a new key signs from now on), wait one token
lifetime, ``preread keys retire OLD_ID``. Several API replicas share the folder (a mounted
secret); a replica that meets an unknown key id reads the folder again. Asymmetric keys let
other services verify PreRead's tokens with the public keys alone (``/oauth/jwks.json``).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from preread.security.errors import AuthError

ALGORITHM = "ES256"
_SUFFIX = ".pem"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


class KeyRing:
    """The signing keys in ``folder`` (created with mode 0700; key files 0600)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}

    def ensure(self) -> SigningKey:
        """The current key, creating the first one when the folder has none."""
        with self._lock:
            self._load()
            if not self._keys:
                self._create()
            return self._keys[max(self._keys)]

    def current(self) -> SigningKey:
        with self._lock:
            if not self._keys:
                self._load()
            if not self._keys:
                raise AuthError(f"no signing key in {self.folder} (run `preread keys rotate`)")
            return self._keys[max(self._keys)]

    def get(self, kid: str) -> SigningKey:
        """The key ``kid`` (the folder is read again once when it is unknown)."""
        with self._lock:
            if kid not in self._keys:
                self._load()
            try:
                return self._keys[kid]
            except KeyError:
                raise AuthError("the token was signed by an unknown key") from None

    def has(self, kid: str) -> bool:
        """Whether key ``kid`` is (still) in this ring (no folder read)."""
        return kid in self._keys

    def rotate(self) -> SigningKey:
        """Create a new key; it signs from now on."""
        with self._lock:
            self._load()
            return self._create()

    def retire(self, kid: str) -> None:
        """Delete key ``kid`` (tokens it signed stop verifying); the newest cannot be retired."""
        with self._lock:
            self._load()
            if kid not in self._keys:
                raise AuthError(f"no signing key {kid!r} in {self.folder}")
            if kid == max(self._keys):
                raise AuthError(f"{kid} is the key that signs now: rotate first")
            (self.folder / f"{kid}{_SUFFIX}").unlink()
            del self._keys[kid]

    def ids(self) -> list[str]:
        with self._lock:
            self._load()
            return sorted(self._keys)

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JSON Web Key Set."""
        with self._lock:
            if not self._keys:
                self._load()
            return {"keys": [self._keys[k].public_jwk for k in sorted(self._keys)]}

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        for path in self.folder.glob(f"*{_SUFFIX}"):
            kid = path.name[: -len(_SUFFIX)]
            if kid in self._keys:
                continue
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise AuthError(f"{path} is not an EC private key")
            self._keys[kid] = SigningKey(kid, key)

    def _create(self) -> SigningKey:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # ids sort by creation: nanoseconds since the epoch, never below an existing key's
        stamp = time.time_ns()
        if self._keys:
            stamp = max(stamp, int(max(self._keys)[1:21]) + 1)
        kid = f"k{stamp:020d}-{secrets.token_hex(3)}"
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.folder / f"{kid}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        self._keys[kid] = SigningKey(kid, key)
        return self._keys[kid]
