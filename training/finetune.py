"""A candidate version from radiologists' reviews: an installed staged package's classifier
fine-tuned on dataset versions built from signed reviews (``preread datasets build``), behind
the same detector, at the same operating point — ``preread models finetune``.

The rejected findings are the hard negatives of the false-positive-reduction stage (exactly
the false positives the hospital's radiologists saw), the confirmed and added nodules its
positives (:mod:`training.review_samples`). The build is a staged build
(:func:`training.staged.build`) whose config this module writes:

* ``detector_from`` and ``operating_point_from``: the installed package (its detector is not
  retrained; its classifier threshold and type rule are kept);
* ``classifier.init_from``: the installed package's classifier, at its width;
* ``reviews``: the dataset versions (their files and grants checked by the caller);
* ``evaluation``: the installed package beside the candidate on the same held-out and
  robustness phantoms in the same run (the promotion gate's held-out figures).

The detector's training config is found among ``training/configs`` by the digest its card
records (the staged build checks that the detector is the one that config trained).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from inference.package import ModelPackage
from training.config import load_config
from training.errors import ConfigError

__all__ = ["CONFIGS", "detector_config", "finetune_config", "next_version"]

CONFIGS = Path(__file__).resolve().parent / "configs"
#: the held-out and robustness phantoms of a fine-tuned candidate's side-by-side evaluation
#: (the shipped packages' held-out and robustness seeds: disjoint from every training seed)
HELD_OUT_SEED = 900_000
ROBUSTNESS_SEED = 950_000
#: the phantoms whose true nodules the threshold is matched on: 2.6.0's validation seeds
#: (no step of a fine-tuning trains on them)
CALIBRATION = {"seed": 800_000, "count": 20}
#: rehearsal phantoms: from the shipped 2.6.0's mining and nodule-patch seeds
REHEARSAL_MINING = {"seed": 2100, "count": 10}
REHEARSAL_NODULES = {"seed": 3200, "count": 10}


def detector_config(package: ModelPackage, configs: Path = CONFIGS) -> Path:
    """The training config of ``package``'s detector: the one whose digest its card records."""
    want = package.card.training.extra.get("training_config_digest")
    if not want:
        raise ConfigError(f"{package.path}: the card records no training config digest")
    for path in sorted(configs.glob("*.yaml")):
        try:
            if load_config(path).digest() == want:
                return path
        except ConfigError:
            continue  # a staged build config, not a training config
    raise ConfigError(
        f"no training config in {configs} has the digest {want} of "
        f"{package.card.id}@{package.card.version}'s detector"
    )


def next_version(package: ModelPackage, taken: list[str]) -> str:
    """The next free patch version after ``package``'s (2.6.0 -> 2.6.1, or 2.6.2 if taken)."""
    major, minor, patch = (int(x) for x in package.card.version.split("."))
    while True:
        patch += 1
        version = f"{major}.{minor}.{patch}"
        if version not in taken:
            return version


def finetune_config(
    package: ModelPackage,
    datasets: list[str],
    *,
    version: str,
    output_dir: Path,
    iterations: int = 200,
    learning_rate: float = 5e-5,
    copies: int = 3,
    rehearsal: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    held_out: dict[str, Any] | None = None,
    robustness: dict[str, Any] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """The staged build config of the candidate (see the module docstring). ``held_out`` and
    ``robustness``: the phantoms' ``SeedRange`` fields (default: 100 held-out and 30
    robustness scans at 512 × 512, the shipped packages' sets). ``rehearsal``: phantoms
    mined and whose nodules are cut out beside the review cases (``SeedRange`` fields, default
    10 scans of each from 2.6.0's own mining and nodule-patch seeds, wide profile), so that the
    classifier learns the hospital's cases without forgetting the rest (a few reviewed cases
    alone pull it far from where it was: the gate then refuses it). ``calibration``: the
    phantoms whose true nodules the kept threshold is matched on (default 20 of 2.6.0's
    validation seeds)."""
    card = package.card
    stage = next((s for s in card.stages if s.name == "fpr"), None)
    if stage is None or card.pipeline is None or card.pipeline.candidate_probability is None:
        raise ConfigError(
            f"{card.id}@{card.version} is not a staged package (no fpr stage): nothing to fine-tune"
        )
    weights = package.path / "fpr-weights.pt"
    if not weights.is_file():
        raise ConfigError(f"{weights} does not exist: the package ships no classifier weights")
    import torch

    from training.fpr import classifier_shape

    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        width, _ = classifier_shape(state)  # one classifier or an ensemble, fine-tuned as it is
    except ValueError as exc:
        raise ConfigError(f"{weights}: {exc}") from exc
    return {
        "detector": str(detector_config(package)),
        "detector_from": str(package.path.resolve()),
        "operating_point_from": str(package.path.resolve()),
        "calibration": {**CALIBRATION, **(calibration or {})},
        "version": version,
        "candidate_probability": card.pipeline.candidate_probability,
        "segmentation_probability": card.thresholds.probability,
        "reviews": {"datasets": list(datasets), "copies": copies},
        "mining": {**REHEARSAL_MINING, **(rehearsal or {}), "truth_copies": 2, "profile": "wide"},
        "nodule_patches": {
            **REHEARSAL_NODULES,
            **(rehearsal or {}),
            "copies": 2,
            "profile": "wide",
        },
        "classifier": {
            "iterations": iterations,
            "batch_size": 16,
            "learning_rate": learning_rate,
            "width": width,
            "seed": 0,
            "init_from": str(package.path.resolve()),
            "test_views": stage.test_views,
        },
        "evaluation": {
            "held_out": held_out or {"seed": HELD_OUT_SEED, "count": 100},
            "robustness": robustness or {"seed": ROBUSTNESS_SEED, "count": 30},
            "baseline": f"{card.id}@{card.version}",
            "baseline_from": "run",
            "workers": workers,
        },
        "output_dir": str(output_dir),
    }


def write_config(doc: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
