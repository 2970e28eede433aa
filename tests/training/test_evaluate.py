"""The nodule evaluation (training/evaluate.py): LUNA16 matching, FROC/CPM, bootstrap CIs,
breakdowns and type accuracy, on hand-built findings and tiny synthetic grids (no model)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from inference.predict import Prediction
from inference.session import SessionInfo
from preread.domain import Finding, Geometry, NoduleType, TruthNodule, Vec3, Volume
from training import evaluate as ev
from training.evaluate import (
    EvalScan,
    NoduleResult,
    ScanResult,
    evaluate,
    headline,
    hits,
    match,
    operating_point,
    score_scan,
    sensitivity_at,
    summarize,
)
from training.report import write_report

SHAPE = (32, 32, 32)
GEOMETRY = Geometry(SHAPE, (0.0, 0.0, 0.0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1.0, 1.0, 1.0))
INFO = SessionInfo(
    "m", "1", "0" * 64, ("CPUExecutionProvider",), "CPUExecutionProvider", (), 0, "fail"
)


def nodule(
    label: int,
    center: Vec3,
    long_axis: float,
    *,
    type: NoduleType = "solid",
    attached_to: Any = None,
    calcified: bool = False,
) -> TruthNodule:
    return TruthNodule(
        label,
        center,
        long_axis,
        4.0 / 3.0 * np.pi * (long_axis / 2) ** 3,
        type,
        attached_to,
        calcified,
    )


def finding(
    label: int, center: Vec3, probability: float, nodule_type: NoduleType | None = None
) -> Finding:
    return Finding(label, center, 8.0, 268.0, probability, 20.0, 268, nodule_type=nodule_type)


def prediction(findings: list[Finding], labels: npt.NDArray[np.int32] | None = None) -> Prediction:
    lab = np.zeros(SHAPE, np.int32) if labels is None else labels
    return Prediction(
        "m", "1", tuple(findings), (lab > 0).astype(np.float32), lab, GEOMETRY, INFO, {}, None
    )


def eval_scan(
    case_id: str, nodules: list[TruthNodule], truth: npt.NDArray[Any] | None = None
) -> EvalScan:
    vol = Volume(np.zeros(SHAPE, np.float32), GEOMETRY)
    return EvalScan(
        case_id, vol, np.zeros(SHAPE, np.int32) if truth is None else truth, tuple(nodules)
    )


def scored(
    cases: list[tuple[list[TruthNodule], list[Finding]]],
) -> tuple[list[NoduleResult], list[ScanResult]]:
    """Score hand-made scans (no voxels: Dice stays None)."""
    nodules: list[NoduleResult] = []
    scans: list[ScanResult] = []
    for i, (truth, findings) in enumerate(cases):
        sr, nr = score_scan(eval_scan(f"case-{i}", truth), prediction(findings))
        scans.append(sr)
        nodules += nr
    return nodules, scans


def at(distance: float, origin: Vec3 = (16.0, 16.0, 16.0)) -> Vec3:
    return (origin[0] + distance, origin[1], origin[2])


# -- matching ---------------------------------------------------------------------------------


def test_a_finding_hits_within_the_radius_and_not_beyond() -> None:
    n = nodule(1, at(0), 10.0)  # radius 5 mm
    assert hits(at(0.9 * 5), n)
    assert not hits(at(1.1 * 5), n)
    results, best = match([finding(1, at(4.5), 0.9), finding(2, at(5.5), 0.8)], [n])
    assert [r.outcome for r in results] == ["tp", "fp"]
    assert best[1].label == 1


def test_tiny_nodules_get_a_2_mm_floor() -> None:
    n = nodule(1, at(0), 2.0)  # radius 1 mm: the floor decides
    assert hits(at(1.8), n)
    assert not hits(at(2.2), n)


def test_the_finding_component_covering_the_centre_no_longer_counts() -> None:
    labels = np.zeros(SHAPE, np.int32)
    labels[10:23, 10:23, 10:23] = 1  # the finding's voxels hold the nodule's centre (16, 16, 16)
    f = finding(1, at(6.0), 0.9)  # but its centre is 6 mm away from a 10 mm nodule
    sr, (nr,) = score_scan(eval_scan("c", [nodule(1, at(0), 10.0)]), prediction([f], labels))
    assert not nr.detected
    assert [r.outcome for r in sr.findings] == ["fp"]


def test_duplicates_are_neither_true_nor_false_positives() -> None:
    n = nodule(1, at(0), 8.0)
    nodules, scans = scored([([n], [finding(1, at(1), 0.6), finding(2, at(-1), 0.9)])])
    assert [r.outcome for r in scans[0].findings] == ["tp", "duplicate"]
    assert nodules[0].probability == 0.9  # scored by its most probable hit
    doc = summarize(nodules, scans, n_resamples=0)
    assert (doc["sensitivity_ge6mm"], doc["fp_per_scan"], doc["duplicates"]) == (1.0, 0.0, 1)
    high = summarize(nodules, scans, min_probability=0.95, n_resamples=0)
    assert (high["sensitivity_ge6mm"], high["duplicates"], high["n_findings"]) == (0.0, 0, 0)
    mid = summarize(nodules, scans, min_probability=0.7, n_resamples=0)
    assert (mid["sensitivity_ge6mm"], mid["duplicates"], mid["fp_per_scan"]) == (1.0, 0, 0.0)


def test_a_hit_on_a_small_nodule_is_no_false_positive_but_detects_it() -> None:
    small = nodule(1, at(0), 4.0)
    big = nodule(2, at(10, (5.0, 5.0, 5.0)), 8.0)
    nodules, scans = scored([([small, big], [finding(1, at(0.5), 0.8)])])
    assert [r.outcome for r in scans[0].findings] == ["small"]
    doc = summarize(nodules, scans, n_resamples=0)
    assert doc["fp_per_scan"] == 0.0 and doc["false_positives"] == 0
    assert doc["findings_on_small_nodules"] == 1
    assert doc["sensitivity_ge6mm"] == 0.0 and doc["n_nodules_ge6mm"] == 1
    assert doc["sensitivity_by_band"]["<6"] == {
        "n": 1,
        "detected": 1,
        "sensitivity": 1.0,
        "cpm": 1.0,
    }


def test_a_hit_on_a_calcified_nodule_is_a_false_positive() -> None:
    calc = nodule(1, at(0), 8.0, calcified=True)
    real = nodule(2, (5.0, 5.0, 5.0), 8.0)
    nodules, scans = scored(
        [([calc, real], [finding(1, at(0.5), 0.8), finding(2, (5, 5, 6), 0.7)])]
    )
    assert [r.outcome for r in scans[0].findings] == ["fp_calcified", "tp"]
    doc = summarize(nodules, scans, n_resamples=0)
    assert (doc["fp_per_scan"], doc["fp_on_calcified"], doc["false_positives"]) == (1.0, 1, 1)
    # never in a denominator
    assert doc["n_nodules_ge6mm"] == 1 and doc["sensitivity_ge6mm"] == 1.0
    assert doc["n_calcified"] == 1
    assert sum(b["n"] for b in doc["sensitivity_by_band"].values()) == 1


# -- FROC, CPM, operating point ------------------------------------------------------------------


def froc_example() -> tuple[list[NoduleResult], list[ScanResult]]:
    """2 scans, 4 relevant nodules; TPs at 0.9, 0.7, 0.6 (one missed); FPs at 0.95, 0.8, 0.3."""
    a = [nodule(1, (5, 5, 5), 8.0), nodule(2, (25, 25, 25), 8.0)]
    b = [nodule(1, (5, 5, 5), 8.0), nodule(2, (25, 25, 25), 10.0)]
    fa = [
        finding(1, (5, 5, 5), 0.9),
        finding(2, (15, 5, 5), 0.8),
        finding(3, (25, 25, 24), 0.7),
        finding(4, (15, 25, 5), 0.3),
    ]
    fb = [finding(1, (15, 15, 15), 0.95), finding(2, (5, 6, 5), 0.6)]
    return scored([(a, fa), (b, fb)])


def test_cpm_on_a_hand_computed_example() -> None:
    nodules, scans = froc_example()
    doc = summarize(nodules, scans, n_resamples=0)
    # allowed FPs = rate × 2 scans: 0.25, 0.5 → none (sens 0); 1 → cut above 0.8 (TP 0.9: 1/4);
    # 2 → cut above 0.3 (3/4); 4, 8, 16 → everything (3/4)
    expected = [0.0, 0.0, 0.25, 0.75, 0.75, 0.75, 0.75]
    assert list(doc["froc_ge6mm"]["points"].values()) == pytest.approx(expected)
    assert doc["cpm"] == pytest.approx(3.25 / 7)
    assert doc["froc_ge6mm"]["cpm"] == doc["cpm"]
    assert (doc["sensitivity_ge6mm"], doc["fp_per_scan"]) == (0.75, 1.5)
    assert sensitivity_at(doc, 0.5) == 0.25
    assert sensitivity_at(doc, 1.0) == 0.75
    assert sensitivity_at(doc, 0.1) == 0.0
    assert headline(doc) == {
        "sensitivity_ge6mm": 0.75,
        "fp_per_scan": 1.5,
        "n_scans": 2,
        "cpm": doc["cpm"],
        "type_accuracy": None,
    }


def test_operating_point_and_figures_at_it() -> None:
    nodules, scans = froc_example()
    cut = operating_point(scans, 0.5)  # 1 FP allowed in 2 scans: just above the 0.8 FP
    assert 0.8 < cut < 0.9
    doc = summarize(nodules, scans, min_probability=cut, n_resamples=0)
    assert (doc["fp_per_scan"], doc["sensitivity_ge6mm"], doc["min_probability"]) == (
        0.5,
        0.25,
        cut,
    )
    # the FROC covers every finding, below the operating point too: the same curve at any cut
    assert doc["froc_ge6mm"]["points"]["8.0"] == 0.75
    assert doc["cpm"] == summarize(nodules, scans, n_resamples=0)["cpm"]
    assert operating_point(scans, 0.0) > 0.95
    assert operating_point(scans, 2.0) == 0.3  # every finding fits: the lowest one


# -- bootstrap -----------------------------------------------------------------------------


def random_scans(n_scans: int, seed: int) -> tuple[list[NoduleResult], list[ScanResult]]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n_scans):
        truth: list[TruthNodule] = []
        findings: list[Finding] = []
        for k in range(int(rng.integers(0, 4))):
            c: Vec3 = (4.0 + 8 * k, 8.0, 8.0)
            truth.append(nodule(k + 1, c, float(rng.uniform(6, 20))))
            if rng.uniform() < 0.75:
                findings.append(finding(len(findings) + 1, c, float(rng.uniform(0.3, 1.0))))
        for _ in range(int(rng.poisson(2))):
            findings.append(
                finding(
                    len(findings) + 1,
                    (4.0, 28.0, float(rng.uniform(20, 30))),
                    float(rng.uniform(0.0, 0.9)),
                )
            )
        cases.append((truth, findings))
    return scored(cases)


def test_bootstrap_intervals_hold_the_estimate_and_are_seeded() -> None:
    nodules, scans = random_scans(60, seed=1)
    doc = summarize(nodules, scans, n_resamples=500, seed=3)
    ci = doc["confidence_intervals"]
    for key in ("sensitivity_ge6mm", "fp_per_scan", "cpm"):
        lo, hi = ci[key]["ci95"]
        assert lo <= ci[key]["value"] <= hi and lo < hi, key
        assert ci[key]["value"] == doc[key]
    again = summarize(nodules, scans, n_resamples=500, seed=3)["confidence_intervals"]
    assert again == ci
    other = summarize(nodules, scans, n_resamples=500, seed=4)["confidence_intervals"]
    assert other["cpm"]["ci95"] != ci["cpm"]["ci95"]
    assert summarize(nodules, scans, n_resamples=0)["confidence_intervals"]["cpm"]["ci95"] is None


def test_the_vectorised_resample_equals_scoring_the_resampled_scans() -> None:
    nodules, scans = random_scans(25, seed=2)
    draws = np.random.default_rng(0).integers(0, len(scans), size=len(scans))
    w = np.bincount(draws, minlength=len(scans)).astype(np.float64)[None]
    table = ev._table(scans, 0.0)
    tp, n = table.nodules([x for x in nodules if x.relevant])
    sens, fp_rate, points = ev._froc_stats(w @ tp, w @ n, w @ table.fp, len(scans))
    # the same resample, spelled out: copies of the drawn scans under new case ids
    re_nodules: list[NoduleResult] = []
    re_scans: list[ScanResult] = []
    for j, i in enumerate(draws):
        s = scans[i]
        re_scans.append(ScanResult(f"r{j}", s.n_truth, s.n_findings, s.findings))
        re_nodules += [
            NoduleResult(**{**x.__dict__, "case_id": f"r{j}"})
            for x in nodules
            if x.case_id == s.case_id
        ]
    doc = summarize(re_nodules, re_scans, n_resamples=0)
    assert sens[0] == pytest.approx(doc["sensitivity_ge6mm"])
    assert fp_rate[0] == pytest.approx(doc["fp_per_scan"])
    assert points.mean() == pytest.approx(doc["cpm"])


# -- breakdowns and type accuracy -----------------------------------------------------------


def test_breakdown_by_attachment() -> None:
    truth = [
        nodule(1, (5, 5, 5), 8.0),
        nodule(2, (25, 5, 5), 9.0, attached_to="pleura"),
        nodule(3, (5, 25, 5), 12.0, attached_to="pleura"),
        nodule(4, (5, 5, 25), 4.0, attached_to="vessel"),  # < 6 mm: not in the ≥ 6 mm groups
    ]
    found = [
        finding(1, (5, 5, 5), 0.9),
        finding(2, (25, 5, 6), 0.8),
        finding(3, (5, 5, 25), 0.7),
        finding(4, (25, 25, 25), 0.85),  # a false positive above the pleural TP
    ]
    nodules, scans = scored([(truth, found)])
    groups = summarize(nodules, scans, n_resamples=0)["breakdown"]["attachment"]
    assert groups["isolated"] == {"n": 1, "detected": 1, "sensitivity": 1.0, "cpm": 1.0}
    assert groups["juxtapleural"]["n"] == 2 and groups["juxtapleural"]["sensitivity"] == 0.5
    # below 1 FP/scan the cut-off lies above the FP at 0.85, and so above the pleural TP
    assert groups["juxtapleural"]["cpm"] == pytest.approx(4 * 0.5 / 7)
    assert groups["juxtavascular"] == {"n": 0, "detected": 0, "sensitivity": None, "cpm": None}


def test_type_accuracy_and_confusion() -> None:
    truth = [
        nodule(1, (5, 5, 5), 8.0, type="solid"),
        nodule(2, (25, 5, 5), 9.0, type="part-solid"),
        nodule(3, (5, 25, 5), 12.0, type="ground-glass"),
        nodule(4, (5, 5, 25), 7.0, type="ground-glass"),  # its finding has no type
        nodule(5, (25, 25, 25), 4.0, type="solid"),  # < 6 mm: not counted
    ]
    found = [
        finding(1, (5, 5, 5), 0.9, "solid"),
        finding(2, (25, 5, 5), 0.9, "solid"),
        finding(3, (5, 25, 5), 0.9, "ground-glass"),
        finding(4, (5, 5, 25), 0.9),
        finding(5, (25, 25, 25), 0.9, "ground-glass"),
    ]
    nodules, scans = scored([(truth, found)])
    doc = summarize(nodules, scans, n_resamples=0)
    assert doc["type_accuracy"] == pytest.approx(2 / 3)
    assert doc["type_confusion"]["labels"] == ["solid", "part-solid", "ground-glass"]
    assert doc["type_confusion"]["matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    assert headline(doc)["type_accuracy"] == pytest.approx(2 / 3)
    untyped, uscans = scored([(truth[:1], [finding(1, (5, 5, 5), 0.9)])])
    assert summarize(untyped, uscans, n_resamples=0)["type_accuracy"] is None


# -- end to end through a predictor, the report ---------------------------------------------------


def sphere(center: tuple[int, int, int], radius: float) -> npt.NDArray[np.bool_]:
    k, j, i = np.indices(SHAPE)
    d2 = (k - center[0]) ** 2 + (j - center[1]) ** 2 + (i - center[2]) ** 2
    return np.asarray(d2 <= radius**2)


def test_evaluate_through_a_predictor_and_write_the_report(tmp_path: Path) -> None:
    truth = sphere((16, 16, 16), 5).astype(np.int32)  # LPS (16, 16, 16), 10 mm
    labels = sphere((16, 16, 17), 5).astype(np.int32)
    f = Finding(
        1,
        (17.0, 16.0, 16.0),
        10.0,
        500.0,
        0.9,
        20.0,
        int(labels.sum()),
        nodule_type="solid",
        axial_long_axis_mm=10.0,
        short_axis_mm=9.0,
    )
    fp = Finding(2, (3.0, 3.0, 3.0), 5.0, 60.0, 0.4, 20.0, 1)
    labels[3, 3, 3] = 2

    class Fake:
        def predict(self, volume: Volume) -> Prediction:
            return prediction([f, fp], labels)

    scans = [eval_scan(f"s{i}", [nodule(1, (16.0, 16.0, 16.0), 10.0)], truth) for i in range(3)]
    doc = evaluate(Fake(), scans, meta={"data": {"source": "phantoms"}})  # type: ignore[arg-type]
    json.dumps(doc, allow_nan=False)
    assert (doc["sensitivity_ge6mm"], doc["fp_per_scan"], doc["n_scans"]) == (1.0, 1.0, 3)
    assert 0.8 < doc["dice_ge6mm"]["median"] < 1.0
    assert doc["diameter_error_mm_ge6mm"]["mae"] == 0.0
    assert doc["nodules"][0]["pred_mean_diameter_mm"] == 9.5
    assert doc["type_accuracy"] == 1.0
    assert "max(long axis / 2, 2 mm)" in doc["definitions"]
    doc["robustness"] = headline(doc)
    card = SimpleNamespace(
        name="Tiny",
        id="tiny",
        version="0.0.1",
        onnx=SimpleNamespace(opset=17, max_abs_diff_vs_torch=1e-6),
        training=SimpleNamespace(extra={}),
    )
    write_report(doc, card, tmp_path)  # type: ignore[arg-type]
    md = (tmp_path / "evaluation.md").read_text()
    assert "| CPM (FROC, ≥ 6 mm) |" in md and "## By attachment" in md
    assert "## Robustness set" in md and "## Type confusion" in md
    ci = doc["confidence_intervals"]["fp_per_scan"]["ci95"]
    assert f"({ci[0]:.3f}–{ci[1]:.3f})" in md


def test_the_cli_prints_the_headline(capsys: pytest.CaptureFixture[str]) -> None:
    from preread import cli

    nodules, scans = froc_example()
    with cli.out.capture() as captured:
        cli._print_eval(summarize(nodules, scans, n_resamples=50))
    text = captured.get()
    assert "FROC CPM" in text and "0.464 (" in text and "type accuracy" in text
