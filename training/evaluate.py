"""Evaluate a model package on scans with known nodules (``preread evaluate MODEL DATA``).

The model runs through the serving path (:class:`inference.predict.Predictor`: ONNX Runtime,
the card's preprocessing, sliding window, postprocessing), so the figures describe what a
radiologist would get, not the torch model.

Definitions (also written into evaluation.json under ``definitions``):

* A finding **hits** a true nodule when its centre lies within max(nodule radius, 2 mm) of the
  nodule's centre, or when the nodule's centre lies inside the finding's component. Each nodule
  is hit at most once (by its most probable finding); further findings on an already-hit nodule
  are counted as duplicates, not as false positives.
* **Sensitivity** by long-axis band: <6, 6–8, 8–15, >15 mm (``sensitivity_ge6mm``: all ≥ 6 mm).
* **FROC**: sensitivity (≥ 6 mm) against false positives per scan as the probability cut-off
  over the findings rises; reported at 1/8, 1/4, 1/2, 1, 2, 4, 8 FP/scan with their mean (CPM).
* **Dice** per detected nodule on the scan's native grid: the probability map brought back to
  the original slices (linear), cut at the card's threshold, restricted to the finding's
  component, against the nodule's ground-truth mask.
* **Diameter error**: finding long axis − true long axis (mm); **volume error**:
  (finding − truth) / truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.postprocess import long_axis_mm
from inference.predict import Prediction, Predictor
from inference.preprocess import to_source_grid
from preread.domain import Finding, TruthNodule, Volume

BANDS: list[tuple[str, float, float]] = [
    ("<6", 0.0, 6.0),
    ("6-8", 6.0, 8.0),
    ("8-15", 8.0, 15.0),
    (">15", 15.0, float("inf")),
]
FROC_FP_RATES = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]


@dataclass(frozen=True)
class EvalScan:
    """A scan with its truth: nodule list and the label map on the scan's own grid."""

    case_id: str
    volume: Volume
    truth_labels: npt.NDArray[np.integer[Any]]  # value = TruthNodule.label
    nodules: tuple[TruthNodule, ...]


@dataclass
class NoduleResult:
    case_id: str
    label: int
    type: str
    long_axis_mm: float
    volume_mm3: float
    band: str
    detected: bool
    probability: float | None = None
    dice: float | None = None
    pred_long_axis_mm: float | None = None
    pred_volume_mm3: float | None = None
    center_error_mm: float | None = None


@dataclass
class ScanResult:
    case_id: str
    n_truth: int
    n_findings: int
    false_positives: list[float] = field(default_factory=list)  # their probabilities
    duplicates: int = 0
    seconds: float = 0.0
    provider: str = ""


def band_of(long_axis_mm: float) -> str:
    for name, lo, hi in BANDS:
        if lo <= long_axis_mm < hi:
            return name
    raise ValueError(long_axis_mm)


def _hits(finding: Finding, nodule: TruthNodule, prediction: Prediction) -> bool:
    dist = float(np.linalg.norm(np.subtract(finding.center_lps_mm, nodule.center_lps_mm)))
    if dist <= max(nodule.long_axis_mm / 2.0, 2.0):
        return True
    idx = np.rint(prediction.model_geometry.lps_to_index(nodule.center_lps_mm)).astype(int)
    if np.all(idx >= 0) and np.all(idx < np.asarray(prediction.labels.shape)):
        return int(prediction.labels[tuple(idx)]) == finding.label
    return False


def _native_dice(
    scan: EvalScan, nodule: TruthNodule, finding: Finding, prediction: Prediction, threshold: float
) -> float:
    """Dice of one finding against one nodule, on the scan's native grid, in a local box."""
    g = scan.volume.geometry
    truth = scan.truth_labels == nodule.label
    mg = prediction.model_geometry
    # The box: the truth mask plus the finding's component, mapped into native indices.
    comp = np.argwhere(prediction.labels == finding.label)
    corners = g.lps_to_index(mg.index_to_lps(np.stack([comp.min(0) - 1, comp.max(0) + 1])))
    tz = np.argwhere(truth)
    lo = np.minimum(np.floor(corners.min(0)), tz.min(0) if tz.size else np.inf) - 2
    hi = np.maximum(np.ceil(corners.max(0)), tz.max(0) if tz.size else -np.inf) + 3
    region = tuple(slice(int(max(0, lo[a])), int(min(g.shape[a], hi[a]))) for a in range(3))
    sub = g.crop(region)  # type: ignore[arg-type]
    prob = to_source_grid(prediction.probability, mg, sub, order=1)
    comp_native = to_source_grid(
        (prediction.labels == finding.label).astype(np.float32), mg, sub, order=0
    )
    pred = (prob >= threshold) & ndimage.binary_dilation(comp_native > 0.5, iterations=1)
    t = truth[region]
    denom = int(pred.sum()) + int(t.sum())
    return 2.0 * float((pred & t).sum()) / denom if denom else 0.0


def score_scan(
    scan: EvalScan, prediction: Prediction, threshold: float
) -> tuple[ScanResult, list[NoduleResult]]:
    """Match one scan's findings to its nodules."""
    findings = sorted(prediction.findings, key=lambda f: -f.probability)
    sr = ScanResult(scan.case_id, len(scan.nodules), len(findings))
    results = {
        n.label: NoduleResult(
            scan.case_id,
            n.label,
            n.type,
            n.long_axis_mm,
            n.volume_mm3,
            band_of(n.long_axis_mm),
            False,
        )
        for n in scan.nodules
    }
    for f in findings:
        matched = [n for n in scan.nodules if _hits(f, n, prediction)]
        if not matched:
            sr.false_positives.append(f.probability)
            continue
        free = [n for n in matched if not results[n.label].detected]
        if not free:
            sr.duplicates += 1
            continue
        n = min(free, key=lambda n: np.linalg.norm(np.subtract(f.center_lps_mm, n.center_lps_mm)))
        r = results[n.label]
        r.detected = True
        r.probability = f.probability
        r.pred_long_axis_mm = f.long_axis_mm
        r.pred_volume_mm3 = f.volume_mm3
        r.center_error_mm = float(np.linalg.norm(np.subtract(f.center_lps_mm, n.center_lps_mm)))
        r.dice = _native_dice(scan, n, f, prediction, threshold)
    return sr, list(results.values())


def froc(
    nodules: list[NoduleResult], scans: list[ScanResult], min_long_axis: float = 6.0
) -> dict[str, Any]:
    """FROC over the findings' probabilities (nodules ≥ ``min_long_axis``)."""
    relevant = [n for n in nodules if n.long_axis_mm >= min_long_axis]
    n_scans = max(len(scans), 1)
    tp_scores = np.array([n.probability for n in relevant if n.detected], dtype=float)
    fp_scores = np.array([p for s in scans for p in s.false_positives], dtype=float)
    cuts = np.unique(np.concatenate([tp_scores, fp_scores, [1.1]]))
    curve = []
    for c in cuts:
        sens = float((tp_scores >= c).sum() / len(relevant)) if relevant else float("nan")
        curve.append(
            {
                "threshold": float(c),
                "fp_per_scan": float((fp_scores >= c).sum() / n_scans),
                "sensitivity": sens,
            }
        )
    points = {}
    for rate in FROC_FP_RATES:
        ok = [p["sensitivity"] for p in curve if p["fp_per_scan"] <= rate]
        points[str(rate)] = max(ok) if ok else 0.0
    return {"curve": curve, "points": points, "cpm": float(np.mean(list(points.values())))}


def summarize(
    nodules: list[NoduleResult], scans: list[ScanResult], meta: dict[str, Any]
) -> dict[str, Any]:
    """The evaluation.json document."""

    def sens(sel: list[NoduleResult]) -> float | None:
        return float(np.mean([n.detected for n in sel])) if sel else None

    ge6 = [n for n in nodules if n.long_axis_mm >= 6.0]
    det6 = [n for n in ge6 if n.detected]
    det_all = [n for n in nodules if n.detected]
    n_scans = len(scans)
    fps = sum(len(s.false_positives) for s in scans)

    def med(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    diam_err = [
        n.pred_long_axis_mm - n.long_axis_mm for n in det6 if n.pred_long_axis_mm is not None
    ]
    vol_err = [
        (n.pred_volume_mm3 - n.volume_mm3) / n.volume_mm3
        for n in det6
        if n.pred_volume_mm3 is not None
    ]
    return {
        "sensitivity_ge6mm": sens(ge6),
        "fp_per_scan": fps / n_scans if n_scans else None,
        "n_scans": n_scans,
        "n_nodules": len(nodules),
        "n_nodules_ge6mm": len(ge6),
        "sensitivity_by_band": {
            name: {
                "sensitivity": sens([n for n in nodules if n.band == name]),
                "n": sum(1 for n in nodules if n.band == name),
            }
            for name, _, _ in BANDS
        },
        "sensitivity_by_type": {
            t: sens([n for n in ge6 if n.type == t]) for t in sorted({n.type for n in nodules})
        },
        "dice_ge6mm": {
            "median": med([n.dice for n in det6 if n.dice is not None]),
            "mean": mean([n.dice for n in det6 if n.dice is not None]),
        },
        "dice_all_detected": {"median": med([n.dice for n in det_all if n.dice is not None])},
        "diameter_error_mm_ge6mm": {
            "mae": mean([abs(e) for e in diam_err]),
            "mean": mean(diam_err),
            "median": med(diam_err),
        },
        "volume_error_rel_ge6mm": {
            "median_abs": med([abs(e) for e in vol_err]),
            "mean": mean(vol_err),
        },
        "center_error_mm_ge6mm": {
            "median": med([n.center_error_mm for n in det6 if n.center_error_mm is not None])
        },
        "duplicates": sum(s.duplicates for s in scans),
        "froc_ge6mm": froc(nodules, scans),
        "seconds_per_scan": {"median": med([s.seconds for s in scans])},
        "definitions": (__doc__ or "")
        .split("Definitions (also written into evaluation.json under ``definitions``):")[-1]
        .strip(),
        **meta,
        "nodules": [asdict(n) for n in nodules],
        "scans": [asdict(s) for s in scans],
    }


def evaluate(
    predictor: Predictor,
    scans: Iterable[EvalScan],
    *,
    threshold: float,
    meta: dict[str, Any] | None = None,
    progress: Callable[[ScanResult], None] | None = None,
) -> dict[str, Any]:
    """Run the predictor on every scan and score it; returns the evaluation.json document."""
    all_nodules: list[NoduleResult] = []
    all_scans: list[ScanResult] = []
    for scan in scans:
        t0 = time.perf_counter()
        prediction = predictor.predict(scan.volume)
        seconds = time.perf_counter() - t0
        sr, nr = score_scan(scan, prediction, threshold)
        sr.seconds = seconds
        sr.provider = prediction.session_info.provider
        all_scans.append(sr)
        all_nodules.extend(nr)
        if progress:
            progress(sr)
    return summarize(all_nodules, all_scans, dict(meta or {}))


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
    volume = voxel count × voxel volume, type "solid" (unknown).
    """
    from training.annotations import load_annotated_pairs

    for pair in load_annotated_pairs(folder):
        truth_file = pair.seg_path.parent / "truth.json"
        labels = pair.label.labels
        if truth_file.exists():
            doc = json.loads(truth_file.read_text())
            nodules = tuple(
                TruthNodule(
                    label=int(n.get("segment_number", n["label"])),
                    center_lps_mm=tuple(n["center_lps_mm"]),
                    long_axis_mm=float(n["long_axis_mm"]),
                    volume_mm3=float(n["volume_mm3"]),
                    type=n["type"],
                    attached_to=n.get("attached_to"),
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
