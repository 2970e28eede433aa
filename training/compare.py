"""Evaluate a built package beside its baseline in one run, and publish it.

Both models read the same phantoms, each generated once: the held-out set (seeds disjoint
from training, mining and validation; the training profile of the generator) and the
robustness set (the generator's ``robustness`` profile: thicker slices, more noise, other
kernels and body sizes than any training or threshold choice saw). Each model is scored at its
own shipped operating point (:attr:`inference.card.ModelCard.operating_point`) by
:mod:`training.evaluate`; every candidate is kept with its score, so the FROC and CPM cover the
whole curve and another operating point can be read off the same results.

The package's ``evaluation.json`` is its held-out document with ``robustness`` (the same
headline keys plus the sensitivity at ≤ 2 FP/scan) and ``baseline`` (the baseline's held-out
and robustness headlines from the same run) added; ``evaluation.md`` shows both side by side.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from functools import partial
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
    read_and_score,
    sensitivity_at,
    summarize,
)
from training.report import write_report
from training.staged import SeedRange, load_staged_config

Progress = Callable[[str, int, int], None]
ROBUSTNESS_FP_RATE = 2.0


def scans(seeds: SeedRange, profile: str) -> Iterator[EvalScan]:
    for s in seeds.seeds:
        ph = seeds.phantom(s, profile)
        yield EvalScan(f"phantom-{s}", ph.volume, ph.label, ph.nodules)


Scored = tuple[list[NoduleResult], list[ScanResult]]
_WORKER: dict[str, Predictor] = {}


def _start_worker(packages: dict[str, Path], threads: int) -> None:
    """A scoring process: its own sessions, ``threads`` intra-op threads each (0: as
    configured)."""
    from preread.models import predictor_for
    from preread.settings import Settings

    settings = Settings(intra_op_threads=threads) if threads else Settings()
    for name, path in packages.items():
        _WORKER[name] = predictor_for(
            ModelPackage.load(path), settings, full_probability=True, all_candidates=True
        )


def _score_seed(seed: int, seeds: SeedRange, profile: str, out: Path) -> int:
    """Every model of this process on phantom ``seed`` (generated once); the results are
    written to ``out/<seed>.pkl`` (renamed into place whole), so an interrupted run resumes."""
    ph = seeds.phantom(seed, profile)
    scan = EvalScan(f"phantom-{seed}", ph.volume, ph.label, ph.nodules)
    results: dict[str, tuple[list[NoduleResult], ScanResult]] = {}
    for name, predictor in _WORKER.items():
        sr, nr = read_and_score(predictor, scan)
        results[name] = (nr, sr)
    tmp = out / f"{seed}.pkl.tmp"
    tmp.write_bytes(pickle.dumps(results))
    tmp.replace(out / f"{seed}.pkl")
    return seed


def score_side_by_side(
    packages: dict[str, Path],
    seeds: SeedRange,
    profile: str,
    out: Path,
    *,
    step: str,
    workers: int,
    progress: Progress | None = None,
) -> dict[str, Scored]:
    """Every package on every phantom of ``seeds`` (each generated once), ``workers`` scans at
    a time in separate processes (the CPU's cores split between them: generation, lung mask
    and post-processing are single-threaded); scans already in ``out`` are not redone."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in seeds.seeds if not (out / f"{s}.pkl").exists()]
    done = seeds.count - len(todo)
    if todo and workers == 1:  # in this process (a GPU machine, or tests)
        _start_worker(packages, 0)
        try:
            for seed in todo:
                _score_seed(seed, seeds, profile, out)
                done += 1
                if progress:
                    progress(step, done, seeds.count)
        finally:
            _WORKER.clear()
    elif todo:
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")  # fresh ONNX Runtime sessions per process
        with ctx.Pool(workers, _start_worker, (packages, threads)) as pool:
            job = partial(_score_seed, seeds=seeds, profile=profile, out=out)
            for _ in pool.imap_unordered(job, todo):
                done += 1
                if progress:
                    progress(step, done, seeds.count)
    scored: dict[str, Scored] = {name: ([], []) for name in packages}
    for s in seeds.seeds:
        per_model = pickle.loads((out / f"{s}.pkl").read_bytes())  # written above, by us
        for name, (nr, sr) in per_model.items():
            scored[name][0].extend(nr)
            scored[name][1].append(sr)
    return scored


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
        "data": doc["data"],
    }


def _key(package: ModelPackage, baseline: ModelPackage | None) -> str:
    """What the per-scan results depend on: both cards (graphs' sha256, thresholds, pipeline)
    and the generator; a rebuilt package or another generator starts afresh."""
    from training.phantoms import GENERATOR_VERSION

    h = hashlib.sha256(b"all candidates")  # what each scan's results hold
    for p in (package, baseline):
        if p is not None:
            h.update(p.card_path.read_bytes())
    h.update(GENERATOR_VERSION.encode())
    return h.hexdigest()[:16]


def _baseline_headlines(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The baseline's held-out and robustness headlines from its evaluation documents."""
    held = docs["held_out"]
    return {
        "held_out": headline(held)
        | {
            "dice_median_ge6mm": held["dice_ge6mm"]["median"],
            "diameter_mae_mm_ge6mm": held["diameter_error_mm_ge6mm"]["mae"],
            "volume_median_abs_rel_error_ge6mm": held["volume_error_rel_ge6mm"]["median_abs"],
        },
        "robustness": docs["robustness"],
        "seconds_per_scan": held["seconds_per_scan"],
    }


def published_baseline(
    baseline: ModelPackage, held_out: SeedRange, robustness: SeedRange
) -> dict[str, Any]:
    """The baseline's figures from its published ``evaluation.json``, refused unless that
    evaluation read the same held-out phantoms (seeds, size, generator) and the same number
    of robustness phantoms: figures of other scans are not a comparison."""
    from training.phantoms import GENERATOR_VERSION

    path = baseline.path / "evaluation.json"
    try:
        doc = json.loads(path.read_text())
        data, robust = doc["data"], doc["robustness"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"{path}: no published evaluation to compare with ({exc})") from exc
    want = {
        "seed": held_out.seed,
        "count": held_out.count,
        "matrix": held_out.matrix,
        "generator_version": GENERATOR_VERSION,
    }
    got = {k: data.get(k) for k in want}
    # documents before 2.1.0 did not record the robustness seeds: their count then
    robust_seed = robust.get("data", {}).get("seed", robustness.seed)
    if got != want or robust.get("n_scans") != robustness.count or robust_seed != robustness.seed:
        raise TrainingError(
            f"{path}: its evaluation is of other scans (held-out {got}, "
            f"{robust.get('n_scans')} robustness scans; this build: {want}, "
            f"{robustness.count}); set evaluation.baseline_from: run"
        )
    return _baseline_headlines({"held_out": doc, "robustness": robust})


def compare(
    config: Path, package: ModelPackage, models_dir: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """The package's evaluation document, with the robustness set and the baseline beside."""
    cfg, _ = load_staged_config(config)
    ev = cfg.evaluation
    model_id, _, version = ev.baseline.partition("@")
    baseline = Registry(models_dir).find(model_id, version or None)
    in_run = ev.baseline_from == "run"
    packages = {"new": package.path} | ({"baseline": baseline.path} if in_run else {})
    out = cfg.output_dir / "compare" / _key(package, baseline if in_run else None)
    docs: dict[str, dict[str, dict[str, Any]]] = {"new": {}, "baseline": {}}
    for name, seeds, profile in (
        ("held_out", ev.held_out, "train"),
        ("robustness", ev.robustness, "robustness"),
    ):
        scored = score_side_by_side(
            packages, seeds, profile, out / name, step=name, workers=ev.workers, progress=progress
        )
        for side, (nodules, results) in scored.items():
            pkg = package if side == "new" else baseline
            docs[side][name] = summarize(
                nodules,
                results,
                _meta(pkg, seeds, profile),
                min_probability=pkg.card.operating_point,
            )
    doc = docs["new"]["held_out"]
    doc["robustness"] = _robust_headline(docs["new"]["robustness"])
    if in_run:
        base = _baseline_headlines(
            {
                "held_out": docs["baseline"]["held_out"],
                "robustness": _robust_headline(docs["baseline"]["robustness"]),
            }
        )
    else:
        base = published_baseline(baseline, ev.held_out, ev.robustness)
    doc["baseline"] = {
        "model": f"{baseline.card.id}@{baseline.card.version}",
        "source": "same run" if in_run else "its published evaluation.json",
        **base,
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
