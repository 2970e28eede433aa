"""Evaluate a built package beside its baseline in one run, and publish it.

Both models read the same phantoms, each generated once: the held-out set (seeds disjoint
from training, mining and validation; the training profile of the generator) and the
robustness set (the generator's ``robustness`` profile: thicker slices, more noise, other
kernels and body sizes than any training or threshold choice saw). Each model is scored at its
own shipped operating point (everything its card reports) by :mod:`training.evaluate`.

The package's ``evaluation.json`` is its held-out document with ``robustness`` (the same
headline keys plus the sensitivity at ≤ 2 FP/scan) and ``baseline`` (the baseline's held-out
and robustness headlines from the same run) added; ``evaluation.md`` shows both side by side.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from inference.package import ModelPackage
from inference.predict import Predictor
from inference.registry import Registry
from training.errors import TrainingError
from training.evaluate import (
    EvalScan,
    NoduleResult,
    ScanResult,
    headline,
    score_scan,
    sensitivity_at,
    summarize,
)
from training.report import write_report
from training.staged import SeedRange, load_staged_config, serving_predictor

Progress = Callable[[str, int, int], None]
ROBUSTNESS_FP_RATE = 2.0


def scans(seeds: SeedRange, profile: str) -> Iterator[EvalScan]:
    for s in seeds.seeds:
        ph = seeds.phantom(s, profile)
        yield EvalScan(f"phantom-{s}", ph.volume, ph.label, ph.nodules)


def score_side_by_side(
    predictors: dict[str, Predictor],
    data: Iterator[EvalScan],
    total: int,
    step: str,
    progress: Progress | None = None,
) -> dict[str, tuple[list[NoduleResult], list[ScanResult]]]:
    """Every predictor on every scan (each scan generated once)."""
    out: dict[str, tuple[list[NoduleResult], list[ScanResult]]] = {
        name: ([], []) for name in predictors
    }
    for done, scan in enumerate(data):
        for name, predictor in predictors.items():
            t0 = time.perf_counter()
            prediction = predictor.predict(scan.volume)
            seconds = time.perf_counter() - t0
            sr, nr = score_scan(scan, prediction, predictor.package.card.thresholds.probability)
            sr.seconds = seconds
            sr.provider = prediction.session_info.provider
            out[name][0].extend(nr)
            out[name][1].append(sr)
        if progress:
            progress(step, done + 1, total)
    return out


def _meta(package: ModelPackage, seeds: SeedRange, profile: str) -> dict[str, Any]:
    from training.phantoms import GENERATOR_VERSION

    return {
        "model": {
            "id": package.card.id,
            "version": package.card.version,
            "onnx_sha256": package.card.onnx.sha256,
        },
        "data": {
            "source": "phantoms",
            "seed": seeds.seed,
            "count": seeds.count,
            "matrix": seeds.matrix,
            "profile": profile,
            "generator_version": GENERATOR_VERSION,
        },
    }


def _robust_headline(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        **headline(doc),
        f"sensitivity_at_{ROBUSTNESS_FP_RATE:g}_fp_per_scan": sensitivity_at(
            doc, ROBUSTNESS_FP_RATE
        ),
    }


def compare(
    config: Path, package: ModelPackage, models_dir: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """The package's evaluation document, with the robustness set and the baseline beside."""
    cfg, _ = load_staged_config(config)
    ev = cfg.evaluation
    model_id, _, version = ev.baseline.partition("@")
    baseline = Registry(models_dir).find(model_id, version or None)
    predictors = {
        "new": serving_predictor(package, full_probability=True),
        "baseline": serving_predictor(baseline, full_probability=True),
    }
    docs: dict[str, dict[str, dict[str, Any]]] = {"new": {}, "baseline": {}}
    for name, seeds, profile in (
        ("held_out", ev.held_out, "train"),
        ("robustness", ev.robustness, "robustness"),
    ):
        scored = score_side_by_side(predictors, scans(seeds, profile), seeds.count, name, progress)
        for side, (nodules, results) in scored.items():
            pkg = package if side == "new" else baseline
            docs[side][name] = summarize(nodules, results, _meta(pkg, seeds, profile))
    doc = docs["new"]["held_out"]
    doc["robustness"] = _robust_headline(docs["new"]["robustness"])
    doc["baseline"] = {
        "model": f"{baseline.card.id}@{baseline.card.version}",
        "held_out": headline(docs["baseline"]["held_out"])
        | {
            "dice_median_ge6mm": docs["baseline"]["held_out"]["dice_ge6mm"]["median"],
            "diameter_mae_mm_ge6mm": docs["baseline"]["held_out"]["diameter_error_mm_ge6mm"]["mae"],
            "volume_median_abs_rel_error_ge6mm": docs["baseline"]["held_out"][
                "volume_error_rel_ge6mm"
            ]["median_abs"],
        },
        "robustness": _robust_headline(docs["baseline"]["robustness"]),
        "seconds_per_scan": docs["baseline"]["held_out"]["seconds_per_scan"],
    }
    return doc


def compare_and_publish(
    config: Path,
    package: ModelPackage | Path,
    models_dir: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Evaluate the built package (beside the baseline) and move it into the registry."""
    from training.publish import _headline

    built = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
    final = models_dir / built.card.id / built.card.version
    if final.exists() and not force:
        raise TrainingError(f"{final} exists; publish a new version or pass --force")
    doc_path = built.path / "evaluation.json"
    doc = json.loads(doc_path.read_text())
    if "baseline" not in doc:  # not evaluated yet (a resumed build skips what is done)
        doc = compare(config, built, models_dir, progress)
        doc_path.write_text(json.dumps(doc, indent=1))
    metrics = _headline(doc)
    metrics["cpm"] = float(doc["cpm"])
    if doc.get("type_accuracy") is not None:
        metrics["type_accuracy"] = float(doc["type_accuracy"])
    robust = doc["robustness"].get(f"sensitivity_at_{ROBUSTNESS_FP_RATE:g}_fp_per_scan")
    if robust is not None:
        metrics["robustness_sensitivity_at_2fp"] = float(robust)
    card = built.card.model_copy(update={"metrics": metrics})
    card.to_yaml(built.path / "model.yaml")
    write_report(doc, card, built.path)
    staging = models_dir / card.id / f".staging-{card.version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built.path, staging, ignore=shutil.ignore_patterns("*.tmp*"))
    ModelPackage.load(staging)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    return Registry(models_dir).find(card.id, card.version).path
