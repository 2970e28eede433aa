"""A run's data provenance reaches the model card: the grants its studies came under and how
they were de-identified (so that revoking a grant finds the models trained on it)."""

from __future__ import annotations

from pathlib import Path

from training.config import load_config
from training.provenance import DatasetProvenance
from training.publish import build_card

ROOT = Path(__file__).resolve().parents[2]


def test_the_card_lists_the_grants_of_its_training_data(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "training" / "configs" / "lung-nodule.yaml")
    pulled = DatasetProvenance(
        "orthanc", ("grant-1", "grant-2"), studies=12, refused=3, deidentification="PS3.15 E"
    )
    pulled.write(tmp_path)
    read = DatasetProvenance.read(tmp_path)
    assert read == pulled
    card = build_card(cfg, "ab" * 32, 1e-5, {}, (900_000, 50), {}, read)
    assert card.training.grants == ["grant-1", "grant-2"]
    assert card.training.data_authorization is not None
    assert "grant-1" in card.training.data_authorization
    assert "de-identified: PS3.15 E" in card.training.data_authorization
    synthetic = build_card(
        cfg, "ab" * 32, 1e-5, {}, (900_000, 50), {}, DatasetProvenance("phantoms")
    )
    assert synthetic.training.grants == []
    assert synthetic.training.data_authorization == "synthetic data, no patient data"
    assert DatasetProvenance.read(tmp_path / "nothing-here") is None
