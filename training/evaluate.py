"""Evaluate a model package on scans with known nodules (``preread evaluate MODEL DATA``).

The model runs through the serving path (:class:`inference.predict.Predictor`: ONNX Runtime,
the card's preprocessing, sliding window, postprocessing), so the figures describe what a
radiologist would get, not the torch model. :func:`score` runs it once; :func:`summarize` turns
the scored findings into the evaluation.json document at any probability cut-off
(``min_probability``, e.g. one chosen on a validation split with :func:`operating_point`)
without running the model again.

Definitions (also written into evaluation.json under ``definitions``):

* A finding **hits** a true nodule when its centre lies within max(long axis / 2, 2 mm) of the
  nodule's centre (Euclidean distance in LPS mm): the LUNA16 rule, with a 2 mm floor for tiny
  nodules. Nothing else counts (a nodule centre inside the finding's voxels does not).
* **Relevant** nodules are the non-calcified ones with a long axis ≥ 6 mm; every "≥ 6 mm"
  figure counts only them.
* Findings are taken from the most to the least probable. A nodule is detected by the most
  probable finding that hits it and scores that finding's probability (a finding that hits two
  nodules counts for both). A finding that hits a relevant nodule is a **true positive** when it
  is that nodule's first (most probable) hit and a **duplicate** otherwise: a duplicate is
  neither a true nor a false positive (``duplicates``).
* A finding that hits no relevant nodule but a non-calcified nodule < 6 mm is **ignored** in the
  ≥ 6 mm figures (neither TP nor FP, as LUNA16 excludes them; ``findings_on_small_nodules``);
  the nodule still counts as detected in the < 6 mm band.
* A **calcified** nodule is benign and not to be reported: a finding that hits only calcified
  nodules is a **false positive** (also counted in ``fp_on_calcified``), and calcified nodules
  are in no sensitivity denominator, the < 6 mm band included.
* Every other finding is a false positive; **FP/scan** = false positives / scans.
* **Operating point**: the findings with probability ≥ ``min_probability`` (0: everything the
  model returned); findings below it do not exist for this document. ``sensitivity_ge6mm``,
  ``fp_per_scan``, the breakdowns, type accuracy and the measurements are taken there.
* **FROC**: sensitivity (relevant nodules) against FP/scan as the cut-off on the findings'
  probability rises from the operating point; the sensitivity at a rate is the highest one whose
  FP/scan ≤ the rate; points at 1/8, 1/4, 1/2, 1, 2, 4, 8 FP/scan and **CPM** = their mean.
* **95 % confidence intervals**: percentile bootstrap over scans (the scans are resampled with
  replacement ``n_resamples`` times with a fixed seed, and each figure is recomputed on every
  resample; 2.5th and 97.5th percentiles) for sensitivity ≥ 6 mm, FP/scan and CPM.
* **Breakdowns**: sensitivity, and CPM where the group has nodules, by long-axis band (<6, 6–8,
  8–15, >15 mm; all non-calcified nodules), by type (solid / part-solid / ground-glass) and by
  attachment (isolated / juxtapleural / juxtavascular), both over the relevant nodules. A
  group's CPM uses all false positives of all scans, with the group's nodules as denominator.
* **Type accuracy**: over the detected relevant nodules whose finding carries a type, the share
  whose type equals the true type (None when no finding carries a type); ``type_confusion``
  counts them with rows = true type, columns = the finding's type.
* **Dice** per detected nodule on the scan's native grid: the finding's voxels as the SEG
  delivers them (its label map brought back to the original slices by nearest neighbour,
  :func:`inference.preprocess.labels_to_source_grid`), against the nodule's ground-truth mask.
* **Diameter error**: finding long axis − true long axis (mm); **volume error**:
  (finding − truth) / truth; both on detected relevant nodules. The finding's mean diameter
  (Lung-RADS) is recorded per nodule; the truth has none to compare it with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.postprocess import long_axis_mm
from inference.predict import Prediction, Predictor
from inference.preprocess import to_source_grid
from preread.domain import Finding, TruthNodule, Vec3, Volume

BANDS: list[tuple[str, float, float]] = [
    ("<6", 0.0, 6.0),
    ("6-8", 6.0, 8.0),
    ("8-15", 8.0, 15.0),
    (">15", 15.0, float("inf")),
]
FROC_FP_RATES = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
TYPES = ("solid", "part-solid", "ground-glass")
ATTACHMENTS = {None: "isolated", "pleura": "juxtapleural", "vessel": "juxtavascular"}
RELEVANT_MM = 6.0
HIT_FLOOR_MM = 2.0

#: What a finding is for the ≥ 6 mm figures (see the module docstring).
Outcome = Literal["tp", "duplicate", "small", "fp", "fp_calcified"]
FP_OUTCOMES = ("fp", "fp_calcified")


@dataclass(frozen=True)
class EvalScan:
    """A scan with its truth: nodule list and the label map on the scan's own grid."""

    case_id: str
    volume: Volume
    truth_labels: npt.NDArray[np.integer[Any]]  # value = TruthNodule.label
    nodules: tuple[TruthNodule, ...]


@dataclass
class FindingResult:
    """One finding of one scan, matched (the outcome does not depend on any cut-off)."""

    label: int
    probability: float
    outcome: Outcome
    nodules: tuple[int, ...] = ()  # labels of the true nodules it hits
    nodule_type: str | None = None


@dataclass
class NoduleResult:
    """One true nodule; ``probability`` is its score (its most probable hitting finding)."""

    case_id: str
    label: int
    type: str
    long_axis_mm: float
    volume_mm3: float
    band: str
    attachment: str = "isolated"
    calcified: bool = False
    detected: bool = False  # hit by some finding (at any probability)
    probability: float | None = None
    finding_label: int | None = None
    pred_type: str | None = None
    dice: float | None = None
    pred_long_axis_mm: float | None = None
    pred_volume_mm3: float | None = None
    pred_mean_diameter_mm: float | None = None
    center_error_mm: float | None = None

    @property
    def relevant(self) -> bool:
        """Counted in the ≥ 6 mm figures: not calcified, long axis ≥ 6 mm."""
        return not self.calcified and self.long_axis_mm >= RELEVANT_MM

    def detected_at(self, min_probability: float) -> bool:
        return self.probability is not None and self.probability >= min_probability


@dataclass
class ScanResult:
    case_id: str
    n_truth: int
    n_findings: int
    findings: list[FindingResult] = field(default_factory=list)
    seconds: float = 0.0
    provider: str = ""

    def false_positives(self, min_probability: float = 0.0) -> list[float]:
        """The probabilities of the false positives at the cut-off."""
        return [
            f.probability
            for f in self.findings
            if f.outcome in FP_OUTCOMES and f.probability >= min_probability
        ]


def band_of(long_axis_mm: float) -> str:
    for name, lo, hi in BANDS:
        if lo <= long_axis_mm < hi:
            return name
    raise ValueError(long_axis_mm)


def hits(center_lps_mm: Vec3, nodule: TruthNodule) -> bool:
    """The LUNA16 rule: within max(long axis / 2, 2 mm) of the nodule's centre."""
    dist = float(np.linalg.norm(np.subtract(center_lps_mm, nodule.center_lps_mm)))
    return dist <= max(nodule.long_axis_mm / 2.0, HIT_FLOOR_MM)


def match(
    findings: Sequence[Finding], nodules: Sequence[TruthNodule]
) -> tuple[list[FindingResult], dict[int, Finding]]:
    """Match one scan's findings to its nodules (module docstring).

    Returns each finding's result (most probable first) and, per hit nodule label, the most
    probable finding that hits it.
    """
    best: dict[int, Finding] = {}
    results: list[FindingResult] = []
    for f in sorted(findings, key=lambda f: -f.probability):
        hit = [n for n in nodules if hits(f.center_lps_mm, n)]
        first = {n.label for n in hit if n.label not in best}
        best.update({label: f for label in first})
        live = [n for n in hit if not n.calcified]
        relevant = [n for n in live if n.long_axis_mm >= RELEVANT_MM]
        outcome: Outcome
        if relevant:
            outcome = "tp" if any(n.label in first for n in relevant) else "duplicate"
        elif live:
            outcome = "small"
        else:
            outcome = "fp_calcified" if hit else "fp"
        results.append(
            FindingResult(
                f.label, f.probability, outcome, tuple(n.label for n in hit), f.nodule_type
            )
        )
    return results, best


def _native_dice(
    scan: EvalScan, nodule: TruthNodule, finding: Finding, prediction: Prediction
) -> float | None:
    """Dice of one finding against one nodule, on the scan's native grid, in a local box."""
    g = scan.volume.geometry
    truth = scan.truth_labels == nodule.label
    mg = prediction.model_geometry
    # The box: the truth mask plus the finding's component, mapped into native indices.
    comp = np.argwhere(prediction.labels == finding.label)
    if not comp.size:
        return None
    corners = g.lps_to_index(mg.index_to_lps(np.stack([comp.min(0) - 1, comp.max(0) + 1])))
    tz = np.argwhere(truth)
    lo = np.minimum(np.floor(corners.min(0)), tz.min(0) if tz.size else np.inf) - 2
    hi = np.maximum(np.ceil(corners.max(0)), tz.max(0) if tz.size else -np.inf) + 3
    region = tuple(slice(int(max(0, lo[a])), int(min(g.shape[a], hi[a]))) for a in range(3))
    sub = g.crop(region)  # type: ignore[arg-type]
    pred = to_source_grid((prediction.labels == finding.label).view(np.uint8), mg, sub, order=0) > 0
    t = truth[region]
    denom = int(pred.sum()) + int(t.sum())
    return 2.0 * float((pred & t).sum()) / denom if denom else 0.0


def score_scan(scan: EvalScan, prediction: Prediction) -> tuple[ScanResult, list[NoduleResult]]:
    """Match one scan's findings to its nodules and measure the detected ones.

    Every finding is kept with its probability, so :func:`summarize` can apply any cut-off
    afterwards.
    """
    finding_results, best = match(prediction.findings, scan.nodules)
    sr = ScanResult(scan.case_id, len(scan.nodules), len(prediction.findings), finding_results)
    results = []
    for n in scan.nodules:
        r = NoduleResult(
            scan.case_id,
            n.label,
            n.type,
            n.long_axis_mm,
            n.volume_mm3,
            band_of(n.long_axis_mm),
            ATTACHMENTS[n.attached_to],
            n.calcified,
        )
        f = best.get(n.label)
        if f is not None:
            r.detected = True
            r.probability = f.probability
            r.finding_label = f.label
            r.center_error_mm = float(np.linalg.norm(np.subtract(f.center_lps_mm, n.center_lps_mm)))
            if not n.calcified:  # calcified nodules are not in the label map
                r.pred_type = f.nodule_type
                r.pred_long_axis_mm = f.long_axis_mm
                r.pred_volume_mm3 = f.volume_mm3
                r.pred_mean_diameter_mm = f.mean_diameter_mm
                r.dice = _native_dice(scan, n, f, prediction)
        results.append(r)
    return sr, results


# -- FROC and the bootstrap ------------------------------------------------------------------

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Table:
    """Per-scan counts at the cut-offs where a FROC point can change (rows get resampled).

    ``cuts`` ascend from the operating point and then lie just above each false positive's
    probability: the best sensitivity within an FP rate is always at one of them.
    """

    index: dict[str, int]  # case_id → row
    cuts: Array
    fp: Array  # (scans, cuts): false positives with probability ≥ cut

    @property
    def n_scans(self) -> int:
        return len(self.fp)

    def nodules(self, group: Sequence[NoduleResult]) -> tuple[Array, Array]:
        """(scans, cuts) nodules of ``group`` detected at each cut, and (scans,) in the group."""
        rows = np.array([self.index[n.case_id] for n in group], dtype=np.intp)
        scores = np.array(
            [np.nan if n.probability is None else n.probability for n in group], dtype=np.float64
        )
        return (
            _counts_at(rows, scores, self.n_scans, self.cuts),
            np.bincount(rows, minlength=self.n_scans).astype(np.float64),
        )


def _counts_at(rows: npt.NDArray[np.intp], scores: Array, n_rows: int, cuts: Array) -> Array:
    """(rows, cuts): how many scores of each row are ≥ each cut (NaN: none)."""
    hist = np.zeros((n_rows, len(cuts) + 1))
    col = np.searchsorted(cuts, np.nan_to_num(scores, nan=-np.inf), side="right")
    np.add.at(hist, (rows, col), 1.0)
    at_or_above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # [:, c]: scores in columns ≥ c
    return np.asarray(at_or_above[:, 1:], dtype=np.float64)


def _table(scans: Sequence[ScanResult], min_probability: float) -> _Table:
    rows: list[int] = []
    scores: list[float] = []
    for i, s in enumerate(scans):
        fps = s.false_positives(min_probability)
        rows += [i] * len(fps)
        scores += fps
    above = np.unique(np.nextafter(np.asarray(scores, dtype=np.float64), np.inf))
    cuts = np.concatenate([[min_probability], above[above > min_probability]])
    fp = _counts_at(np.asarray(rows, dtype=np.intp), np.asarray(scores), len(scans), cuts)
    return _Table({s.case_id: i for i, s in enumerate(scans)}, cuts, fp)


def _froc_stats(tp: Array, n: Array, fp: Array, n_scans: int) -> tuple[Array, Array, Array]:
    """From counts summed over (resampled) scans — tp, fp (batch, cuts), n (batch,) — the
    sensitivity and FP/scan at the operating point and the FROC points (batch, rates)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = tp / n[:, None]
        fp_rate = fp[:, 0] / n_scans
    points = np.empty((len(n), len(FROC_FP_RATES)))
    for j, rate in enumerate(FROC_FP_RATES):
        # fp falls as the cut rises: the first cut within the rate has the best sensitivity
        first = (fp > rate * n_scans + 1e-9).sum(axis=1)
        points[:, j] = np.take_along_axis(sens, first[:, None], axis=1)[:, 0]
    return sens[:, 0], fp_rate, points


def _resample_weights(n_scans: int, n_resamples: int, seed: int) -> npt.NDArray[np.float32]:
    """(resamples, scans): how often each scan is drawn (with replacement) in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_scans, size=(n_resamples, n_scans))
    flat = (np.arange(n_resamples)[:, None] * n_scans + draws).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_scans)
    return counts.reshape(n_resamples, n_scans).astype(np.float32)


def _value(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _ci(values: Array) -> list[float] | None:
    v = values[np.isfinite(values)]
    if not v.size:
        return None
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def _points(group: Sequence[NoduleResult], table: _Table) -> Array | None:
    """The FROC points (rates,) of ``group`` against all false positives; None: no nodules."""
    if not group or not table.n_scans:
        return None
    tp, n = table.nodules(group)
    _, _, points = _froc_stats(tp.sum(0)[None], n.sum()[None], table.fp.sum(0)[None], table.n_scans)
    return np.asarray(points[0], dtype=np.float64)


def _group_figures(group: Sequence[NoduleResult], table: _Table, cut: float) -> dict[str, Any]:
    detected = sum(n.detected_at(cut) for n in group)
    points = _points(group, table)
    return {
        "n": len(group),
        "detected": detected,
        "sensitivity": detected / len(group) if group else None,
        "cpm": None if points is None else _value(points.mean()),
    }


def froc(
    nodules: Sequence[NoduleResult], scans: Sequence[ScanResult], *, min_probability: float = 0.0
) -> dict[str, Any]:
    """FROC over the findings' probabilities (relevant nodules): curve, points and CPM."""
    relevant = [n for n in nodules if n.relevant]
    tp = np.sort([n.probability for n in relevant if n.detected_at(min_probability)])
    fp = np.sort([p for s in scans for p in s.false_positives(min_probability)])
    top = float(max([1.0, *tp, *fp])) + 0.1  # a cut-off above every finding
    cuts = np.unique(np.concatenate([tp, fp, [top]]))
    n_tp = len(tp) - np.searchsorted(tp, cuts, side="left")
    n_fp = len(fp) - np.searchsorted(fp, cuts, side="left")
    n_scans = max(len(scans), 1)
    curve = [
        {
            "threshold": float(c),
            "fp_per_scan": float(f / n_scans),
            "sensitivity": float(t / len(relevant)) if relevant else None,
        }
        for c, t, f in zip(cuts, n_tp, n_fp, strict=True)
    ]
    points = _points(relevant, _table(scans, min_probability))
    return {
        "curve": curve,
        "points": {
            str(r): None if points is None else _value(points[j])
            for j, r in enumerate(FROC_FP_RATES)
        },
        "cpm": None if points is None else _value(points.mean()),
    }


def _bootstrap(
    relevant: Sequence[NoduleResult], table: _Table, n_resamples: int, seed: int
) -> dict[str, list[float] | None]:
    """95 % percentile intervals of sensitivity, FP/scan and CPM over resampled scans."""
    if not n_resamples or not table.n_scans:
        return {"sensitivity_ge6mm": None, "fp_per_scan": None, "cpm": None}
    w = _resample_weights(table.n_scans, n_resamples, seed)
    tp, n = table.nodules(relevant)
    sens, fp_rate, points = _froc_stats(
        (w @ tp.astype(np.float32)).astype(np.float64),
        (w @ n.astype(np.float32)).astype(np.float64),
        (w @ table.fp.astype(np.float32)).astype(np.float64),
        table.n_scans,
    )
    return {
        "sensitivity_ge6mm": _ci(sens),
        "fp_per_scan": _ci(fp_rate),
        "cpm": _ci(points.mean(axis=1)),
    }


# -- the document ----------------------------------------------------------------------------


def summarize(
    nodules: Sequence[NoduleResult],
    scans: Sequence[ScanResult],
    meta: dict[str, Any] | None = None,
    *,
    min_probability: float = 0.0,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The evaluation.json document at the operating point ``min_probability``.

    Sensitivity, false positives, Dice, measurements and type accuracy are those of the
    findings with probability ≥ ``min_probability``; the FROC curve, its points and the CPM
    use every finding (the whole curve, not only its part above the operating point).
    ``n_resamples`` bootstrap resamples of the scans (seeded by ``seed``; 0: no intervals) give
    the 95 % confidence intervals.
    """
    cut = min_probability
    live = [n for n in nodules if not n.calcified]
    ge6 = [n for n in live if n.relevant]
    det6 = [n for n in ge6 if n.detected_at(cut)]
    det_all = [n for n in live if n.detected_at(cut)]
    n_scans = len(scans)
    table = _table(scans, cut)
    table_all = _table(scans, 0.0)
    kept = [f for s in scans for f in s.findings if f.probability >= cut]

    def count(*outcomes: str) -> int:
        return sum(f.outcome in outcomes for f in kept)

    def med(values: Iterable[float | None]) -> float | None:
        v = [x for x in values if x is not None]
        return float(np.median(v)) if v else None

    def mean(values: Iterable[float | None]) -> float | None:
        v = [x for x in values if x is not None]
        return float(np.mean(v)) if v else None

    sensitivity = len(det6) / len(ge6) if ge6 else None
    fp_per_scan = count(*FP_OUTCOMES) / n_scans if n_scans else None
    froc_doc = froc(nodules, scans)
    ci = _bootstrap(ge6, table, n_resamples, seed)
    ci["cpm"] = _bootstrap(ge6, table_all, n_resamples, seed)["cpm"]
    typed = [n for n in det6 if n.pred_type is not None]
    diam_err = [
        n.pred_long_axis_mm - n.long_axis_mm for n in det6 if n.pred_long_axis_mm is not None
    ]
    vol_err = [
        (n.pred_volume_mm3 - n.volume_mm3) / n.volume_mm3
        for n in det6
        if n.pred_volume_mm3 is not None and n.volume_mm3 > 0
    ]
    breakdown = {
        "band": {
            name: _group_figures([n for n in live if n.band == name], table_all, cut)
            for name, _, _ in BANDS
        },
        "type": {t: _group_figures([n for n in ge6 if n.type == t], table_all, cut) for t in TYPES},
        "attachment": {
            a: _group_figures([n for n in ge6 if n.attachment == a], table_all, cut)
            for a in ATTACHMENTS.values()
        },
    }
    return {
        "sensitivity_ge6mm": sensitivity,
        "fp_per_scan": fp_per_scan,
        "n_scans": n_scans,
        "cpm": froc_doc["cpm"],
        "type_accuracy": (
            sum(n.pred_type == n.type for n in typed) / len(typed) if typed else None
        ),
        "min_probability": cut,
        "confidence_intervals": {
            "method": "percentile bootstrap over scans",
            "n_resamples": n_resamples,
            "seed": seed,
            "sensitivity_ge6mm": {"value": sensitivity, "ci95": ci["sensitivity_ge6mm"]},
            "fp_per_scan": {"value": fp_per_scan, "ci95": ci["fp_per_scan"]},
            "cpm": {"value": froc_doc["cpm"], "ci95": ci["cpm"]},
        },
        "n_nodules": len(nodules),
        "n_nodules_ge6mm": len(ge6),
        "n_calcified": len(nodules) - len(live),
        "n_findings": len(kept),
        "true_positives": count("tp"),
        "false_positives": count(*FP_OUTCOMES),
        "fp_on_calcified": count("fp_calcified"),
        "duplicates": count("duplicate"),
        "findings_on_small_nodules": count("small"),
        "breakdown": breakdown,
        "sensitivity_by_band": breakdown["band"],
        "sensitivity_by_type": {t: v["sensitivity"] for t, v in breakdown["type"].items()},
        "type_confusion": {
            "rows": "true type",
            "columns": "finding type",
            "labels": list(TYPES),
            "matrix": [
                [sum(n.type == a and n.pred_type == b for n in typed) for b in TYPES] for a in TYPES
            ],
            "n": len(typed),
        },
        "dice_ge6mm": {"median": med(n.dice for n in det6), "mean": mean(n.dice for n in det6)},
        "dice_all_detected": {"median": med(n.dice for n in det_all)},
        "diameter_error_mm_ge6mm": {
            "mae": mean(abs(e) for e in diam_err),
            "mean": mean(diam_err),
            "median": med(diam_err),
        },
        "volume_error_rel_ge6mm": {
            "median_abs": med(abs(e) for e in vol_err),
            "mean": mean(vol_err),
        },
        "center_error_mm_ge6mm": {"median": med(n.center_error_mm for n in det6)},
        "froc_ge6mm": froc_doc,
        "seconds_per_scan": {"median": med(s.seconds for s in scans)},
        "definitions": (__doc__ or "")
        .split("Definitions (also written into evaluation.json under ``definitions``):")[-1]
        .strip(),
        **(meta or {}),
        "nodules": [asdict(n) for n in nodules],
        "scans": [asdict(s) for s in scans],
    }


def headline(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures a comparison shows for a document (e.g. ``doc["robustness"]``)."""
    return {
        "sensitivity_ge6mm": doc["sensitivity_ge6mm"],
        "fp_per_scan": doc["fp_per_scan"],
        "n_scans": doc["n_scans"],
        "cpm": doc.get("cpm", doc["froc_ge6mm"]["cpm"]),
        "type_accuracy": doc.get("type_accuracy"),
    }


def sensitivity_at(doc: dict[str, Any], fp_per_scan: float) -> float | None:
    """The FROC sensitivity (≥ 6 mm) at ``fp_per_scan``: the best one within that rate."""
    within = [
        p["sensitivity"]
        for p in doc["froc_ge6mm"]["curve"]
        if p["fp_per_scan"] <= fp_per_scan + 1e-9 and p["sensitivity"] is not None
    ]
    return float(max(within)) if within else None


def operating_point(scans: Sequence[ScanResult], max_fp_per_scan: float) -> float:
    """The lowest probability cut-off whose false positives per scan stay ≤ the rate.

    Just above the probability of the first false positive that would break the rate; the
    lowest finding probability (0.0 without findings) when every finding fits. Choose it on a
    validation split and pass it to :func:`summarize` as ``min_probability`` on the test split.
    """
    fps = sorted((p for s in scans for p in s.false_positives()), reverse=True)
    allowed = int(np.floor(max_fp_per_scan * len(scans) + 1e-9))
    if len(fps) > allowed:
        return float(np.nextafter(fps[allowed], np.inf))
    return min((f.probability for s in scans for f in s.findings), default=0.0)


def read_and_score(predictor: Predictor, scan: EvalScan) -> tuple[ScanResult, list[NoduleResult]]:
    """One scan through the predictor, scored (:func:`score_scan`), with its time and provider."""
    t0 = time.perf_counter()
    prediction = predictor.predict(scan.volume)
    seconds = time.perf_counter() - t0
    sr, nr = score_scan(scan, prediction)
    sr.seconds = seconds
    sr.provider = prediction.session_info.provider
    return sr, nr


def score(
    predictor: Predictor,
    scans: Iterable[EvalScan],
    *,
    progress: Callable[[ScanResult], None] | None = None,
) -> tuple[list[NoduleResult], list[ScanResult]]:
    """Run the predictor on every scan and match its findings."""
    all_nodules: list[NoduleResult] = []
    all_scans: list[ScanResult] = []
    for scan in scans:
        sr, nr = read_and_score(predictor, scan)
        all_scans.append(sr)
        all_nodules.extend(nr)
        if progress:
            progress(sr)
    return all_nodules, all_scans


def evaluate(
    predictor: Predictor,
    scans: Iterable[EvalScan],
    *,
    meta: dict[str, Any] | None = None,
    progress: Callable[[ScanResult], None] | None = None,
    min_probability: float = 0.0,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the predictor on every scan and score it; returns the evaluation.json document."""
    nodules, results = score(predictor, scans, progress=progress)
    return summarize(
        nodules,
        results,
        dict(meta or {}),
        min_probability=min_probability,
        n_resamples=n_resamples,
        seed=seed,
    )


def phantom_scans(
    seed: int, count: int, *, matrix: int = 512, max_slices: int | None = None
) -> Iterator[EvalScan]:
    """Held-out phantoms generated on the fly (seed, seed + 1, …)."""
    from training.phantoms import generate_phantom

    for s in range(seed, seed + count):
        ph = generate_phantom(s, matrix=matrix, max_slices=max_slices)
        yield EvalScan(f"phantom-{s}", ph.volume, ph.label, ph.nodules)


def folder_scans(folder: Path) -> Iterator[EvalScan]:
    """Scans from a folder of (CT series + SEG) pairs; nodules from truth.json when present.

    Without a truth.json (real annotations), each connected component of the SEG is a nodule:
    centre = centroid, long axis as for findings (:func:`inference.postprocess.long_axis_mm`),
    volume = voxel count × voxel volume, type "solid" (unknown), not calcified.
    """
    from training.annotations import load_annotated_pairs

    for pair in load_annotated_pairs(folder):
        truth_file = pair.seg_path.parent / "truth.json"
        labels = pair.label.labels
        if truth_file.exists():
            doc = json.loads(truth_file.read_text())
            nodules = tuple(
                TruthNodule(
                    label=int(n.get("segment_number") or n["label"]),
                    center_lps_mm=tuple(n["center_lps_mm"]),
                    long_axis_mm=float(n["long_axis_mm"]),
                    volume_mm3=float(n["volume_mm3"]),
                    type=n["type"],
                    attached_to=n.get("attached_to"),
                    calcified=bool(n.get("calcified", False)),
                )
                for n in doc["nodules"]
            )
            yield EvalScan(pair.case_id, pair.image, labels, nodules)
        else:
            yield _components_as_truth(pair.case_id, pair.image, labels)


def _components_as_truth(case_id: str, volume: Volume, labels: npt.NDArray[Any]) -> EvalScan:
    g = volume.geometry
    comp, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    nodules = []
    for lab in range(1, n + 1):
        idx = np.argwhere(comp == lab).astype(np.float64)
        centre = g.index_to_lps(idx.mean(0))
        nodules.append(
            TruthNodule(
                lab,
                (float(centre[0]), float(centre[1]), float(centre[2])),
                long_axis_mm(idx, g),
                len(idx) * g.voxel_volume_mm3,
                "solid",
            )
        )
    return EvalScan(case_id, volume, comp, tuple(nodules))
