"""The review page's cache of loaded series: bounded by bytes (least recently used out), idle
entries dropped, tenants never sharing an entry, one load per key however many ask at once,
failed loads not kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from preread.volume_cache import VolumeCache


@dataclass(frozen=True)
class Blob:
    name: str
    nbytes: int


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def loader(name: str, size: int) -> Callable[[], Blob]:
    return lambda: Blob(name, size)


def test_least_recently_used_entries_leave_first_and_oversized_ones_are_not_held() -> None:
    cache: VolumeCache[Blob] = VolumeCache(100, 60.0)
    for name in ("a", "b", "c"):
        cache.get("t", name, loader(name, 40))
    assert cache.held() == [("t", "b"), ("t", "c")] and cache.held_bytes == 80
    cache.get("t", "b", lambda: Blob("never", 1))  # b is now the most recent
    cache.get("t", "d", lambda: Blob("d", 40))
    assert cache.held() == [("t", "b"), ("t", "d")]
    huge = cache.get("t", "e", lambda: Blob("e", 1000))
    assert huge.name == "e" and ("t", "e") not in cache.held()
    assert cache.loads == 5


def test_idle_entries_expire_and_tenants_never_share() -> None:
    clock = Clock()
    cache: VolumeCache[Blob] = VolumeCache(1000, 30.0, clock=clock)
    mine = cache.get("hosp-a", "job-1", lambda: Blob("a's", 10))
    theirs = cache.get("hosp-b", "job-1", lambda: Blob("b's", 10))
    assert (mine.name, theirs.name) == ("a's", "b's")  # the same key, another tenant: its own
    clock.now += 20
    assert cache.get("hosp-a", "job-1", lambda: Blob("again", 10)).name == "a's"  # used: kept
    clock.now += 20  # b's idle for 40 s, a's for 20 s
    assert cache.held() == [("hosp-a", "job-1")]
    cache.drop("hosp-a")
    assert cache.held() == []
    with pytest.raises(ValueError, match="tenant"):
        cache.get("", "job-1", lambda: Blob("x", 1))


def test_one_load_for_many_callers_and_a_failed_load_is_not_kept() -> None:
    cache: VolumeCache[Blob] = VolumeCache(1000, 60.0)
    started = threading.Event()
    calls = []

    def slow() -> Blob:
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return Blob("series", 10)

    got: list[str] = []
    threads = [
        threading.Thread(target=lambda: got.append(cache.get("t", "k", slow).name))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == ["series"] * 5 and len(calls) == 1 and cache.loads == 1

    def broken() -> Blob:
        raise OSError("Orthanc went away")

    with pytest.raises(OSError, match="went away"):
        cache.get("t", "bad", broken)
    assert cache.get("t", "bad", lambda: Blob("fine", 1)).name == "fine"
