"""A few loaded series kept in memory: :class:`VolumeCache`.

Opening a study for review fetches its whole series from Orthanc (hundreds of MB of DICOM for
a thin-slice CT); every key image and every slice the reader scrolls to is cut from it. The
cache keeps the last few loaded series of a process so that scrolling does not fetch again:

* **bounded by size**: at most ``max_bytes`` held (least recently used out first); an entry
  larger than that is handed out but never held;
* **short-lived**: an entry not used for ``ttl_s`` is dropped (patient pixels do not linger);
* **keyed by tenant**: every key starts with the tenant whose reader loaded it, and callers
  look up with their reader's tenant after the access check (:mod:`preread.ui.access`), so one
  tenant's pixels never answer another tenant's request;
* **one load per key**: requests that arrive while a key loads wait for that load (a page
  with fifteen key images fetches the series once) and get its error if it fails; a failed
  load is not kept.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["Sized", "VolumeCache"]


class Sized(Protocol):
    """What the cache holds: anything that says how many bytes it keeps alive."""

    @property
    def nbytes(self) -> int: ...


V = TypeVar("V", bound=Sized)
Key = tuple[str, Hashable]
"""(tenant, what): the tenant first, always."""


@dataclass
class _Entry(Generic[V]):
    value: V
    used: float


class VolumeCache(Generic[V]):
    """Loaded series by ``(tenant, key)``, bounded by bytes and idle time (module docstring).

    Thread-safe: the routes call it from the thread pool.
    """

    def __init__(
        self,
        max_bytes: int,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 0 or ttl_s <= 0:
            raise ValueError(f"max_bytes must be >= 0 and ttl_s > 0, got {max_bytes}, {ttl_s}")
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry[V]] = OrderedDict()
        self._loading: dict[Key, Future[V]] = {}
        self._lock = threading.Lock()
        self.loads = 0
        """How many times a loader ran (a measure for tests and metrics)."""

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return sum(e.value.nbytes for e in self._entries.values())

    def held(self) -> list[Key]:
        """The keys held now, least recently used first (expired ones dropped)."""
        with self._lock:
            self._expire(self._clock())
            return list(self._entries)

    def get(self, tenant: str, key: Hashable, load: Callable[[], V]) -> V:
        """The value of ``(tenant, key)``, from memory or from ``load()`` (run once however
        many callers ask at the same time; its exception reaches every one of them)."""
        if not tenant:
            raise ValueError("a cached volume needs its tenant")
        full: Key = (tenant, key)
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._entries.get(full)
            if entry is not None:
                entry.used = now
                self._entries.move_to_end(full)
                return entry.value
            pending = self._loading.get(full)
            if pending is None:
                future: Future[V] = Future()
                self._loading[full] = future
        if pending is not None:
            return pending.result()
        try:
            value = load()
        except BaseException as exc:
            with self._lock:
                del self._loading[full]
            future.set_exception(exc)
            raise
        with self._lock:
            self.loads += 1
            del self._loading[full]
            self._put(full, value)
        future.set_result(value)
        return value

    def drop(self, tenant: str) -> None:
        """Forget every entry of ``tenant`` (e.g. its grant was revoked)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == tenant]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _put(self, key: Key, value: V) -> None:
        size = value.nbytes
        if size > self.max_bytes:
            return  # handed out, never held
        self._entries[key] = _Entry(value, self._clock())
        self._entries.move_to_end(key)
        held = sum(e.value.nbytes for e in self._entries.values())
        while held > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            held -= oldest.value.nbytes

    def _expire(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if now - e.used >= self.ttl_s]:
            del self._entries[key]
