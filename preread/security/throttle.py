"""Failed client authentications, counted per source address and per (client, source).

``POST /oauth/token`` checks a client secret with scrypt (about 80 ms of CPU, on purpose), and
it used to count *every* request against the client id: 70 wrong secrets from anyone locked the
real client out. :class:`FailureThrottle` counts only failures, and where they come from:

* per (client id, source): guessing one client's secret from one place is slowed down, and the
  client itself, asking from anywhere else, is never refused because of it;
* per source: a source that failed too often (with any client ids, known or not) is answered
  429 *before* any secret is hashed, so unknown ids cannot be used to burn the server's CPU.

Each count is a leaky bucket: it drains continuously, ``limit`` failures per ``window_s``, so a
blocked source is let in again as its failures age, without a cliff at the end of a window.
A success clears its (client, source) count (not the source's). Sources are IP addresses as the
server sees them (behind a reverse proxy, the client uvicorn takes from ``X-Forwarded-For`` of
the proxies of ``PREREAD_FORWARDED_ALLOW_NETWORKS`` only); an IPv6 source counts as its /64,
which one host usually has whole. In memory, per process, like
:class:`~preread.security.RateLimiter`.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable

FAILURES_PER_CLIENT_AND_SOURCE = 10
FAILURES_PER_SOURCE = 30
WINDOW_S = 600.0
MAX_ENTRIES = 100_000


def source_key(host: str | None) -> str:
    """The source a failure is counted against: an IPv4 address, an IPv6 /64 (an IPv4-mapped
    IPv6 address counts as its IPv4 address), or the host as given when it is not an address
    (``"unknown"`` when there is none)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class FailureThrottle:
    """Counts failed authentications per (client, source) and per source (module docstring).

    Ask :meth:`wait` before checking a secret; then tell :meth:`failed` or :meth:`succeeded`.
    """

    def __init__(
        self,
        *,
        per_client_and_source: int = FAILURES_PER_CLIENT_AND_SOURCE,
        per_source: int = FAILURES_PER_SOURCE,
        window_s: float = WINDOW_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(per_client_and_source, per_source, max_entries) < 1 or window_s <= 0:
            raise ValueError("limits and max_entries must be >= 1, window_s > 0")
        self.per_client_and_source = per_client_and_source
        self.per_source = per_source
        self.window_s = window_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # (client id, source) or ("", source) -> (failures not yet drained, when counted)
        self._levels: dict[tuple[str, str], tuple[float, float]] = {}

    def wait(self, client_id: str, source: str) -> float:
        """Seconds before ``source`` may try ``client_id`` again (0.0: now)."""
        now = self._clock()
        with self._lock:
            return max(
                self._wait(("", source), self.per_source, now),
                self._wait((client_id, source), self.per_client_and_source, now),
            )

    def failed(self, client_id: str, source: str) -> None:
        """Count a failed authentication of ``client_id`` from ``source``."""
        now = self._clock()
        with self._lock:
            self._add(("", source), self.per_source, now)
            self._add((client_id, source), self.per_client_and_source, now)
            if len(self._levels) > self.max_entries:
                self._prune(now)

    def succeeded(self, client_id: str, source: str) -> None:
        """Forget the failures of ``client_id`` from ``source`` (the source's count stays)."""
        with self._lock:
            self._levels.pop((client_id, source), None)

    # --- leaky buckets ------------------------------------------------------------------------

    def _level(self, key: tuple[str, str], limit: int, now: float) -> float:
        level, at = self._levels.get(key, (0.0, now))
        return max(0.0, level - (now - at) * limit / self.window_s)

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> float:
        excess = self._level(key, limit, now) - (limit - 1)
        return excess * self.window_s / limit if excess > 0 else 0.0

    def _add(self, key: tuple[str, str], limit: int, now: float) -> None:
        level = self._level(key, limit, now) + 1.0
        self._levels.pop(key, None)  # re-inserted last: the dict's order is by last failure
        self._levels[key] = (min(level, float(limit)), now)

    def _prune(self, now: float) -> None:
        """Drop drained counts; if still too many, the oldest, down to 90% of the maximum."""
        for key in list(self._levels):
            limit = self.per_source if key[0] == "" else self.per_client_and_source
            if self._level(key, limit, now) <= 0:
                del self._levels[key]
        excess = len(self._levels) - int(self.max_entries * 0.9)
        for key in list(self._levels)[: max(0, excess)]:
            del self._levels[key]
