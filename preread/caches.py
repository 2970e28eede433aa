"""What the report API remembers between requests, and why it is never stale.

:class:`RenderCache` — rendered reports: a done job's result never changes, so its FHIR
Bundle, HL7 message or HTML page need not be rebuilt for every request (a FHIR Bundle takes
~5-10 ms of fhir.resources validation; RIS and EMR systems poll the same reports again and
again). Keys name everything a rendering depends on — the job, when it finished, the study
record's last update (its identifying tags), the tenant and the format — so a hit is always
what a fresh rendering would give.

:class:`ViewCache` — which job is a study's finished read, forgotten as soon as the job store
announces a change of the study (:mod:`preread.store.changes`).

Least recently used entries go first; ``size=0`` turns either off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from preread.store import JobStore
from preread.store.changes import ChangeListener


class RenderCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def peek(self, key: Hashable) -> bytes | None:
        """The rendering under ``key`` if it is kept (never renders)."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return found

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        if self.size <= 0:
            return render()
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        value = render()  # outside the lock: two first requests may both render; same bytes
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value


class ViewCache:
    """Finished pre-reads by study (``(study_uid, model_id)`` → study record and done job),
    forgotten the moment the store says the study changed (:mod:`preread.store.changes`).

    Only finished reads are kept: a done job changes only by being superseded or by its study's
    record changing, and both notify. A reader takes :attr:`generation` before it reads the
    database and :meth:`put` keeps the value only if nothing was forgotten meanwhile, so a read
    that raced a change is never kept. While ``active()`` is False (the PostgreSQL listener is
    reconnecting) the cache is bypassed.
    """

    def __init__(self, size: int, active: Callable[[], bool] = lambda: True) -> None:
        self.size = size
        self.active = active
        self._entries: OrderedDict[Hashable, object] = OrderedDict()
        self._by_study: dict[str, set[Hashable]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, key: tuple[str, str | None]) -> object | None:
        if self.size <= 0 or not self.active():
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, str | None], value: object, generation: int) -> None:
        if self.size <= 0 or not self.active():
            return
        with self._lock:
            if generation != self.generation:
                return  # something changed while the value was read: it may be stale
            self._entries[key] = value
            self._entries.move_to_end(key)
            self._by_study.setdefault(key[0], set()).add(key)
            while len(self._entries) > self.size:
                old, _ = self._entries.popitem(last=False)
                assert isinstance(old, tuple)
                self._by_study.get(old[0], set()).discard(old)

    def evict(self, study_uid: str) -> None:
        with self._lock:
            self.generation += 1
            for key in self._by_study.pop(study_uid, set()):
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()
            self._by_study.clear()


def watch_views(store: JobStore, size: int) -> tuple[ViewCache, ChangeListener | None]:
    """A :class:`ViewCache` kept true by ``store``'s change announcements: this process's own
    commits at once, and every process's through PostgreSQL's NOTIFY (a started
    :class:`ChangeListener`, which the caller stops; the cache is bypassed while it is not
    listening). On SQLite the cache is off: another process's commits could not be heard, and
    its reads are local calls anyway."""
    listener = store.change_listener(lambda uid: views.evict(uid), lambda: views.clear())
    views = ViewCache(size if listener is not None else 0)
    store.subscribe(views.evict)
    if listener is not None:
        views.active = lambda: listener.listening
        listener.start()
    return views, listener
