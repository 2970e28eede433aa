"""The rules-based extractor: its figures on the labelled report texts, phrasings written after
the rules (English, Chinese, mixed), and each rule on its own."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from preread.finalreports import (
    NoduleMention,
    NoduleType,
    extract,
    mentions_nodule_ge6mm,
    summarize_text,
)
from preread.finalreports.evaluation import load_labelled, run, score
from preread.finalreports.mentions import mentions_from_json, mentions_to_json

DATA = Path(__file__).parent / "data" / "report_texts.jsonl"

PHRASINGS: list[tuple[bool, str]] = [
    (bool(row["nodule_ge6mm"]), str(row["text"]))
    for row in map(json.loads, (DATA.parent / "phrasings.jsonl").read_text("utf-8").splitlines())
]
"""Phrasings written after the first rules, to probe them (not in the labelled set's figures)."""


def test_the_labelled_set_is_large_varied_and_consistent() -> None:
    items = load_labelled(DATA)
    langs = Counter(i.lang for i in items)
    assert len(items) >= 220 and langs["en"] >= 90 and langs["zh"] >= 90 and langs["mixed"] > 0
    assert len({i.id for i in items}) == len(items)
    test = [i for i in items if i.split == "test"]
    assert 0.3 <= len(test) / len(items) <= 0.36
    for item in items:  # the two labels agree: a nodule >= 6 mm is the largest one's size
        assert item.nodule_ge6mm == (item.largest_mm is not None and item.largest_mm >= 6), item.id
    positives = sum(i.nodule_ge6mm for i in items)
    assert 0.35 <= positives / len(items) <= 0.6


def test_precision_and_recall_of_nodule_ge6mm_are_at_least_0_9() -> None:
    outcomes = run(load_labelled(DATA))
    scores = score(outcomes)
    assert scores.precision >= 0.9 and scores.recall >= 0.9, scores
    for split in ("train", "test"):
        part = score([o for o in outcomes if o.item.split == split])
        assert part.precision >= 0.9 and part.recall >= 0.9, (split, part)


@pytest.mark.parametrize(("ge6", "text"), PHRASINGS, ids=[t[:40] for _, t in PHRASINGS])
def test_phrasings(ge6: bool, text: str) -> None:
    assert mentions_nodule_ge6mm(text) is ge6, extract(text)


def _one(text: str) -> NoduleMention:
    present = [m for m in extract(text) if m.present]
    assert len(present) == 1, present
    return present[0]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8 x 6 mm nodule in the RUL.", 8.0),
        ("右肺上叶见一实性结节，大小约8mm×6mm。", 8.0),
        ("Nodule 0.8 cm, RLL.", 8.0),
        ("左肺下叶结节，直径约0.7cm。", 7.0),
        ("右肺上叶结节，约7毫米。", 7.0),
        ("右肺上叶结节，约1.2厘米。", 12.0),
        ("A 1.5 x 1.2 x 1.0 cm mass in the left upper lobe.", 15.0),
        ("Nodule in the LUL measures 6-7 mm.", 7.0),
        ("LUL nodule 0.6x0.5cm.", 6.0),
        ("A 1-cm nodule in the right lower lobe.", 10.0),
    ],
)
def test_sizes_are_the_long_axis_in_mm(text: str, size: float) -> None:
    assert _one(text).size_mm == size


def test_prior_sizes_bounds_and_numbers_that_are_not_sizes() -> None:
    grown = _one("The left upper lobe nodule has increased from 6 mm to 9 mm.")
    assert (grown.size_mm, grown.prior_size_mm) == (9.0, 6.0)
    shrunk = _one("右肺上叶结节较前缩小，现直径约4mm（原约7mm）。")
    assert (shrunk.size_mm, shrunk.prior_size_mm) == (4.0, 7.0)
    bounded = _one("Several tiny nodules (<4 mm) in both lungs.")
    assert bounded.size_bound == "at-most" and not bounded.ge6
    assert _one("Solid nodule LUL 4.2mm (volume 38 mm3).").size_mm == 4.2
    assert _one("扫描层厚5mm。右肺下叶见一结节。").size_mm is None
    assert _one("Axial 1.25 mm images. A nodule in the RUL.").size_mm is None
    part_solid = _one("RUL part-solid nodule 12 x 9 mm with a 5 mm solid component.")
    assert part_solid.size_mm == 12.0 and part_solid.nodule_type is NoduleType.PART_SOLID


def test_types_lobes_and_sides() -> None:
    assert _one("6 mm ground glass nodule RUL.").nodule_type is NoduleType.GROUND_GLASS
    assert _one("右肺上叶见一GGN，约8mm。").nodule_type is NoduleType.GROUND_GLASS
    assert _one("左肺上叶混杂密度结节，约11mm。").nodule_type is NoduleType.PART_SOLID
    assert _one("左肺上叶部分实性结节，约11mm。").nodule_type is NoduleType.PART_SOLID
    solid = _one("右肺下叶见一实性结节，大小约10mm×8mm。")
    assert (solid.nodule_type, solid.lobe, solid.side) == (NoduleType.SOLID, "RLL", "right")
    assert _one("9 mm nodule in the lingula.").lobe == "LUL"
    assert _one("左肺见一结节，约9mm。").side == "left"


@pytest.mark.parametrize(
    "text",
    [
        "No pulmonary nodules.",
        "Lungs clear without nodule, mass or consolidation.",
        "Negative for pulmonary nodules.",
        "The previously seen 9 mm nodule is no longer seen.",
        "Previous RLL nodule has resolved.",
        "Recommend follow-up CT to exclude an underlying nodule.",
        "双肺未见结节。",
        "双肺未见明显结节及肿块影。",
        "双肺未见明确结节。",
        "双肺无结节。",
        "原右肺下叶结节（约9mm）已吸收。",
        "右肺下叶结节消失。",
    ],
)
def test_negations(text: str) -> None:
    found = extract(text)
    assert found and all(m.negated for m in found), found
    assert summarize_text(text).count == 0


def test_a_negation_stops_where_the_sentence_turns() -> None:
    assert mentions_nodule_ge6mm("No new nodules, stable 7 mm nodule in the RUL.")
    assert mentions_nodule_ge6mm("双肺未见新发结节，右肺上叶结节（约8mm）同前。")
    assert mentions_nodule_ge6mm("No pulmonary nodule other than a stable 7 mm RUL granuloma.")
    assert mentions_nodule_ge6mm("No interval change in the 10 mm RUL nodule.")


@pytest.mark.parametrize(
    "text",
    [
        "THYROID: 15 mm nodule in the left thyroid lobe.",
        "There is a 9 mm nodule in the left lobe of the thyroid gland.",
        "甲状腺左叶见低密度结节，大小约12mm×10mm。",
        "Incidental 2.1 cm left adrenal nodule.",
        "左侧肾上腺结节，大小约1.5cm。",
        "Left breast: 1.8 cm nodule in the upper outer quadrant.",
        "左乳外上象限见一结节，大小约1.5cm。",
        "1.4 cm hypodense lesion in the right hepatic lobe.",
        "肝S7段见一低密度结节，直径约8mm。",
        "Subcarinal lymph node measuring 12 mm.",
        "纵隔内见肿大淋巴结，较大者约2.5cm。",
        "There are innumerable tiny nodules in a miliary pattern.",
        "双肺见弥漫分布小叶中心结节及树芽征。",
    ],
)
def test_nodules_that_are_not_lung_nodules(text: str) -> None:
    assert not mentions_nodule_ge6mm(text)
    assert summarize_text(text).largest_mm is None


def test_a_calcified_granuloma_is_a_benign_nodule_that_counts() -> None:
    granuloma = _one("Calcified granuloma in the left lower lobe, 8 mm.")
    assert granuloma.calcified and granuloma.ge6
    assert _one("左肺上叶见一钙化结节，直径约7mm。").calcified


def test_one_nodule_named_in_findings_and_impression_is_one_mention() -> None:
    text = (
        "FINDINGS: There is a 7 mm solid nodule in the right upper lobe. No other nodules.\n"
        "IMPRESSION: 7 mm RUL solid nodule. Lung-RADS 3."
    )
    summary = summarize_text(text)
    assert (summary.count, summary.ge6_count, summary.largest_mm) == (1, 1, 7.0)
    two = summarize_text("CT chest: 2 nodules in RUL, 6 mm and 8 mm.")
    assert (two.count, two.ge6_count, two.largest_mm) == (2, 2, 8.0)
    group = summarize_text("Multiple bilateral pulmonary nodules, largest 14mm in the RLL.")
    assert group.largest_mm == 14.0 and group.count >= 2


def test_mentions_round_trip_through_their_stored_form() -> None:
    mentions = extract("右肺上叶见一部分实性结节，大小约15mm×12mm。No nodules in the left lung.")
    assert mentions_from_json(mentions_to_json(mentions)) == mentions
    with pytest.raises(ValueError, match="not a stored nodule mention"):
        mentions_from_json([{"nodule_type": "cloudy"}])
