"""Studies for the pipeline tests: small phantoms written as DICOM, and the shipped model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tests.corpus_path import CORPUS, MISSING
from training.phantom_dicom import write_phantom_study
from training.phantoms import NoduleSpec, generate_phantom, lung_mask

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "models"
MATRIX, SLICES = 512, 64  # the scanner geometry the model knows; few slices for speed
#: One solid 20 mm nodule deep in the right lung: what any working model must find.
EASY = [("solid", 20.0)]


@dataclass(frozen=True)
class StudyOnDisk:
    study_uid: str
    patient_id: str
    ct_dir: Path
    truth_path: Path


def easy_phantom_study(seed: int, out: Path, patient_id: str) -> StudyOnDisk:
    """A phantom with one large solid nodule placed where the lung is thickest (right side)."""
    empty = generate_phantom(seed, matrix=MATRIX, max_slices=SLICES, nodules=[])
    inside = lung_mask(empty)
    g = empty.volume.geometry
    depth = ndimage.distance_transform_edt(inside, sampling=g.spacing)
    right = g.index_to_lps(np.argwhere(np.ones_like(inside)))[:, 0].reshape(inside.shape) < 0
    depth[~right] = 0
    k, j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
    centre = g.index_to_lps([k, j, i])
    spec = NoduleSpec(
        center_lps_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        diameter_mm=EASY[0][1],
        type="solid",
    )
    phantom = generate_phantom(seed, matrix=MATRIX, max_slices=SLICES, nodules=[spec])
    files = write_phantom_study(phantom, out, patient_id=patient_id)
    return StudyOnDisk(files.study_instance_uid, patient_id, files.ct_dir, files.truth_path)


@pytest.fixture(scope="session")
def easy_study(tmp_path_factory: pytest.TempPathFactory) -> StudyOnDisk:
    # Seed 31 (a 51 mm scan with 43 HU of noise) leaves too little lung around a 20 mm nodule
    # for either shipped model's windows; 33 is a plain 0.75 mm scan.
    return easy_phantom_study(33, tmp_path_factory.mktemp("easy"), "PHANTOM-EASY-33")


@pytest.fixture(scope="session")
def second_study(tmp_path_factory: pytest.TempPathFactory) -> StudyOnDisk:
    return easy_phantom_study(32, tmp_path_factory.mktemp("second"), "PHANTOM-32")


@pytest.fixture(scope="session")
def growing_study(tmp_path_factory: pytest.TempPathFactory) -> StudyOnDisk:
    return easy_phantom_study(31, tmp_path_factory.mktemp("growing"), "PHANTOM-31")


@pytest.fixture(scope="session")
def two_studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyOnDisk, StudyOnDisk]:
    tmp = tmp_path_factory.mktemp("two")
    return easy_phantom_study(34, tmp, "PHANTOM-34"), easy_phantom_study(35, tmp, "PHANTOM-35")


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(MISSING)
    return CORPUS
