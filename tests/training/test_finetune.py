"""The fine-tuned candidate's build config and its sensitivity-matched operating point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.registry import Registry
from training.errors import ConfigError, TrainingError
from training.finetune import detector_config, finetune_config, next_version
from training.fpr import matched_threshold
from training.staged import StagedConfig

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_matched_threshold_moves_by_the_nodules_median_logit_shift() -> None:
    def sig(x: np.ndarray) -> np.ndarray:
        return np.asarray(1 / (1 + np.exp(-x)))

    base_logits = np.array([3.0, 2.0, 0.5, 0.2, -1.0])
    base = sig(base_logits)
    tuned = sig(base_logits - 1.0)  # every nodule one logit lower after the fine-tuning
    threshold, shift = matched_threshold(base, tuned, 0.6)
    assert shift == pytest.approx(-1.0)
    assert threshold == pytest.approx(float(sig(np.log(0.6 / 0.4) - 1.0)))
    # the same nodules pass: the order against the threshold is kept
    assert list(tuned >= threshold) == list(base >= 0.6)
    with pytest.raises(TrainingError, match="same true-nodule patches"):
        matched_threshold(base, tuned[:3], 0.6)


def test_a_candidate_config_keeps_the_packages_detector_and_starts_from_its_classifier() -> None:
    registry = Registry(MODELS)
    package = registry.find("lung-nodule", "2.6.0")
    assert detector_config(package).name == "lung-nodule-2.4-detector.yaml"
    assert next_version(package, registry.versions("lung-nodule")) == "2.6.1"
    assert next_version(package, [*registry.versions("lung-nodule"), "2.6.1"]) == "2.6.2"
    doc = finetune_config(package, ["reviews-a@2"], version="2.6.1", output_dir=Path("/tmp/r"))
    cfg = StagedConfig.model_validate(doc)
    assert cfg.classifier.init_from == cfg.detector_from == cfg.operating_point_from
    assert cfg.classifier.width == 8 and cfg.reviews is not None
    assert cfg.evaluation.baseline == "lung-nodule@2.6.0" and cfg.evaluation.baseline_from == "run"
    with pytest.raises(ConfigError, match="not a staged package"):
        finetune_config(registry.find("lung-nodule", "1.0.0"), ["r@1"], version="1.0.1",
                        output_dir=Path("/tmp/r"))  # fmt: skip
