"""What the report API remembers between requests, and why it is never stale.

:class:`RenderCache` — rendered reports: a done job's result never changes, so its FHIR
Bundle, HL7 message or HTML page need not be rebuilt for every request (a FHIR Bundle takes
~5-10 ms of fhir.resources validation; RIS and EMR systems poll the same reports again and
again). Keys name everything a rendering depends on — the job, when it finished, the study
record's last update (its identifying tags), the tenant and the format — so a hit is always
what a fresh rendering would give.

:class:`ViewCache` — which job is a study's finished read, forgotten as soon as the job store
announces a change of the study (:mod:`preread.store.changes`).

:class:`GrantCache` — the grants in force per (tenant, purpose), forgotten on any grant change.

:func:`watch` wires the last two to the change announcements (on PostgreSQL; off on SQLite).
Least recently used entries go first; ``size=0`` turns the render and view caches off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

from preread.grants import Grant, GrantStore, Purpose, StudyScope
from preread.grants.matching import first_covering
from preread.store import JobStore
from preread.store.changes import GRANTS, ChangeListener


class RenderCache:
    """Rendered reports by key (see the module docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: Hashable) -> bytes | None:
        """The rendering under ``key`` if it is kept (never renders)."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        if self.size <= 0:
            return render()
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        value = render()  # outside the lock: two first requests may both render; same bytes
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value


class ViewCache:
    """Finished pre-reads by tenant and study (``(tenant, study_uid, model_id)`` → study record
    and done job), forgotten the moment the store says the study changed
    (:mod:`preread.store.changes`).

    The caller's tenant is part of the key: a lookup can only ever find the caller's own
    studies, so another tenant's study misses exactly like a missing one and both take the
    same (tenant-scoped) database statement — the cache cannot tell an id's existence by its
    speed.

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

    def get(self, key: tuple[str, str, str | None]) -> object | None:
        if self.size <= 0 or not self.active():
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, str, str | None], value: object, generation: int) -> None:
        if self.size <= 0 or not self.active():
            return
        with self._lock:
            if generation != self.generation:
                return  # something changed while the value was read: it may be stale
            self._entries[key] = value
            self._entries.move_to_end(key)
            self._by_study.setdefault(key[1], set()).add(key)
            while len(self._entries) > self.size:
                old, _ = self._entries.popitem(last=False)
                assert isinstance(old, tuple)
                self._by_study.get(old[1], set()).discard(old)

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


class GrantCache:
    """The grants in force, by (tenant, purpose), kept until a grant changes anywhere (the
    store announces ``grants``); coverage is decided afresh on every call (validity windows
    open and close by time alone). Bypassed while ``active()`` is False."""

    def __init__(self, grants: GrantStore, active: Callable[[], bool] = lambda: True) -> None:
        self.grants = grants
        self.active = active
        self._by_key: dict[tuple[str, Purpose], list[Grant]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def covering(
        self, study: StudyScope, purpose: Purpose, at: datetime | None = None
    ) -> tuple[Grant | None, str]:
        if not self.active():
            return self.grants.covering(study, purpose, at)
        moment = at or datetime.now(UTC)
        key = (study.tenant, purpose)
        with self._lock:
            found = self._by_key.get(key)
            generation = self.generation
        if found is None:
            found = [
                g
                for g in self.grants.list(tenant=study.tenant, purpose=purpose)
                if g.revoked_at is None
            ]
            with self._lock:
                if generation == self.generation:
                    self._by_key[key] = found
        return first_covering(found, study, purpose, moment)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._by_key.clear()


@dataclass
class Watched:
    """The caches of one API process and the listener that keeps them true (stop it)."""

    views: ViewCache
    grants: GrantCache
    listener: ChangeListener | None

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()


def watch(store: JobStore, grants: GrantStore, size: int) -> Watched:
    """Caches kept true by the stores' change announcements: this process's own commits at
    once, and every process's through PostgreSQL's NOTIFY (a started :class:`ChangeListener`;
    the caches are bypassed while it is not listening). On SQLite both are off: another
    process's commits could not be heard, and its reads are local calls anyway."""

    def changed(uid: str) -> None:
        if uid == GRANTS:
            grant_cache.clear()
        else:
            views.evict(uid)

    def reset() -> None:
        views.clear()
        grant_cache.clear()

    listener = store.change_listener(changed, reset)
    active: Callable[[], bool] = (
        (lambda: listener.listening) if listener is not None else (lambda: False)
    )
    views = ViewCache(size if listener is not None else 0, active)
    grant_cache = GrantCache(grants, active)
    store.subscribe(changed)
    grants.subscribe(changed)
    if listener is not None:
        listener.start()
    return Watched(views, grant_cache, listener)
