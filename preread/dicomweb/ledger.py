"""Which readers' accesses to which studies were recorded in the audit trail, and when.

Opening a study in OHIF is a few hundred requests (one per frame, per series' metadata, per
bulk item) within seconds. Every one of them is checked (tenant, grant), but a record per
request would bury the trail: the access is recorded **once per (reader session, study) per
:data:`WINDOW_S`** — the first request records it, the next ones within the window do not; a
reader who comes back to the study later, or from another session, is recorded again.
Refusals are always recorded. The ledger is per process (each API replica records once per
window) and bounded (:data:`MAX_ENTRIES`, oldest forgotten first, so at worst recorded again).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["MAX_ENTRIES", "WINDOW_S", "AccessLedger"]

WINDOW_S = 300.0
"""Seconds during which a reader session's further requests for a study add no record."""
MAX_ENTRIES = 100_000

Key = tuple[str, str]  # (session id, StudyInstanceUID)


class AccessLedger:
    """When each (session, study) access was last recorded. ``clock``: monotonic seconds."""

    def __init__(
        self,
        window_s: float = WINDOW_S,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._max = max_entries
        self._clock = clock
        self._recorded: OrderedDict[Key, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, session_id: str, study_uid: str) -> bool:
        """True when this access must be recorded (none within the window): it is then taken
        as recorded, so concurrent requests do not all record it; :meth:`release` undoes that
        when the record was not written (refused, or the audit trail failed)."""
        key = (session_id, study_uid)
        now = self._clock()
        with self._lock:
            last = self._recorded.get(key)
            if last is not None and now - last < self.window_s:
                return False
            self._recorded[key] = now
            self._recorded.move_to_end(key)
            while len(self._recorded) > self._max:
                self._recorded.popitem(last=False)
            return True

    def release(self, session_id: str, study_uid: str) -> None:
        """Forget a :meth:`claim` whose record was not written."""
        with self._lock:
            self._recorded.pop((session_id, study_uid), None)
