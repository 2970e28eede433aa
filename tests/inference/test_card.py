from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from inference.card import ModelCard
from inference.semver import SemVer
from tests.inference.tiny_model import tiny_card

SHA = "0" * 64


def test_yaml_round_trip(tmp_path: Path) -> None:
    card = tiny_card(SHA)
    card.to_yaml(tmp_path / "model.yaml")
    again = ModelCard.from_yaml(tmp_path / "model.yaml")
    assert again == card
    assert again.input.spacing_mm == (1.0, 1.0, 1.0)
    assert again.created == dt.date(2026, 1, 1)
    assert again.num_channels == 2


def test_yaml_is_readable_in_schema_order() -> None:
    text = tiny_card(SHA).to_yaml_text()
    assert text.index("\nid:") < text.index("\nversion:") < text.index("\nlabels:")
    assert "null" not in text
    assert "created: '2026-01-01'" in text


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("min_slices: 20", "min_slices: '20'", "series_rules.min_slices"),
        ("overlap: 0.25", "overlap: true", "inference.overlap"),
        ("overlap: 0.25", "overlap: 1.5", "inference.overlap"),
        ("version: 1.0.0", "version: '1.0'", "version"),
        ("id: tiny-nodule", "id: Tiny Nodule", "id"),
        ("window_max_hu: 400.0", "window_max_hu: -2000.0", "input.intensity"),
        ("- (?i)scout|localizer", "- (unclosed", "series_rules.description_exclude"),
        ("created: '2026-01-01'", "created: yesterday", "created"),
    ],
)
def test_strict_validation_names_the_field(old: str, new: str, field: str) -> None:
    text = tiny_card(SHA).to_yaml_text()
    assert old in text
    with pytest.raises(ValidationError) as info:
        ModelCard.from_yaml_text(text.replace(old, new))
    assert field in str(info.value).replace("\n", ".")


def test_extra_field_is_refused() -> None:
    text = tiny_card(SHA).to_yaml_text() + "colour: blue\n"
    with pytest.raises(ValidationError, match="colour"):
        ModelCard.from_yaml_text(text)


def test_duplicate_label_values_are_refused() -> None:
    card = tiny_card(SHA)
    data = card.model_dump()
    data["labels"] = [data["labels"][0], data["labels"][0]]
    with pytest.raises(ValidationError, match="unique"):
        ModelCard.model_validate(data)


def test_semver_precedence() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0",
        "1.2.0",
        "1.10.0",
        "2.0.0",
    ]
    shuffled = sorted(ordered, key=lambda v: v[::-1])
    assert sorted(shuffled, key=lambda v: SemVer.parse(v).sort_key()) == ordered
    with pytest.raises(ValueError, match="semantic version"):
        SemVer.parse("1.0")


def test_a_detector_grid_finer_than_the_model_grid_is_refused() -> None:
    data = tiny_card(SHA).model_dump()
    data["pipeline"]["detector_spacing_mm"] = 0.8  # the model grid is 1 mm
    with pytest.raises(ValidationError, match="detector_spacing_mm"):
        ModelCard.model_validate(data)
