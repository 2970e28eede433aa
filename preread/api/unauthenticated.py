"""Traffic that fails authentication, per source address: a rate limit, and an audit trail that
garbage cannot grow linearly.

Every request to a protected route that presents no valid token is *unauthenticated traffic*.
Per source address (the ASGI client address: uvicorn puts the forwarded one there for the
proxies of ``PREREAD_FORWARDED_ALLOW_NETWORKS``) it may send
``PREREAD_UNAUTHENTICATED_PER_MINUTE`` requests in a burst, refilled over a minute; beyond
that it is answered 429 with ``Retry-After`` (a valid token is never refused by this limit:
clients have their own).

A failed authentication (a token that is not valid, a revoked client; at ``/oauth/token`` a
wrong client secret, or a request refused for the failures before it, actor ``client:<id>``:
:mod:`preread.api.routes.oauth`) is audited as ``auth.failed`` with the source address,
aggregated per source and actor and window (a minute): the first failure of a window is
recorded at once (``count`` 1), the others are counted and recorded as one record when the
window closes (``count`` = how many it stands for, ``rate_limited`` = how many of them got 429,
``reasons`` = up to five reasons with their counts, ``first_at``/``last_at``). So a flood adds
at most two records per source, actor and minute.
Windows that closed are written by :meth:`UnauthenticatedGuard.flush` (the app calls it every
few seconds and at shutdown). Requests with no credentials at all are limited, not audited.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

from preread.audit import AuditAction, AuditEvent, Outcome
from preread.audit.batch import AuditWriter
from preread.audit.log import AuditRecord

log = logging.getLogger(__name__)
WINDOW_S = 60.0
MAX_SOURCES = 10_000
"""Sources tracked at once; beyond it, new ones share the key ``other`` (memory stays bounded
however many addresses an attacker has)."""
MAX_REASONS = 5
MAX_REASON_LENGTH = 160
OTHER = "other"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


@dataclass
class _Window:
    """Failures of one (source, actor) since ``start`` that are not recorded yet."""

    start: float
    last: float
    count: int = 0
    rate_limited: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def failed(source: str, actor: str, reason: str, count: int, rate_limited: int) -> AuditEvent:
    """An ``auth.failed`` record standing for ``count`` failures from ``source``."""
    return AuditEvent(
        actor=actor,
        action=AuditAction.AUTH_FAILED,
        outcome=Outcome.REFUSED,
        detail={
            "source": source,
            "count": count,
            "rate_limited": rate_limited,
            "reason": reason,
        },
    )


class UnauthenticatedGuard:
    """Rate limit and aggregated audit of unauthenticated traffic (see the module docstring).

    Thread-safe; ``clock`` is wall-clock seconds (records carry times)."""

    def __init__(
        self,
        auditor: AuditWriter,
        per_minute: int,
        *,
        window_s: float = WINDOW_S,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.auditor = auditor
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_sources = max_sources
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, at)
        self._windows: dict[tuple[str, str], _Window] = {}

    def take(self, source: str) -> float:
        """Spend one unauthenticated request of ``source``: 0.0 when allowed, else the
        seconds until the next one would be."""
        now = self._clock()
        rate = self.per_minute / 60.0
        with self._lock:
            if source not in self._buckets and len(self._buckets) >= self.max_sources:
                source = OTHER
            tokens, at = self._buckets.get(source, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + max(0.0, now - at) * rate)
            if tokens >= 1.0:
                self._buckets[source] = (tokens - 1.0, now)
                return 0.0
            self._buckets[source] = (tokens, now)
            return (1.0 - tokens) / rate

    def failed(
        self, source: str, actor: str, reason: str, *, rate_limited: bool
    ) -> AuditEvent | None:
        """Count a failed authentication; the event to record now when it is the first of its
        window (else None: it is in the window's summary)."""
        now = self._clock()
        reason = reason[:MAX_REASON_LENGTH]
        closed: list[AuditEvent] = []
        with self._lock:
            key = (source, actor)
            if key not in self._windows and len(self._windows) >= self.max_sources:
                key = (OTHER, actor)
            window = self._windows.get(key)
            if window is not None and now - window.start >= self.window_s:
                closed.extend(self._close(key, window))
                window = None
            if window is None:
                self._windows[key] = _Window(start=now, last=now)
                first: AuditEvent | None = failed(key[0], actor, reason, 1, int(rate_limited))
            else:
                first = None
                window.last = now
                window.count += 1
                window.rate_limited += int(rate_limited)
                if reason in window.reasons or len(window.reasons) < MAX_REASONS:
                    window.reasons[reason] += 1
                else:
                    window.reasons[OTHER] += 1
        self._submit(closed)
        return first

    def flush(self, *, everything: bool = False) -> int:
        """Record the summaries of the windows that closed (all of them with ``everything``,
        at shutdown) and forget idle sources; how many records were submitted."""
        now = self._clock()
        closed: list[AuditEvent] = []
        with self._lock:
            for key, window in list(self._windows.items()):
                if everything or now - window.start >= self.window_s:
                    closed.extend(self._close(key, window))
            for source, (_, at) in list(self._buckets.items()):
                if now - at >= 60.0:  # refilled: the same as no bucket
                    del self._buckets[source]
        self._submit(closed)
        return len(closed)

    def _close(self, key: tuple[str, str], window: _Window) -> list[AuditEvent]:
        del self._windows[key]
        if window.count == 0:
            return []
        top = window.reasons.most_common(1)[0][0] if window.reasons else ""
        return [
            AuditEvent(
                actor=key[1],
                action=AuditAction.AUTH_FAILED,
                outcome=Outcome.REFUSED,
                detail={
                    "source": key[0],
                    "count": window.count,
                    "rate_limited": window.rate_limited,
                    "reason": top,
                    "reasons": dict(window.reasons),
                    "first_at": _iso(window.start),
                    "last_at": _iso(window.last),
                },
            )
        ]

    def _submit(self, events: list[AuditEvent]) -> None:
        for event in events:
            self.auditor.submit(event).add_done_callback(_log_failure)


def _log_failure(future: Future[AuditRecord]) -> None:
    error = future.exception()
    if error is not None:
        log.error("could not audit failed authentications: %s", error)
