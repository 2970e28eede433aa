"""The false-positive classifier's ensembles: one graph whose logit is the mean of its
members', stored and re-loaded as what it is, fine-tuned as a whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.errors import TrainingError
from training.fpr import (
    PATCH,
    STORED,
    CandidateEnsemble,
    CandidateNet,
    FprConfig,
    classifier_from_state,
    classifier_shape,
    ensemble,
    load_fpr,
    scores,
    train_fpr,
)

pytestmark = pytest.mark.train


def _nets(width: int = 4) -> list[CandidateNet]:
    out = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        out.append(CandidateNet(width).eval())
    return out


def test_an_ensemble_scores_the_mean_logit_of_its_members_and_reloads_as_an_ensemble() -> None:
    a, b = _nets()
    both = ensemble([a, b])
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (3, 2, PATCH, PATCH, PATCH)))
    x = x.float()
    with torch.no_grad():
        want = (a(x) + b(x)) / 2
        torch.testing.assert_close(both(x), want)
        assert not torch.allclose(a(x), b(x))  # two different classifiers
    # an ensemble among the parts gives its members: three classifiers, not a nested two
    assert len(ensemble([both, a]).members) == 3
    state = both.state_dict()
    assert classifier_shape(state) == (4, 2) and classifier_shape(a.state_dict()) == (4, 1)
    again = classifier_from_state(state, 4)
    assert isinstance(again, CandidateEnsemble)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), want)
    with pytest.raises(ValueError, match="a width-4 classifier, not width 8"):
        classifier_from_state(state, 8)
    with pytest.raises(ValueError, match="not a candidate classifier's state"):
        classifier_from_state({"conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="share one width"):
        ensemble([a, CandidateNet(8)])


def test_an_ensemble_is_fine_tuned_as_a_whole(tmp_path: Path) -> None:
    """A package whose classifier is an ensemble is fine-tuned (reviews, the learning loop)
    as that ensemble; a state of another width is refused by name."""
    weights = tmp_path / "fpr-weights.pt"
    torch.save(ensemble(_nets()).state_dict(), weights)
    rng = np.random.default_rng(0)
    patches = rng.uniform(0, 1, (8, 2, STORED, STORED, STORED)).astype(np.float16)
    positive = np.arange(8) % 2 == 0
    cfg = FprConfig(iterations=2, batch_size=4, width=4, init_weights=str(weights))
    train_fpr(patches, positive, cfg, tmp_path / "run")
    tuned = load_fpr(tmp_path / "run")
    assert isinstance(tuned, CandidateEnsemble) and len(tuned.members) == 2
    assert scores(tuned, patches).shape == (8,)
    wrong = FprConfig(iterations=1, batch_size=4, width=8, init_weights=str(weights))
    with pytest.raises(TrainingError, match="not a width-8 classifier"):
        train_fpr(patches, positive, wrong, tmp_path / "wrong")
