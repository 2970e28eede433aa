"""Requests per minute per client: a token bucket each, in memory.

Per process: with N API replicas behind a balancer a client gets up to N times its limit;
that bounds abuse, which is the point (an exact shared limit would need Redis on every
request). The bucket holds a minute's worth, refilled continuously.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, per_minute: int) -> float:
        """Spend one request of ``key``'s allowance: 0.0 when allowed, else the seconds to
        wait before the next request would be."""
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate
