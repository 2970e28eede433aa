"""The promotion gate: a version in shadow against the active one, on the studies both read
that a radiologist reviewed, and on the held-out phantoms both packages were evaluated on.

Truth on a reviewed study is what its signed review says of the *active* version's reading:
the findings it accepted or corrected, and the nodules the reader added. Then:

* the active version's sensitivity is (accepted + corrected) / (those + added), its false
  positives are its rejected findings;
* a shadow finding **hits** a true nodule when its centre lies within max(long axis / 2, 2 mm)
  of the nodule's centre (the LUNA16 rule the model evaluations use); the shadow's sensitivity
  is the true nodules it hits / all of them, its false positives are its findings that hit none.

A shadow finding the reader never saw (the active version did not find it, the reader did not
add it) counts against the shadow version: the gate errs towards the version radiologists
already judged. The gate passes when, on at least ``min_studies`` studies, the shadow's
sensitivity is not below the active's and its false positives per scan are at most the
active's + 0.1; and on the held-out phantoms (the same set: seed and count) its CPM and
sensitivity at the operating point are not below the active's by more than 0.02 (about the
half-width of their bootstrap intervals on 100 phantoms) and its false positives per scan are
at most the active's + 0.1. When the candidate was evaluated beside the active version in the
same run (``preread models build``: its ``evaluation.json`` names the active version as its
baseline, read then on the same scans), those side-by-side figures are the active's
(:func:`held_out_figures`); otherwise the active package's own ``evaluation.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FP_MARGIN",
    "HELD_OUT_MARGIN",
    "GateResult",
    "Nodule",
    "ReviewedStudy",
    "gate",
    "held_out_figures",
]

FP_MARGIN = 0.1
"""False positives per scan the shadow version may add over the active one."""
HELD_OUT_MARGIN = 0.02
"""How far the held-out CPM and sensitivity may fall below the active version's."""
MIN_HIT_RADIUS_MM = 2.0

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Nodule:
    centre: Vec3
    long_axis_mm: float

    def hit_by(self, point: Vec3) -> bool:
        radius = max(self.long_axis_mm / 2.0, MIN_HIT_RADIUS_MM)
        return math.dist(self.centre, point) <= radius


@dataclass(frozen=True)
class ReviewedStudy:
    """One study read by both versions whose active reading a radiologist reviewed."""

    study_instance_uid: str
    review_id: str
    truth: tuple[Nodule, ...]
    """Accepted and corrected AI findings, and reader-added nodules."""
    active_found: int
    """How many of ``truth`` the active version found (accepted + corrected)."""
    active_false: int
    """The active version's rejected findings."""
    shadow_findings: tuple[Vec3, ...]


@dataclass(frozen=True)
class GateResult:
    passed: bool
    figures: Mapping[str, Any]
    failures: tuple[str, ...]

    def table(self) -> str:
        """The gate's figures as a Markdown table (what the closing note and the CLI show)."""
        f = self.figures
        lines = [
            f"| on {f['studies']} reviewed studies | active {f['active']} | "
            f"shadow {f['candidate']} | rule |",
            "| --- | --- | --- | --- |",
            f"| sensitivity | {_fmt(f['active_sensitivity'])} | {_fmt(f['shadow_sensitivity'])}"
            " | shadow >= active |",
            f"| false positives per scan | {_fmt(f['active_fp_per_scan'])} | "
            f"{_fmt(f['shadow_fp_per_scan'])} | shadow <= active + {FP_MARGIN} |",
        ]
        held = f.get("held_out") or {}
        for key, rule in (
            ("cpm", f"candidate >= active - {HELD_OUT_MARGIN}"),
            ("sensitivity_ge6mm", f"candidate >= active - {HELD_OUT_MARGIN}"),
            ("fp_per_scan", f"candidate <= active + {FP_MARGIN}"),
        ):
            if key in held:
                a, c = held[key]
                lines.append(f"| held-out {key} | {_fmt(a)} | {_fmt(c)} | {rule} |")
        return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def gate(
    studies: Sequence[ReviewedStudy],
    *,
    active: str,
    candidate: str,
    active_evaluation: Mapping[str, Any],
    candidate_evaluation: Mapping[str, Any],
    min_studies: int,
) -> GateResult:
    """The gate's figures and verdict (pure: the caller gathers the studies)."""
    failures: list[str] = []
    truth = sum(len(s.truth) for s in studies)
    active_found = sum(s.active_found for s in studies)
    hits = 0
    shadow_false = 0
    for s in studies:
        hits += sum(1 for n in s.truth if any(n.hit_by(p) for p in s.shadow_findings))
        shadow_false += sum(1 for p in s.shadow_findings if not any(n.hit_by(p) for n in s.truth))
    n = len(studies)
    a_sens = active_found / truth if truth else None
    s_sens = hits / truth if truth else None
    a_fp = sum(s.active_false for s in studies) / n if n else None
    s_fp = shadow_false / n if n else None
    if n < min_studies:
        failures.append(
            f"{n} reviewed studies read in shadow, fewer than the {min_studies} the gate needs"
        )
    if a_sens is not None and s_sens is not None and s_sens < a_sens:
        failures.append(f"shadow sensitivity {s_sens:.3f} is below the active's {a_sens:.3f}")
    if a_fp is not None and s_fp is not None and s_fp > a_fp + FP_MARGIN + 1e-9:
        failures.append(
            f"shadow false positives per scan {s_fp:.3f} exceed the active's {a_fp:.3f} "
            f"+ {FP_MARGIN}"
        )
    held, held_failures = _held_out(active_evaluation, candidate_evaluation)
    failures += held_failures
    figures = {
        "active": active,
        "candidate": candidate,
        "studies": n,
        "min_studies": min_studies,
        "true_nodules": truth,
        "active_sensitivity": a_sens,
        "shadow_sensitivity": s_sens,
        "active_fp_per_scan": a_fp,
        "shadow_fp_per_scan": s_fp,
        "held_out": held,
        "reviews": sorted(s.review_id for s in studies),
        "failures": list(failures),
    }
    return GateResult(not failures, figures, tuple(failures))


def held_out_figures(
    active: Mapping[str, Any], candidate: Mapping[str, Any], active_ref: str
) -> Mapping[str, Any]:
    """The active version's held-out figures to hold the candidate against: those of the
    candidate's own evaluation when it read ``active_ref`` beside it on the same scans (its
    ``baseline``, ``source`` "same run"), else the active package's ``evaluation.json``."""
    base = candidate.get("baseline")
    if (
        isinstance(base, Mapping)
        and base.get("model") == active_ref
        and base.get("source") == "same run"
        and isinstance(base.get("held_out"), Mapping)
    ):
        return {**base["held_out"], "data": candidate.get("data") or {}}
    return active


def _held_out(
    active: Mapping[str, Any], candidate: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    failures: list[str] = []
    data_a, data_c = active.get("data") or {}, candidate.get("data") or {}
    same = {k: data_a.get(k) for k in ("seed", "count")} == {
        k: data_c.get(k) for k in ("seed", "count")
    }
    if not same or not data_a:
        failures.append(
            "the two packages were not evaluated on the same held-out phantoms "
            f"(active: {dict(data_a)}, candidate: {dict(data_c)}): evaluate the candidate on "
            "the active version's held-out set"
        )
    held: dict[str, Any] = {"data": {k: data_a.get(k) for k in ("source", "seed", "count")}}
    for key in ("cpm", "sensitivity_ge6mm", "fp_per_scan"):
        a, c = active.get(key), candidate.get(key)
        if not isinstance(a, int | float) or not isinstance(c, int | float):
            failures.append(f"held-out {key} missing from an evaluation")
            continue
        held[key] = (float(a), float(c))
        worse = c > a + FP_MARGIN + 1e-9 if key == "fp_per_scan" else c < a - HELD_OUT_MARGIN
        if worse:
            failures.append(f"held-out {key}: candidate {c:.3f} against the active's {a:.3f}")
    return held, failures
