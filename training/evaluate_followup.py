"""Measure the follow-up comparison (:func:`preread.followup.comparison.compare`) on follow-up
pairs with known truth (:mod:`training.followup_phantoms`): ``preread models
evaluate-followup``.

Two modes:

* ``truth``: the findings of each study are its truth nodules (a :class:`~preread.domain.
  Finding` per non-calcified nodule at its truth centre, long = axial long = short axis = the
  sphere's diameter, the analytic volume, the true type and, part-solid, the core's diameter
  as solid component); the lung surfaces come from the analytic lungs (the follow-up's moved
  with the patient). This measures registration, matching, growth and Lung-RADS alone.
* ``model``: both scans are read by a model package through the serving path
  (:func:`training.staged.serving_predictor`); the lung surfaces come from the lung mask the
  model computed on its grid (:func:`inference.lungs.lung_mask`).

Then, per pair: the baseline is read as a first exam (Lung-RADS with baseline rows), the
follow-up is compared with it (``compare``, the baseline as the previous study) and assessed
with the comparison and the baseline's categories (stepped management).

Definitions (also written into the document under ``definitions``):

* A finding **hits** a tracked truth nodule by the LUNA16 rule (its centre within
  max(long axis / 2, 2 mm) of the nodule's centre, :func:`training.evaluate.hits`); a truth
  nodule is **detected** in a study by its most probable hitting finding.
* **Matching**: a persistent row of the comparison is *right* when both its ends (the prior's
  and the current finding) hit the same tracked nodule; rows with neither end on a tracked
  nodule (a false positive matched to a false positive) are left out and counted apart.
  Precision = right rows / rows with an end on a tracked nodule; recall = persistent truth
  nodules detected in both studies that have a right row / persistent truth nodules detected
  in both; ``recall_end_to_end`` divides by all persistent truth nodules.
* **Status accuracy**: over the truth nodules detected in every study they are in, the share
  whose comparison row (by the follow-up finding; a resolved nodule by the baseline finding)
  has the true status.
* **VDT error**: (measured − true) / true VDT, for persistent truth nodules with a baseline
  diameter ≥ 6 mm and a true volume growth ≥ 25 % whose row is right (no VDT given: not
  within ±10 %).
* **Exam category**: the follow-up exam's Lung-RADS category against the truth's (for the
  model, also with each finding's type replaced by the type of the nodule it hits: "type from
  the truth"); the baseline exam's likewise.
* **Registration error**: the distance, at the truth nodules' baseline centres, between where
  the registration (:func:`preread.followup.registration.register_points` of the baseline's
  lung surface onto the follow-up's) and the true motion put them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from preread.domain import (
    Comparison,
    Finding,
    LungRadsAssessment,
    LungRadsCategory,
    NoduleComparison,
    PriorStudy,
    TruthNodule,
)
from preread.followup.comparison import PriorReading, compare
from preread.followup.lungrads import assess
from preread.followup.registration import mask_surface_points, register_points
from training.evaluate import hits
from training.followup_phantoms import FollowUpPair, Study, TrackedNodule, follow_up_pair

__all__ = [
    "FOLLOWUP_SEED",
    "Mode",
    "PairResult",
    "evaluate_followup",
    "read_pair",
    "summarize",
    "truth_findings",
]

Mode = Literal["truth", "model"]
#: First seed of the follow-up pairs (disjoint from training, validation, test, robustness)
FOLLOWUP_SEED = 970_000
RELEVANT_MM = 6.0
MIN_GROWTH = 0.25
VDT_TOLERANCE = 0.10

Surface = npt.NDArray[np.float64]
#: Reads one study: (findings, lung surface points in LPS mm)
Reader = Callable[[FollowUpPair, Study], tuple[tuple[Finding, ...], Surface]]


def truth_findings(pair: FollowUpPair, study: Study) -> tuple[Finding, ...]:
    """The truth nodules of ``study`` as findings (module docstring, ``truth`` mode)."""
    tracked = {n.label(study): n for n in pair.nodules if n.label(study) is not None}
    out = []
    for t in pair.phantom(study).nodules:
        n = tracked.get(t.label)
        if t.calcified or n is None:
            continue
        d = n.diameter(study)
        assert d is not None
        out.append(
            Finding(
                label=t.label,
                center_lps_mm=t.center_lps_mm,
                long_axis_mm=d,
                volume_mm3=float(np.pi / 6.0 * d**3),
                probability=1.0,
                mean_hu=0.0,
                voxel_count=0,
                nodule_type=t.type,
                axial_long_axis_mm=d,
                short_axis_mm=d,
                solid_component_long_axis_mm=n.solid_mm(study),
            )
        )
    return tuple(out)


def truth_reader() -> Reader:
    """``truth`` mode: truth findings, analytic lungs (the follow-up's moved)."""
    cache: dict[int, tuple[Surface, Surface]] = {}

    def read(pair: FollowUpPair, study: Study) -> tuple[tuple[Finding, ...], Surface]:
        if pair.seed not in cache:
            cache.clear()
            base, fu = pair.lung_masks()
            g = pair.baseline.volume.geometry
            cache[pair.seed] = (mask_surface_points(base, g), mask_surface_points(fu, g))
        surfaces = cache[pair.seed]
        return truth_findings(pair, study), surfaces[0 if study == "baseline" else 1]

    return read


def model_reader(predictor: Any) -> Reader:
    """``model`` mode: ``predictor`` (:class:`inference.predict.Predictor`) on each scan; the
    lung surface from the lung mask it computed (or :func:`inference.lungs.lung_mask` on its
    input when the card has none)."""
    from inference.lungs import lung_mask

    def read(pair: FollowUpPair, study: Study) -> tuple[tuple[Finding, ...], Surface]:
        prediction = predictor.predict(pair.phantom(study).volume)
        lungs = prediction.lungs
        if lungs is None:
            vol = pair.phantom(study).volume
            if vol.geometry.slice_direction[2] < 0:  # lung_mask wants a canonical grid
                raise ValueError("the model computed no lung mask and the scan is not canonical")
            lungs = lung_mask(vol.array, vol.geometry)
        return tuple(prediction.findings), mask_surface_points(lungs.mask, lungs.geometry)

    return read


@dataclass
class NoduleOutcome:
    """One tracked truth nodule of one pair, as the comparison saw it."""

    key: str
    status: str
    type: str
    baseline_diameter_mm: float | None
    follow_up_diameter_mm: float | None
    detected_baseline: bool | None  # None: not in that study
    detected_follow_up: bool | None
    predicted_status: str | None = None  # None: not detected where it is
    matched_right: bool | None = None  # persistent only
    true_vdt_days: float | None = None
    measured_vdt_days: float | None = None
    vdt_rel_error: float | None = None
    vdt_scored: bool = False


@dataclass
class PairResult:
    seed: int
    days: int
    comparison_status: str
    registration_residual_mm: float | None
    registration_error_mm: float | None  # max over the pair's nodules
    rotation_deg_true: float
    n_findings_baseline: int
    n_findings_follow_up: int
    right_rows: int = 0
    wrong_rows: int = 0
    fp_rows: int = 0  # persistent rows with neither end on a tracked nodule
    true_exam: LungRadsCategory | None = None
    exam: LungRadsCategory | None = None
    exam_truth_types: LungRadsCategory | None = None
    true_baseline_exam: LungRadsCategory | None = None
    baseline_exam: LungRadsCategory | None = None
    nodules: list[NoduleOutcome] = field(default_factory=list)
    seconds: float = 0.0
    reason: str | None = None


def _hits(
    findings: Sequence[Finding], truth: dict[int, TruthNodule], keys: dict[int, str]
) -> tuple[dict[int, str], dict[str, int]]:
    """(finding label → key of the nearest tracked nodule it hits, key → label of the most
    probable finding that hits it)."""
    by_finding: dict[int, str] = {}
    best: dict[str, int] = {}
    for f in sorted(findings, key=lambda f: -f.probability):
        hit = [t for t in truth.values() if hits(f.center_lps_mm, t)]
        if not hit:
            continue
        nearest = min(
            hit, key=lambda t: float(np.linalg.norm(np.subtract(f.center_lps_mm, t.center_lps_mm)))
        )
        by_finding[f.label] = keys[nearest.label]
        for t in hit:
            best.setdefault(keys[t.label], f.label)
    return by_finding, best


def _tracked(pair: FollowUpPair, study: Study) -> tuple[dict[int, TruthNodule], dict[int, str]]:
    """The tracked truth nodules of ``study`` by label, and their keys by label."""
    keys = {n.label(study): n.key for n in pair.nodules if n.label(study) is not None}
    truth = {t.label: t for t in pair.phantom(study).nodules if t.label in keys}
    return truth, {int(k): v for k, v in keys.items() if k is not None}


def _with_truth_types(
    findings: Sequence[Finding], by_finding: dict[int, str], nodules: dict[str, TrackedNodule]
) -> tuple[Finding, ...]:
    return tuple(
        dataclasses.replace(f, nodule_type=nodules[by_finding[f.label]].type)
        if f.label in by_finding
        else f
        for f in findings
    )


def _assess_pair(
    base: Sequence[Finding],
    fu: Sequence[Finding],
    comparison: Comparison,
    prior_uids: dict[int, str],
) -> tuple[LungRadsAssessment, LungRadsAssessment]:
    first = assess(base, None)
    categories = {prior_uids[n.label]: n.category for n in first.nodules if n.category is not None}
    return first, assess(fu, comparison, prior_categories=categories)


def read_pair(pair: FollowUpPair, reader: Reader) -> PairResult:
    """Read both studies of ``pair``, compare, assess and score (module docstring)."""
    t0 = time.perf_counter()
    base, base_surface = reader(pair, "baseline")
    fu, fu_surface = reader(pair, "follow-up")
    prior_uids = {f.label: f"prior-{f.label}" for f in base}
    previous = PriorReading(
        PriorStudy(f"baseline-{pair.seed}", pair.baseline_date, "previous"),
        base,
        prior_uids,
        base_surface,
    )
    comparison = compare(
        fu, fu_surface, pair.follow_up_date, previous, None, lambda f: f"new-{f.label}"
    )
    reg_error = None
    if len(base_surface) >= 50 and len(fu_surface) >= 50:
        transform, _ = register_points(base_surface, fu_surface)
        centres = [n.baseline_center_lps_mm for n in pair.nodules if n.baseline_center_lps_mm]
        if centres:
            est = transform.apply_points(centres)
            true = pair.motion.apply_points(centres)
            reg_error = float(np.linalg.norm(est - true, axis=1).max())

    nodules = {n.key: n for n in pair.nodules}
    base_truth, base_keys = _tracked(pair, "baseline")
    fu_truth, fu_keys = _tracked(pair, "follow-up")
    base_hit, base_best = _hits(base, base_truth, base_keys)
    fu_hit, fu_best = _hits(fu, fu_truth, fu_keys)
    first, second = _assess_pair(base, fu, comparison, prior_uids)
    _, typed = _assess_pair(
        _with_truth_types(base, base_hit, nodules),
        _with_truth_types(fu, fu_hit, nodules),
        comparison,
        prior_uids,
    )
    result = PairResult(
        seed=pair.seed,
        days=pair.days,
        comparison_status=comparison.status,
        registration_residual_mm=comparison.registration_residual_mm,
        registration_error_mm=reg_error,
        rotation_deg_true=round(pair.motion.rotation_deg, 3),
        n_findings_baseline=len(base),
        n_findings_follow_up=len(fu),
        true_exam=pair.follow_up_exam,
        exam=second.category,
        exam_truth_types=typed.category,
        true_baseline_exam=pair.baseline_exam,
        baseline_exam=first.category,
        reason=comparison.reason,
    )
    right: set[str] = set()
    for row in comparison.nodules:
        if row.status != "persistent":
            continue
        kb = base_hit.get(row.prior_label) if row.prior_label is not None else None
        kf = fu_hit.get(row.current_label) if row.current_label is not None else None
        if kb is None and kf is None:
            result.fp_rows += 1
        elif kb == kf and kb is not None:
            result.right_rows += 1
            right.add(kb)
        else:
            result.wrong_rows += 1
    by_current = {r.current_label: r for r in comparison.nodules if r.current_label is not None}
    resolved_by_prior = {
        r.prior_label: r for r in comparison.nodules if r.status == "resolved" and r.prior_label
    }
    by_prior = {r.prior_label: r for r in comparison.nodules if r.prior_label is not None}
    for n in pair.nodules:
        o = NoduleOutcome(
            n.key,
            n.status,
            n.type,
            n.baseline_diameter_mm,
            n.follow_up_diameter_mm,
            None if n.baseline_label is None else n.key in base_best,
            None if n.follow_up_label is None else n.key in fu_best,
            true_vdt_days=n.vdt_days,
        )
        if o.detected_baseline is not False and o.detected_follow_up is not False:
            seen: NoduleComparison | None
            if n.status == "resolved":
                seen = resolved_by_prior.get(base_best[n.key]) or by_prior.get(base_best[n.key])
            else:
                seen = by_current.get(fu_best[n.key])
            o.predicted_status = None if seen is None else seen.status
        if n.status == "persistent":
            o.matched_right = n.key in right
            grew = (n.volume_change_pct or 0.0) >= 100.0 * MIN_GROWTH
            if grew and (n.baseline_diameter_mm or 0.0) >= RELEVANT_MM and n.key in right:
                o.vdt_scored = True
                found = next(
                    r
                    for r in comparison.nodules
                    if r.status == "persistent"
                    and r.prior_label is not None
                    and base_hit.get(r.prior_label) == n.key
                    and r.current_label is not None
                    and fu_hit.get(r.current_label) == n.key
                )
                o.measured_vdt_days = found.vdt_days
                if found.vdt_days is not None and n.vdt_days:
                    o.vdt_rel_error = (found.vdt_days - n.vdt_days) / n.vdt_days
        result.nodules.append(o)
    result.seconds = time.perf_counter() - t0
    return result


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def summarize(results: Sequence[PairResult], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures over all pairs (module docstring) and the per-pair results."""
    nod = [n for r in results for n in r.nodules]
    right = sum(r.right_rows for r in results)
    judged = right + sum(r.wrong_rows for r in results)
    persistent = [n for n in nod if n.status == "persistent"]
    both = [n for n in persistent if n.detected_baseline and n.detected_follow_up]
    recall = _ratio(sum(bool(n.matched_right) for n in both), len(both))
    precision = _ratio(right, judged)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    status = [n for n in nod if _detected_everywhere(n)]
    vdt = [n for n in nod if n.vdt_scored]
    errors = [abs(n.vdt_rel_error) for n in vdt if n.vdt_rel_error is not None]
    within = sum(n.vdt_rel_error is not None and abs(n.vdt_rel_error) <= VDT_TOLERANCE for n in vdt)
    reg = [r.registration_error_mm for r in results if r.registration_error_mm is not None]
    resid = [r.registration_residual_mm for r in results if r.registration_residual_mm is not None]
    by_status = {
        s: _ratio(
            sum(n.predicted_status == s for n in status if n.status == s),
            sum(n.status == s for n in status),
        )
        for s in ("new", "persistent", "resolved")
    }
    return {
        "n_pairs": len(results),
        "n_compared": sum(r.comparison_status == "compared" for r in results),
        "n_nodules": len(nod),
        "n_nodules_by_status": {
            s: sum(n.status == s for n in nod) for s in ("new", "persistent", "resolved")
        },
        "matching": {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "recall_end_to_end": _ratio(
                sum(bool(n.matched_right) for n in persistent), len(persistent)
            ),
            "right_rows": right,
            "wrong_rows": judged - right,
            "false_positive_rows": sum(r.fp_rows for r in results),
            "persistent_detected_in_both": len(both),
            "persistent": len(persistent),
        },
        "status": {
            "accuracy": _ratio(sum(n.predicted_status == n.status for n in status), len(status)),
            "n": len(status),
            "by_status": by_status,
        },
        "vdt": {
            "n": len(vdt),
            "median_abs_rel_error": float(np.median(errors)) if errors else None,
            "max_abs_rel_error": float(max(errors)) if errors else None,
            "share_within_10pct": _ratio(within, len(vdt)),
            "without_vdt": sum(n.vdt_rel_error is None for n in vdt),
        },
        "exam_category": {
            "agreement": _ratio(sum(r.exam == r.true_exam for r in results), len(results)),
            "agreement_truth_types": _ratio(
                sum(r.exam_truth_types == r.true_exam for r in results), len(results)
            ),
            "baseline_agreement": _ratio(
                sum(r.baseline_exam == r.true_baseline_exam for r in results), len(results)
            ),
        },
        "registration": {
            "residual_mm_median": float(np.median(resid)) if resid else None,
            "residual_mm_max": float(max(resid)) if resid else None,
            "error_at_nodules_mm_median": float(np.median(reg)) if reg else None,
            "error_at_nodules_mm_max": float(max(reg)) if reg else None,
        },
        "seconds_per_pair": {"median": float(np.median([r.seconds for r in results]))}
        if results
        else None,
        "definitions": (__doc__ or "")
        .split("Definitions (also written into the document under ``definitions``):")[-1]
        .strip(),
        **(meta or {}),
        "pairs": [dataclasses.asdict(r) for r in results],
    }


def _detected_everywhere(n: NoduleOutcome) -> bool:
    return n.detected_baseline is not False and n.detected_follow_up is not False


def pairs(
    seed: int, count: int, *, matrix: int = 512, max_slices: int | None = None
) -> Iterable[FollowUpPair]:
    """Follow-up pairs ``seed … seed + count - 1``, generated on the fly."""
    for s in range(seed, seed + count):
        yield follow_up_pair(s, matrix=matrix, max_slices=max_slices)


def evaluate_followup(
    reader: Reader,
    seed: int,
    count: int,
    *,
    matrix: int = 512,
    max_slices: int | None = None,
    meta: dict[str, Any] | None = None,
    progress: Callable[[PairResult], None] | None = None,
) -> dict[str, Any]:
    """Generate ``count`` pairs from ``seed``, read each with ``reader`` and summarize."""
    results = []
    for pair in pairs(seed, count, matrix=matrix, max_slices=max_slices):
        r = read_pair(pair, reader)
        results.append(r)
        if progress is not None:
            progress(r)
    data = {"seed": seed, "count": count, "matrix": matrix, "max_slices": max_slices}
    return summarize(results, {"data": data, **(meta or {})})
