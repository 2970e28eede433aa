"""Stopping on SIGTERM and SIGINT, as systemd, Docker and Kubernetes (SIGTERM) and Ctrl-C
(SIGINT) ask.

:class:`ShutdownSignals` turns the first of these signals into :attr:`~ShutdownSignals.requested`
(the command stops taking work and shuts down in order: running jobs get
``PREREAD_SHUTDOWN_GRACE_S`` to finish, then their leases are released, then the private Orthanc
is stopped and its temporary folder removed) and a second one into
:attr:`~ShutdownSignals.urgent` (stop waiting for running jobs: release them now). Without it,
SIGTERM ends Python at once, and nothing is cleaned up.

Python runs signal handlers in the main thread only: use it there (elsewhere it installs
nothing and only the events remain, for tests and embedders to set).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownSignals:
    """A context manager that handles SIGTERM and SIGINT while it is open (the previous
    handlers come back after).

    The handler itself only records the signal: a handler runs in the main thread between two
    bytecodes, possibly inside ``Event.wait`` holding the event's lock, so setting an event
    there could deadlock. A small thread turns what was recorded into the events (within
    ``check_s``) and logs it.
    """

    def __init__(
        self, signals: tuple[signal.Signals, ...] = SIGNALS, *, check_s: float = 0.1
    ) -> None:
        self.signals = signals
        self.check_s = check_s
        self.requested = threading.Event()
        self.urgent = threading.Event()
        self.received: signal.Signals | None = None
        self._caught: list[signal.Signals] = []  # list.append: atomic, no lock
        self._previous: dict[signal.Signals, Any] = {}
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._caught.append(signal.Signals(signum))

    def _follow(self) -> None:
        seen = 0
        while not self._closed.wait(self.check_s):
            while seen < len(self._caught):
                sig = self._caught[seen]
                seen += 1
                if self.requested.is_set():
                    self.urgent.set()
                    log.warning("%s again: not waiting for running jobs any more", sig.name)
                else:
                    self.received = sig
                    self.requested.set()
                    log.warning("%s: stopping", sig.name)

    def wait(self, poll_s: float = 0.5) -> signal.Signals | None:
        """Block until a signal asks to stop (or :attr:`requested` is set); the signal."""
        while not self.requested.wait(poll_s):
            pass
        return self.received

    def __enter__(self) -> ShutdownSignals:
        if threading.current_thread() is threading.main_thread():
            self._thread = threading.Thread(target=self._follow, name="signals", daemon=True)
            self._thread.start()
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
