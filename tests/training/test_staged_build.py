"""``preread models build`` end to end on tiny phantoms: detector, mining, classifier, operating
point, the staged package, evaluation beside a baseline, publication, and resumption."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from inference.package import ModelPackage
from inference.registry import Registry
from tests.inference.tiny_model import write_tiny_package
from training.compare import compare_and_publish
from training.errors import ConfigError, TrainingError
from training.staged import build, choose_type_rule, load_staged_config, type_accuracy

pytestmark = pytest.mark.train

SMALL = {"matrix": 96, "max_slices": 40}
DETECTOR = {
    "model": {"id": "tiny-nodule", "version": "0.0.2", "name": "tiny staged test model"},
    "data": {"source": "phantoms", "phantoms": {"seed": 18, "count": 2, **SMALL}},
    "input": {"spacing_mm": [2.0, 2.0, 2.0]},
    "network": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
    "sampling": {
        "samples_per_case": 2,
        "ratios": [0.1, 0.2, 0.5, 0.1, 0.1],
        "per_nodule": True,
        "anywhere": True,
    },
    "optim": {
        "iterations": 12,
        "batch_size": 4,
        "patch_size": [32, 32, 32],
        "checkpoint_every": 6,
        "seed": 3,
        "learning_rate": 0.01,
    },
    "output_dir": "run/detector",
}
BUILD = {
    "detector": "detector.yaml",
    "candidate_probability": 0.3,
    "overlap": 0.125,
    "roi_size_vox": 48,  # serving windows larger than the 32^3 training patches
    "harmonize": {"max_noise_hu": 400.0},  # carried into the card (no phantom here is so noisy)
    "version": "0.0.3",  # the published version, not the detector config's 0.0.2
    "mining": {"seed": 40, "count": 2, "truth_copies": 2, "workers": 2, **SMALL},
    "nodule_patches": {"seed": 50, "count": 2, "copies": 2, **SMALL},
    "classifier": {"iterations": 8, "batch_size": 8, "width": 4, "seed": 1},
    "validation": {"seed": 60, "count": 2, "max_fp_per_scan": 1.0, **SMALL},
    "type_rim_mm": 2.0,  # the validation shares and the card's rule: over the interior
    "refine_reach_mm": 5.0,  # carried into the card (pipeline.refine)
    "evaluation": {
        "held_out": {"seed": 70, "count": 2, **SMALL},
        "robustness": {"seed": 80, "count": 1, **SMALL},
        "baseline": "tiny-nodule@1.0.0",
    },
    "output_dir": "run",
}


def _write(tmp: Path, build_doc: dict[str, object]) -> Path:
    (tmp / "detector.yaml").write_text(yaml.safe_dump(DETECTOR))
    path = tmp / "build.yaml"
    path.write_text(yaml.safe_dump(build_doc))
    return path


def test_overlapping_seeds_are_refused(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(BUILD))
    doc["validation"]["seed"] = 70  # = the held-out seeds
    with pytest.raises(ConfigError, match="validation and held-out seeds overlap"):
        load_staged_config(_write(tmp_path, doc))
    doc = json.loads(json.dumps(BUILD))
    doc["mining"]["seed"] = 19  # a detector training seed
    with pytest.raises(ConfigError, match="detector training and mining seeds overlap"):
        load_staged_config(_write(tmp_path, doc))
    doc = json.loads(json.dumps(BUILD))
    doc["nodule_patches"]["seed"] = 41  # a mining seed
    with pytest.raises(ConfigError, match="mining and nodule patches seeds overlap"):
        load_staged_config(_write(tmp_path, doc))


def test_serving_windows_the_network_cannot_take_are_refused(tmp_path: Path) -> None:
    doc = {**BUILD, "roi_size_vox": 50}  # the detector halves its input twice: 4 divides it
    with pytest.raises(ConfigError, match="roi_size_vox 50 is not divisible by 4"):
        load_staged_config(_write(tmp_path, doc))


def test_a_model_grid_coarser_than_the_detectors_is_refused(tmp_path: Path) -> None:
    doc = {**BUILD, "model_spacing_mm": 2.5}  # the detector reads 2 mm
    with pytest.raises(ConfigError, match=r"model_spacing_mm 2\.5 needs a detector .* \[2\.0"):
        load_staged_config(_write(tmp_path, doc))


def test_the_type_rule_is_chosen_where_the_shares_separate() -> None:
    shares = [(0.95, "solid")] * 5 + [(0.3, "part-solid")] * 3 + [(0.02, "ground-glass")] * 4
    rule = choose_type_rule(shares, 2.0)
    assert rule.rim_mm == 2.0
    assert 0.3 < rule.solid_fraction <= 0.95 and 0.02 < rule.ggo_fraction <= 0.3
    assert type_accuracy(shares, rule.solid_fraction, rule.ggo_fraction) == 1.0
    # too low a solid threshold: the part-solid read as solid, the ground glass as part-solid
    assert type_accuracy(shares, 0.2, 0.01) == 5 / 12


def test_build_evaluate_publish_and_resume(tmp_path: Path) -> None:
    config = _write(tmp_path, BUILD)
    models = tmp_path / "models"
    write_tiny_package(models / "tiny-nodule" / "1.0.0")
    steps: list[str] = []
    package_dir = build(config, lambda step, done, total: steps.append(step))
    assert {"detector", "mining", "classifier", "validation"} <= set(steps)
    package = ModelPackage.load(package_dir)
    card = package.card
    assert card.pipeline.postprocess == "lung-nodule" and card.pipeline.lung_mask
    assert [s.name for s in card.stages] == ["fpr"]
    assert 0.0 < card.stages[0].threshold < 1.0
    assert card.stages[0].onnx.max_abs_diff_vs_torch < 1e-3
    assert card.pipeline.type_rule is not None and card.pipeline.type_rule.rim_mm == 2.0
    assert card.inference.roi_size_vox == (48, 48, 48) and card.inference.overlap == 0.125
    assert card.pipeline.harmonize is not None and card.pipeline.harmonize.max_noise_hu == 400.0
    assert card.pipeline.refine is not None and card.pipeline.refine.reach_mm == 5.0
    chosen = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert chosen["threshold"] == card.stages[0].threshold
    assert chosen["at_threshold"]["fp_per_scan"] <= 1.0

    published = compare_and_publish(config, package_dir, models)
    assert published == models / "tiny-nodule" / "0.0.3"
    doc = json.loads((published / "evaluation.json").read_text())
    assert {"sensitivity_ge6mm", "fp_per_scan", "n_scans", "cpm", "robustness"} <= set(doc)
    assert doc["n_scans"] == 2 and doc["robustness"]["n_scans"] == 1
    assert doc["baseline"]["model"] == "tiny-nodule@1.0.0"
    assert doc["baseline"]["held_out"]["n_scans"] == 2
    assert "1.0.0" in (published / "evaluation.md").read_text()
    served = Registry(models).find("tiny-nodule", "0.0.3")
    assert served.card.metrics["n_scans"] == 2.0 and "cpm" in served.card.metrics

    # a second run finds every step done: nothing is trained, mined or validated again
    steps.clear()
    mtime = (tmp_path / "run" / "classifier" / "fpr.pt").stat().st_mtime
    again = build(config, lambda step, done, total: steps.append(step))
    assert again == package_dir
    assert set(steps) == {"mining"}  # only the progress of the cached scans
    assert (tmp_path / "run" / "classifier" / "fpr.pt").stat().st_mtime == mtime
    with np.load(next((tmp_path / "run" / "mining").glob("phantom-*.npz"))) as z:
        assert z["patches"].shape[1:] == (2, 40, 40, 40)
        assert z["positive"].any()
        assert "detector" in set(z["source"])
    # the nodule-patch phantoms: their true nodules only (the detector never read them)
    sources: set[str] = set()
    for path in (tmp_path / "run" / "mining").glob("nodules-*.npz"):
        with np.load(path) as z:
            sources |= set(z["source"]) if len(z["patches"]) else set()
    assert sources and sources <= {"truth", "calcified"}

    # a build that re-uses the published classifier: no mining, the same classifier weights,
    # read in the 16 views its card then names (validation chooses the threshold with them),
    # behind candidates down to 2 mm³ (the detector config's 10 mm³ before)
    reuse = {k: v for k, v in BUILD.items() if k not in ("mining", "nodule_patches")}
    reuse |= {"version": "0.0.4", "classifier_from": str(published), "output_dir": "reuse"}
    reuse["candidate_min_volume_mm3"] = 2.0
    reuse["classifier"] = {"iterations": 8, "batch_size": 8, "width": 4, "test_views": 16}
    steps.clear()
    reused = ModelPackage.load(build(_write(tmp_path, reuse), lambda s, d, t: steps.append(s)))
    assert "mining" not in steps and not (tmp_path / "reuse" / "mining").exists()
    assert reused.card.stages[0].onnx.sha256 == card.stages[0].onnx.sha256
    assert reused.card.training.extra["classifier_from"] == "tiny-nodule@0.0.3"
    assert reused.card.version == "0.0.4"
    assert (reused.card.stages[0].test_views, card.stages[0].test_views) == (16, 4)
    assert (reused.card.thresholds.min_volume_mm3, card.thresholds.min_volume_mm3) == (2.0, 10.0)
    wrong = reuse | {"classifier": {"width": 8}, "output_dir": "wrong"}
    with pytest.raises(ConfigError, match="not a width-8 classifier"):
        build(_write(tmp_path, wrong))
    with pytest.raises(ConfigError, match="either mining"):
        load_staged_config(_write(tmp_path, {**BUILD, "classifier_from": str(published)}))
    with pytest.raises(ConfigError, match="classifier_from: name at least one package"):
        load_staged_config(_write(tmp_path, reuse | {"classifier_from": []}))

    # the detector from the published package (detector_from), its run folder gone: the same
    # weights, nothing trained; a package trained from another detector config is refused.
    # Its classifier: an ensemble (two packages' classifiers in one graph), here the published
    # one twice, which scores exactly as that one alone: the same operating point
    shutil.rmtree(tmp_path / "run" / "detector")
    both = reuse | {
        "version": "0.0.5",
        "detector_from": str(published),
        "classifier_from": [str(published), str(published)],
        "output_dir": "both",
    }
    steps.clear()
    again_pkg = ModelPackage.load(build(_write(tmp_path, both), lambda s, d, t: steps.append(s)))
    assert "detector" not in steps and not (tmp_path / "run" / "detector").exists()
    extra = again_pkg.card.training.extra
    assert extra["detector_from"] == "tiny-nodule@0.0.3"
    assert extra["classifier_from"] == ["tiny-nodule@0.0.3"] * 2
    assert extra["classifier_ensemble"] == "mean logit"
    assert again_pkg.card.stages[0].threshold == reused.card.stages[0].threshold
    ensemble = torch.load(again_pkg.path / "fpr-weights.pt", weights_only=True)
    assert {k.split(".")[1] for k in ensemble} == {"0", "1"}
    old = torch.load(published / "weights.pt", weights_only=True)
    new = torch.load(again_pkg.path / "weights.pt", weights_only=True)
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    other = json.loads(json.dumps(DETECTOR))
    other["optim"]["seed"] = 4
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    mismatch = both | {"detector": "other.yaml", "output_dir": "mismatch"}
    (tmp_path / "mismatch.yaml").write_text(yaml.safe_dump(mismatch))
    with pytest.raises(ConfigError, match=r"was not trained from tiny-nodule 0\.0\.2's config"):
        build(tmp_path / "mismatch.yaml")

    # the same detector on its own 2 mm grid in front of a 1.5 mm model grid: the card says
    # both, and the operating point is chosen with the detector reading its grid
    grid = both | {"version": "0.0.6", "model_spacing_mm": 1.5, "output_dir": "grid"}
    grid_pkg = ModelPackage.load(build(_write(tmp_path, grid)))
    assert grid_pkg.card.input.spacing_mm == (1.5, 1.5, 1.5)
    assert grid_pkg.card.pipeline.detector_spacing_mm == 2.0
    assert grid_pkg.card.onnx.sha256 == again_pkg.card.onnx.sha256
    assert json.loads((tmp_path / "grid" / "validation.json").read_text())["n_scans"] == 2


def test_nodule_patches_calcified_nodules_are_negatives() -> None:
    """Jittered copies of true nodules: positives, but calcified nodules are negatives (they
    are not to be reported), each patch two-scale and of the stored size."""
    from preread.domain import Geometry, TruthNodule
    from training.fpr import STORED, truth_samples

    geometry = Geometry(
        (64, 64, 64),
        (0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
        (1.0, 1.0, 1.0),
    )
    solid = TruthNodule(1, (20.0, 20.0, 20.0), 8.0, 268.0, "solid")
    calcified = TruthNodule(2, (40.0, 40.0, 40.0), 6.0, 113.0, "solid", calcified=True)
    array = np.zeros((64, 64, 64), np.float32)
    samples = truth_samples(
        "case", array, geometry, [solid, calcified], np.random.default_rng(0), copies=3
    )
    assert [(s.positive, s.source) for s in samples] == [(True, "truth")] * 3 + [
        (False, "calcified")
    ] * 3
    assert all(s.patch.shape == (2, STORED, STORED, STORED) for s in samples)


def test_a_published_baseline_must_be_of_the_same_scans(tmp_path: Path) -> None:
    """``baseline_from: published`` takes the baseline's figures from its evaluation.json only
    when that evaluation read the same held-out phantoms (seeds, matrix, generator) and the
    same robustness phantoms; figures of other scans are refused, naming the difference."""
    from training.compare import published_baseline
    from training.phantoms import GENERATOR_VERSION
    from training.staged import SeedRange

    folder = write_tiny_package(tmp_path / "tiny-nodule" / "1.0.0")
    held, robust = SeedRange(seed=70, count=2), SeedRange(seed=80, count=1)
    doc = {
        "sensitivity_ge6mm": 0.5,
        "fp_per_scan": 2.0,
        "n_scans": 2,
        "cpm": 0.4,
        "froc_ge6mm": {"cpm": 0.4},
        "dice_ge6mm": {"median": 0.8},
        "diameter_error_mm_ge6mm": {"mae": 1.5},
        "volume_error_rel_ge6mm": {"median_abs": 0.2},
        "seconds_per_scan": {"median": 3.0},
        "data": {"seed": 70, "count": 2, "matrix": 512, "generator_version": GENERATOR_VERSION},
        "robustness": {"n_scans": 1, "data": {"seed": 80}, "sensitivity_ge6mm": 0.3},
    }
    (folder / "evaluation.json").write_text(json.dumps(doc))
    got = published_baseline(ModelPackage.load(folder), held, robust)
    assert got["held_out"]["cpm"] == 0.4 and got["held_out"]["dice_median_ge6mm"] == 0.8
    assert got["robustness"]["sensitivity_ge6mm"] == 0.3
    for other in (SeedRange(seed=71, count=2), SeedRange(seed=70, count=3)):
        with pytest.raises(TrainingError, match="evaluation is of other scans"):
            published_baseline(ModelPackage.load(folder), other, robust)
    with pytest.raises(TrainingError, match="evaluation is of other scans"):
        published_baseline(ModelPackage.load(folder), held, SeedRange(seed=81, count=1))
    (folder / "evaluation.json").write_text("{}")
    with pytest.raises(TrainingError, match="no published evaluation"):
        published_baseline(ModelPackage.load(folder), held, robust)


def test_classifier_acquisition_augmentation_is_opt_in() -> None:
    from training.fpr import PATCH, STORED, FprConfig, _augment

    assert "acquisition" not in FprConfig().digest()  # older builds keep their checkpoints
    assert FprConfig(acquisition=True).digest() != FprConfig().digest()
    batch = np.zeros((16, 2, STORED, STORED, STORED), dtype=np.float16)
    batch[:, :, 18:22, 18:22, 18:22] = 1.0  # a small bright cube at the centre
    plain = _augment(batch, np.random.default_rng(5))
    varied = _augment(batch, np.random.default_rng(5), acquisition=True)
    assert plain.shape == varied.shape == (16, 2, PATCH, PATCH, PATCH)
    changed = [not np.allclose(a, b) for a, b in zip(plain, varied, strict=True)]
    assert any(changed)  # some patches got thicker slices, blur or noise


def test_a_mining_phantom_without_candidates_or_nodules_leaves_an_empty_marker(
    tmp_path: Path,
) -> None:
    """A clean detector makes no candidate in a phantom without nodules: mining records that
    (a resumed build skips it) instead of failing on nothing to stack (2.5.0's first build)."""
    from training.staged import _save_or_mark

    out = tmp_path / "phantom-1.npz"
    _save_or_mark([], out)
    with np.load(out) as z:
        assert z["patches"].shape[0] == 0
