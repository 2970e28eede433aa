"""``Idempotency-Key`` for POST requests: the first answer to a key is stored and replayed.

A repeated request with the same key and the same request (method, path, body) gets the stored
answer; the same key with a different request is refused (422), as in the IETF draft
"The Idempotency-Key HTTP Header Field". Keys are per client and kept 24 hours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from preread.errors import PrereadError
from preread.store.errors import StoreError
from preread.store.schema import IdempotencyRow

KEEP = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyConflictError(PrereadError):
    """The key was used before for a different request."""


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\\0".join([method.encode(), path.encode(), body])).hexdigest()


class IdempotencyKeys:
    def __init__(
        self, engine: Engine, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def run(
        self,
        client_id: str,
        key: str,
        fingerprint: str,
        handler: Callable[[], tuple[int, dict[str, Any]]],
    ) -> Replay:
        """The stored answer to ``key``, or ``handler()``'s, stored (handlers must themselves be
        safe to run twice: two concurrent first requests may both run it; one answer is kept)."""
        found = self._get(client_id, key)
        if found is not None:
            if found.request_hash != fingerprint:
                raise IdempotencyConflictError(
                    f"Idempotency-Key {key!r} was used for a different request"
                )
            return Replay(found.status_code, dict(found.response))
        status, body = handler()
        try:
            with self._sessions.begin() as session:
                session.execute(
                    delete(IdempotencyRow).where(IdempotencyRow.created_at < self._clock() - KEEP)
                )
                session.add(
                    IdempotencyRow(
                        client_id=client_id,
                        key=key,
                        request_hash=fingerprint,
                        status_code=status,
                        response=body,
                        created_at=self._clock(),
                    )
                )
        except IntegrityError:  # a concurrent first request stored its answer: replay that
            again = self._get(client_id, key)
            if again is not None and again.request_hash == fingerprint:
                return Replay(again.status_code, dict(again.response))
            raise IdempotencyConflictError(
                f"Idempotency-Key {key!r} was used for a different request"
            ) from None
        except SQLAlchemyError as exc:
            raise StoreError(f"storing the idempotency key failed: {exc}") from exc
        return Replay(status, body)

    def _get(self, client_id: str, key: str) -> IdempotencyRow | None:
        try:
            with self._sessions.begin() as session:
                row = session.get(IdempotencyRow, (client_id, key))
                if row is not None and row.created_at < self._clock() - KEEP:
                    return None
                return row
        except SQLAlchemyError as exc:
            raise StoreError(f"reading idempotency keys failed: {exc}") from exc
