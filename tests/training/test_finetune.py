"""The fine-tuned candidate's build config and its sensitivity-matched operating point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.registry import Registry
from training.errors import ConfigError
from training.finetune import detector_config, finetune_config, next_version
from training.fpr import matched_threshold
from training.staged import StagedConfig

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_matched_threshold_keeps_the_share_of_nodules_the_base_classifier_passed() -> None:
    base = np.array([0.95, 0.9, 0.7, 0.65, 0.3])  # 3 of 5 pass 0.6
    tuned = np.array([0.8, 0.5, 0.45, 0.2, 0.1])  # every score moved down by the fine-tuning
    threshold, share = matched_threshold(base, tuned, 0.6)
    assert share == pytest.approx(0.8)  # 0.95, 0.9, 0.7, 0.65
    assert threshold == 0.2 and int(np.sum(tuned >= threshold)) == 4
    none, zero = matched_threshold(base, tuned, 0.99)
    assert zero == 0.0 and not np.any(tuned >= none)


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
