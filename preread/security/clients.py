"""API clients (OAuth2 client-credentials): one tenant each, a hashed secret, scopes, a rate
limit. ``preread clients create`` prints the secret once; only its hash is stored."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from preread.grants.purposes import Purpose, purpose
from preread.security.errors import ClientNotFoundError, InvalidClientError
from preread.security.passwords import SecretVerifier, hash_secret, new_secret, verify_secret
from preread.security.principal import SCOPES
from preread.store.database import READ_ONLY
from preread.store.schema import ApiClientRow
from preread.store.sessions import transaction

_TENANT_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_ACTIVE_CACHE_S = 30.0


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    tenant: str
    name: str
    scopes: frozenset[str]
    purposes: tuple[str, ...]  # purposes of use its tokens may declare; the first is the default
    rate_limit_per_minute: int
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _record(row: ApiClientRow) -> ApiClient:
    return ApiClient(
        client_id=row.client_id,
        tenant=row.tenant,
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        purposes=tuple(row.purposes.split()),
        rate_limit_per_minute=row.rate_limit_per_minute,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def check_tenant(tenant: str) -> str:
    """A tenant name: 1-64 of a-z 0-9 - _ . (it appears in tokens, logs and FHIR systems)."""
    if not tenant or len(tenant) > 64 or not set(tenant) <= _TENANT_CHARS:
        raise ValueError(
            f"tenant {tenant!r}: use 1-64 characters among lower-case letters, digits, - _ ."
        )
    return tenant


class ClientStore:
    """The ``api_clients`` table (in the job store's database)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        verify: SecretVerifier = verify_secret,
    ) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readers = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._clock = clock
        self._verify = verify
        self._active: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        tenant: str,
        name: str,
        scopes: Iterable[str],
        rate_limit_per_minute: int,
        purposes: Iterable[str] = (Purpose.CLINICAL_PREREAD.value,),
    ) -> tuple[ApiClient, str]:
        """A new client and its secret (shown once; not recoverable). ``purposes``: the
        purposes of use its tokens may declare (the first is the default)."""
        allowed = list(dict.fromkeys(purposes))
        if not allowed:
            raise ValueError("a client needs at least one purpose of use")
        for value in allowed:
            purpose(value)  # ValueError naming the known ones
        wanted = sorted(set(scopes))
        unknown = [s for s in wanted if s not in SCOPES]
        if unknown or not wanted:
            raise ValueError(
                f"unknown scope(s) {unknown} (known: {', '.join(SCOPES)})"
                if unknown
                else "a client needs at least one scope"
            )
        if rate_limit_per_minute < 1:
            raise ValueError("the rate limit must be at least 1 request per minute")
        secret = new_secret()
        row = ApiClientRow(
            client_id=f"prc_{secrets.token_hex(8)}",
            tenant=check_tenant(tenant),
            name=name,
            secret_hash=hash_secret(secret),
            scopes=" ".join(wanted),
            purposes=" ".join(allowed),
            rate_limit_per_minute=rate_limit_per_minute,
            created_at=self._clock(),
            revoked_at=None,
        )
        with self._write() as session:
            session.add(row)
        return _record(row), secret

    def authenticate(self, client_id: str, secret: str) -> ApiClient:
        """The client whose id and secret these are; :class:`InvalidClientError` otherwise
        (the same error, after the same hashing work, whichever part was wrong)."""
        found = self._find(client_id)
        stored = found[1] if found is not None else _DUMMY_HASH
        matches = self._verify(secret, stored)
        if found is None or not matches or not found[0].active:
            raise InvalidClientError("client authentication failed")
        return found[0]

    def get(self, client_id: str) -> ApiClient:
        found = self._find(client_id)
        if found is None:
            raise ClientNotFoundError(f"no API client {client_id!r}")
        return found[0]

    def list(self, tenant: str | None = None) -> list[ApiClient]:
        stmt = select(ApiClientRow).order_by(ApiClientRow.tenant, ApiClientRow.created_at)
        if tenant is not None:
            stmt = stmt.where(ApiClientRow.tenant == tenant)
        with self._read() as session:
            return [_record(r) for r in session.scalars(stmt)]

    def revoke(self, client_id: str) -> ApiClient:
        with self._write() as session:
            row = session.get(ApiClientRow, client_id)
            if row is None:
                raise ClientNotFoundError(f"no API client {client_id!r}")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
            record = _record(row)
        with self._lock:
            self._active.pop(client_id, None)
        return record

    def is_active(self, client_id: str) -> bool:
        """Whether the client exists and is not revoked (cached for 30 s: a revocation takes
        effect on every replica within that, and tokens live minutes anyway)."""
        now = time.monotonic()
        with self._lock:
            cached = self._active.get(client_id)
            if cached is not None and now - cached[1] < _ACTIVE_CACHE_S:
                return cached[0]
        found = self._find(client_id)
        active = found is not None and found[0].active
        with self._lock:
            self._active[client_id] = (active, now)
        return active

    def rate_limit(self, client_id: str) -> int:
        found = self._find(client_id)
        return found[0].rate_limit_per_minute if found else 1

    def _find(self, client_id: str) -> tuple[ApiClient, str] | None:
        with self._read() as session:
            row = session.get(ApiClientRow, client_id)
            return None if row is None else (_record(row), row.secret_hash)

    def _read(self) -> AbstractContextManager[Session]:
        return transaction(self._readers, "reading API clients")

    def _write(self) -> AbstractContextManager[Session]:
        return transaction(self._sessions, "writing API clients")


_DUMMY_HASH = hash_secret("no such client")  # hashed against when the id is unknown
