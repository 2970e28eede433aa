"""The miss study puts a missed nodule in the first pipeline step it did not pass, read from
the detector's probability, the lungs and the findings as the serving path draws them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference.card import ModelCard
from inference.lungs import LungMask
from preread.domain import TruthNodule
from tests.inference.phantoms import geometry
from tests.inference.tiny_model import write_tiny_staged_package
from training.miss_study import locate, missed

SHAPE = (40, 40, 60)
GRID = geometry(SHAPE, (1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))  # LPS = (i, j, k) mm
AT = (20, 20, 20)  # k, j, i: the nodule's centre
NODULE = TruthNodule(1, (20.0, 20.0, 20.0), 8.0, 268.0, "solid")  # LPS (x=i, y=j, z=k)


def _lungs(inside: bool) -> LungMask:
    mask = np.zeros(SHAPE, dtype=bool)
    if inside:
        mask[5:35, 5:35, 5:55] = True
    else:
        mask[:, :, 50:] = True  # far from the nodule (beyond the 3 mm margin)
    return LungMask(mask, GRID, (slice(0, 40), slice(0, 40), slice(0, 60)), 1.0)


def _step(
    probability: npt.NDArray[np.float32],
    card: ModelCard,
    *,
    lungs_inside: bool = True,
    findings: tuple[tuple[float, float, float], ...] = (),
) -> str:
    where = locate(probability, _lungs(lungs_inside), GRID, list(findings), card, NODULE)
    return where.step


def test_each_step_a_missed_nodule_can_be_lost_in(tmp_path: Path) -> None:
    card = ModelCard.from_yaml(write_tiny_staged_package(tmp_path / "pkg") / "model.yaml")
    assert card.pipeline.candidate_probability == 0.3 and card.thresholds.min_volume_mm3 == 10
    k, j, i = AT
    p = np.zeros(SHAPE, dtype=np.float32)
    p[k, j, i] = 0.29  # below the candidate threshold
    assert _step(p, card) == "no response"

    p[k, j, i : i + 3] = 0.9  # 3 voxels: a speck under 10 mm³
    where = locate(p, _lungs(True), GRID, [], card, NODULE)
    assert (where.step, where.peak, where.component_voxels) == ("too small", 0.9, 3)

    blob = np.zeros(SHAPE, dtype=np.float32)
    blob[k - 2 : k + 3, j - 2 : j + 3, i - 2 : i + 3] = 0.9
    assert _step(blob, card, lungs_inside=False) == "off the lungs"
    assert _step(blob, card) == "finding off-centre"  # a candidate there, no finding
    assert _step(blob, card, findings=((30.0, 20.0, 20.0),)) == "finding off-centre"  # 10 mm off
    assert _step(blob, card, findings=((21.0, 20.0, 20.0),)) == "below the cut"

    # a vessel running from the nodule 30 mm along x: its centroid is ~15 mm away
    vessel = np.zeros(SHAPE, dtype=np.float32)
    vessel[k - 1 : k + 2, j - 1 : j + 2, i : i + 30] = 0.9
    assert _step(vessel, card) == "candidate off-centre"


def test_the_missed_nodules_are_those_not_found_at_the_operating_point() -> None:
    row = {
        "case_id": "phantom-1",
        "type": "solid",
        "long_axis_mm": 7.0,
        "volume_mm3": 180.0,
        "band": "6-8",
        "calcified": False,
        "detected": True,
        "probability": 0.9,
    }
    nodules = [
        {**row, "label": 1},
        {**row, "label": 2, "probability": 0.4},  # found below the cut: missed there
        {**row, "label": 3, "detected": False, "probability": None},
        {**row, "label": 4, "long_axis_mm": 5.0, "detected": False, "probability": None},  # < 6
        {**row, "label": 5, "calcified": True, "detected": False, "probability": None},
    ]
    found = missed({"min_probability": 0.5, "nodules": nodules})
    assert [(n.case_id, n.label) for n in found] == [("phantom-1", 2), ("phantom-1", 3)]
