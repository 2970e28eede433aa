"""Candidate-classifier samples from a dataset built from radiologists' reviews
(``preread datasets build --from-reviews``): the findings a reader rejected are hard negatives
— exactly the false positives the classifier is there to remove, on the hospital's own
scanners — and the nodules the reader confirmed or added are positives, jittered like the
phantoms' true nodules (:func:`training.fpr.truth_samples`).

A case folder holds the de-identified CT series (``ct/``) and ``negatives.json``; the
positives come from the version's manifest (:class:`preread.datasets.manifest.Positive`).
Coordinates are patient LPS mm, the same before and after de-identification.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom

from dicom_gateway.volume import assemble_volume
from inference.candidates import two_scale_patch
from inference.card import InputSpec
from inference.preprocess import to_model_grid
from preread.domain import TruthNodule
from training.errors import TrainingError
from training.fpr import STORED, CandidateSample, truth_samples

__all__ = ["case_samples"]


def case_samples(
    case_dir: Path,
    positives: Sequence[tuple[tuple[float, float, float], float]],
    spec: InputSpec,
    rng: np.random.Generator,
    *,
    copies: int = 3,
) -> list[CandidateSample]:
    """One dataset case's samples: a patch at each rejected finding's centre (negative,
    source ``reader-rejected``) and ``copies`` jittered patches around each of ``positives``
    (``(centre LPS mm, long axis mm)``; source ``truth``), on the model grid of ``spec``."""
    files = sorted((case_dir / "ct").glob("*.dcm"))
    if not files:
        raise TrainingError(f"{case_dir}: no CT series (ct/*.dcm)")
    grid = to_model_grid(assemble_volume([pydicom.dcmread(f) for f in files]), spec)
    case_id = case_dir.name
    samples = [
        CandidateSample(
            two_scale_patch(grid.array, grid.geometry.lps_to_index(n["centre_lps_mm"]), STORED)
            .astype(np.float16),
            False,
            case_id,
            f"reader-rejected:{n['reason']}",
            float(n["probability"]),
        )
        for n in json.loads((case_dir / "negatives.json").read_text())
    ]  # fmt: skip
    nodules = [
        TruthNodule(label=i + 1, center_lps_mm=centre, long_axis_mm=axis, volume_mm3=0.0,
                    type="solid", calcified=False)
        for i, (centre, axis) in enumerate(positives)
    ]  # fmt: skip
    samples += truth_samples(case_id, grid.array, grid.geometry, nodules, rng, copies=copies)
    return samples
