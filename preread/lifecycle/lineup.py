"""Which versions read live studies now: per configured model id, the active version and those
in shadow, as the job store's stages say (re-read every few seconds, so a promotion or a
rollback reaches the watcher, and every worker's check, within seconds).

A model id that no operator ever moved keeps the version ``PREREAD_MODELS`` names (the newest
installed when it names none). Once a version of it is recorded active, that version is read,
whatever ``PREREAD_MODELS`` pins (a warning says so); a recorded version that is not installed
here is an error naming it, never a silent fallback to another version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inference.package import ModelPackage
from inference.registry import Registry
from preread.domain import ModelRef
from preread.lifecycle.stages import LifecycleError, Stage, StageRecord
from preread.lifecycle.store import read_stages
from preread.store import JobStore

__all__ = ["Lineup", "LiveLineup", "Reading", "lineup_of"]

log = logging.getLogger(__name__)

TTL_S = 2.0
"""How long a lineup read from the store is used before it is read again."""


@dataclass(frozen=True)
class Reading:
    """One model version that reads each study, in shadow or for real."""

    model: ModelRef
    shadow: bool = False


@dataclass(frozen=True)
class Lineup:
    readings: tuple[Reading, ...]
    stages: tuple[StageRecord, ...]

    def stage(self, model_id: str, version: str) -> StageRecord:
        """The version's stage: as recorded; else active when it reads for real (named by
        ``PREREAD_MODELS``), else a candidate."""
        for s in self.stages:
            if (s.model_id, s.version) == (model_id, version):
                return s
        live = any(
            (r.model.id, r.model.version) == (model_id, version) and not r.shadow
            for r in self.readings
        )
        if live:
            return StageRecord(model_id, version, Stage.ACTIVE, reason="named by PREREAD_MODELS")
        return StageRecord(model_id, version, Stage.CANDIDATE)

    def may_run(self, model_id: str, version: str, shadow: bool) -> tuple[bool, str]:
        """Whether a queued job of this version may still be read, and why not: a shadow job
        only while its version is in shadow, a real one unless its version was retired (by a
        rollback, a promotion of another version or ``retire``)."""
        recorded = next(
            (s for s in self.stages if s.model_id == model_id and s.version == version), None
        )
        if shadow:
            if recorded is None or recorded.stage is not Stage.SHADOW:
                stage = recorded.stage.value if recorded else Stage.CANDIDATE.value
                return False, f"{model_id} {version} is no longer in shadow (now {stage})"
            return True, ""
        if recorded is not None and recorded.stage is Stage.RETIRED:
            when = recorded.changed_at.isoformat() if recorded.changed_at else "?"
            return False, (
                f"{model_id} {version} was withdrawn ({when}, by {recorded.changed_by}: "
                f"{recorded.reason}); the active version reads the study"
            )
        return True, ""


def ref_of(package: ModelPackage) -> ModelRef:
    card = package.card
    return ModelRef(card.id, card.version, card.name, card.onnx.sha256)


def lineup_of(
    configured: Sequence[ModelPackage],
    stages: Sequence[StageRecord],
    find: Callable[[str, str], ModelPackage],
) -> Lineup:
    """The readings of ``configured`` model ids under ``stages`` (``find`` loads an installed
    version; it raises when the version is not installed)."""
    readings: list[Reading] = []
    for package in configured:
        model_id = package.card.id
        own = [s for s in stages if s.model_id == model_id]
        active = [s for s in own if s.stage is Stage.ACTIVE]
        if len(active) > 1:  # the store's moves never do this; a hand-edited table might
            names = ", ".join(s.version for s in active)
            raise LifecycleError(f"{model_id}: more than one active version ({names})")
        if active:
            if active[0].version != package.card.version:
                log.warning(
                    "%s: PREREAD_MODELS resolves to %s, the recorded active version is %s: "
                    "%s reads",
                    model_id,
                    package.card.version,
                    active[0].version,
                    active[0].version,
                )
            readings.append(Reading(ref_of(find(model_id, active[0].version))))
        else:
            readings.append(Reading(ref_of(package)))
        for s in own:
            if s.stage is Stage.SHADOW:
                readings.append(Reading(ref_of(find(model_id, s.version)), shadow=True))
    return Lineup(tuple(readings), tuple(stages))


class LiveLineup:
    """:func:`lineup_of` as the store says now, read again after :data:`TTL_S` (thread-safe;
    packages are loaded, and verified, once per process)."""

    def __init__(
        self,
        store: JobStore,
        configured: Sequence[ModelPackage],
        registry: Registry,
        *,
        ttl_s: float = TTL_S,
    ) -> None:
        self.store = store
        self.configured = list(configured)
        self.registry = registry
        self.ttl_s = ttl_s
        self._packages: dict[tuple[str, str], ModelPackage] = {
            (p.card.id, p.card.version): p for p in configured
        }
        self._lock = threading.Lock()
        self._cached: tuple[float, Lineup] | None = None

    def _find(self, model_id: str, version: str) -> ModelPackage:
        key = (model_id, version)
        if key not in self._packages:
            try:
                self._packages[key] = self.registry.find(model_id, version)
            except Exception as exc:
                raise LifecycleError(
                    f"{model_id} {version} is recorded active or in shadow but cannot be "
                    f"loaded here: {exc}"
                ) from exc
        return self._packages[key]

    def current(self) -> Lineup:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl_s:
                return self._cached[1]
            ids = {p.card.id for p in self.configured}
            stages = [s for s in read_stages(self.store) if s.model_id in ids]
            lineup = lineup_of(self.configured, stages, self._find)
            self._cached = (now, lineup)
            return lineup

    def readings(self) -> tuple[Reading, ...]:
        return self.current().readings

    def may_run(self, model_id: str, version: str, shadow: bool) -> tuple[bool, str]:
        return self.current().may_run(model_id, version, shadow)
