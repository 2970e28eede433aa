"""A model's life: candidate → shadow → active → retired (issue 15, item 3).

* :mod:`.stages` — the stages and the moves allowed between them;
* :mod:`.store` — the stages as recorded (table ``model_stages``);
* :mod:`.lineup` — which versions read live studies now, for real or in shadow
  (the watcher enqueues a job for each; a worker checks a queued job's version still may run);
* :mod:`.gate` — the promotion gate's figures (pure);
* :mod:`.operations` — the operator's moves, audited (``preread models shadow|promote|
  rollback|retire``).
"""

from preread.lifecycle.gate import GateResult
from preread.lifecycle.lineup import Lineup, LiveLineup, Reading
from preread.lifecycle.operations import GateRefusedError, ModelLife, WithdrawnRead
from preread.lifecycle.stages import LifecycleError, Stage, StageRecord

__all__ = [
    "GateRefusedError",
    "GateResult",
    "LifecycleError",
    "Lineup",
    "LiveLineup",
    "ModelLife",
    "Reading",
    "Stage",
    "StageRecord",
    "WithdrawnRead",
]
