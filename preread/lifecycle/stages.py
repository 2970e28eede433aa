"""A model version's stages and the moves between them, as data and pure functions.

::

    candidate ──shadow──> shadow ──promote (gate)──> active ──rollback──> retired
        │                   │                          │ (the version it replaced is active again)
        └──────retire───────┴──────────retire──────────┘ (not the active one)

* **candidate** — installed, not in use (every installed version that no operator moved);
* **shadow** — reads the same live studies as the active version; its results are stored and
  comparable but never leave (no DICOM object, no report, no webhook);
* **active** — the version whose results radiologists and hospital systems get; at most one per
  model id (none recorded: the version ``PREREAD_MODELS`` names, see :mod:`.lineup`);
* **retired** — no longer used; a retired version may be put in shadow again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from preread.errors import PrereadError

__all__ = ["LifecycleError", "Move", "Stage", "StageRecord", "check_move"]


class LifecycleError(PrereadError):
    """A move the version's stage does not allow, or a version that is not installed."""


class Stage(StrEnum):
    CANDIDATE = "candidate"
    SHADOW = "shadow"
    ACTIVE = "active"
    RETIRED = "retired"


class Move(StrEnum):
    SHADOW = "shadow"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    RETIRE = "retire"
    PIN = "pin"
    """Record the version that reads now as active (it was only named by PREREAD_MODELS)."""


_FROM: Mapping[Move, frozenset[Stage]] = {
    Move.SHADOW: frozenset({Stage.CANDIDATE, Stage.RETIRED}),
    Move.PROMOTE: frozenset({Stage.SHADOW}),
    Move.ROLLBACK: frozenset({Stage.ACTIVE}),
    Move.RETIRE: frozenset({Stage.CANDIDATE, Stage.SHADOW}),
    Move.PIN: frozenset({Stage.CANDIDATE}),
}
_WHY: Mapping[Move, str] = {
    Move.SHADOW: "only a candidate or a retired version can go into shadow",
    Move.PROMOTE: "only a version in shadow can be promoted (its shadow readings are the gate)",
    Move.ROLLBACK: "only the active version can be rolled back",
    Move.RETIRE: (
        "the active version is retired by promoting another or by rolling it back, never alone"
    ),
    Move.PIN: "only a version no move was recorded for can be pinned as the active one",
}


@dataclass(frozen=True)
class StageRecord:
    """What the store holds of one version: its stage and the last move's who, when and why;
    ``replaced``: the version that was active when it was promoted; ``gate``: the figures of
    its promotion."""

    model_id: str
    version: str
    stage: Stage
    changed_at: datetime | None = None
    changed_by: str | None = None
    reason: str | None = None
    replaced: str | None = None
    gate: Mapping[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"


def check_move(record: StageRecord, move: Move) -> None:
    """Raise :class:`LifecycleError` (naming the version, its stage and the rule) unless
    ``move`` may be made from ``record``'s stage."""
    if record.stage not in _FROM[move]:
        raise LifecycleError(
            f"{record.ref} is {record.stage.value}: cannot {move.value} it ({_WHY[move]})"
        )


def check_words(by: str, reason: str) -> tuple[str, str]:
    """The approver's name and the reason, stripped; both required (they go into the audit
    trail), at most 255 and 1,000 characters, no control characters."""
    out = []
    for label, value, limit in (("--by", by, 255), ("--reason", reason, 1000)):
        text = value.strip()
        if not text:
            raise LifecycleError(f"{label} is required: say who and why (it is audited)")
        if len(text) > limit or any(ord(c) < 0x20 or c == "\x7f" for c in text):
            raise LifecycleError(
                f"{label} must be at most {limit} characters, without control characters"
            )
        out.append(text)
    return out[0], out[1]
