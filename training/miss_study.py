"""Where a staged package loses the nodules it misses in its evaluation: which step of the
pipeline each one never passed.

For every nodule ≥ 6 mm (not calcified) of an evaluation set of the package's
``evaluation.json`` (held-out or robustness), the phantom is generated again (the evaluation's
own seed, matrix and profile), read by the package through the serving path (every candidate
kept, as the evaluation reads it) and scored as the evaluation scores it; each nodule missed at
the operating point is put in the first step it did not pass, in the order of
:func:`inference.postprocessors.lung_nodules`:

1. ``no response``: the detector's probability stays below the candidate threshold everywhere
   within the nodule's hit radius (max(long axis / 2, 2 mm), the LUNA16 rule);
2. ``too small``: it reaches the threshold there, but only in components smaller than the
   card's ``thresholds.min_volume_mm3``;
3. ``off the lungs``: a component large enough, none of whose candidates is kept (centred
   beyond the lung margin; or split, with no point deep enough);
4. ``candidate off-centre``: no candidate centre within the hit radius (the component holds
   a vessel or the chest wall beside the nodule, and its centroid lies beyond it);
5. ``finding off-centre``: a candidate within the radius, but no finding there (its
   segmentation, refined from the pixels, is centred elsewhere or lies under a finding ranked
   above it);
6. ``below the cut``: a finding within the radius that scores below the operating point.

Run: ``.venv/bin/python -m training.miss_study [PACKAGE] [--set robustness]`` (default: the
newest installed lung-nodule, its held-out set; ~10 s a scan: the held-out scans with a miss,
or all 30 robustness scans). Prints one line per missed nodule and the count per step; asserts
nothing. The scans are read, never chosen on: this is a diagnosis, not a tuning step.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.card import ModelCard
from inference.lungs import LungMask
from inference.package import ModelPackage
from inference.postprocessors import LUNG_MARGIN_MM, nodule_candidates
from inference.registry import Registry
from preread.domain import Geometry, TruthNodule, Vec3
from training.evaluate import HIT_FLOOR_MM, EvalScan, NoduleResult, score_scan

STEPS = (
    "no response",
    "too small",
    "off the lungs",
    "candidate off-centre",
    "finding off-centre",
    "below the cut",
)
_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Where:
    """The step a nodule did not pass, and what the detector drew on it."""

    step: str
    peak: float  # the detector's highest probability within the hit radius
    component_voxels: int  # the largest component at the threshold touching the radius


def missed(doc: dict[str, Any]) -> list[NoduleResult]:
    """The evaluation's nodules ≥ 6 mm, not calcified, not found at its operating point (its
    ``nodules`` are :class:`training.evaluate.NoduleResult` rows, read back as such)."""
    cut = float(doc.get("min_probability") or 0.0)
    rows = [NoduleResult(**n) for n in doc["nodules"]]
    return [n for n in rows if n.relevant and not n.detected_at(cut)]


def _within(
    shape: tuple[int, ...], centre: npt.NDArray[np.float64], radius: float
) -> tuple[tuple[slice, ...], npt.NDArray[np.bool_]]:
    """The box around ``centre`` (voxel indices) and the ball of ``radius`` voxels in it."""
    lo = np.maximum(np.floor(centre - radius).astype(int), 0)
    hi = np.minimum(np.ceil(centre + radius).astype(int) + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    grid = np.ogrid[box]
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return box, np.asarray(d2 <= radius**2, dtype=bool)


def locate(
    probability: npt.NDArray[np.float32],
    lungs: LungMask | None,
    geometry: Geometry,
    finding_centres_lps: Sequence[Vec3],
    card: ModelCard,
    nodule: TruthNodule,
) -> Where:
    """The first pipeline step ``nodule`` did not pass (module docstring), given what a staged
    ``card``'s package drew on the model grid: the detector's ``probability``, the ``lungs``
    and the centres of every finding (every candidate kept, whatever its score).

    The model grid is isotropic (the staged cards' 1 mm): a radius in mm is one in voxels
    times the spacing."""
    spacing = float(geometry.spacing[0])
    threshold = card.pipeline.candidate_probability or card.thresholds.probability
    radius_mm = max(nodule.long_axis_mm / 2.0, HIT_FLOOR_MM)
    centre = geometry.lps_to_index(np.asarray([nodule.center_lps_mm]))[0]
    box, ball = _within(geometry.shape, centre, radius_mm / spacing)
    peak = float(probability[box][ball].max(initial=0.0))
    fg = probability >= threshold
    components, _ = ndimage.label(fg, structure=_STRUCTURE_26)
    touching = np.unique(components[box][ball & fg[box]])
    sizes = ndimage.sum_labels(fg, components, touching) if touching.size else []
    largest = int(max(sizes, default=0))
    min_voxels = max(1, int(np.ceil(card.thresholds.min_volume_mm3 / geometry.voxel_volume_mm3)))

    def near(kji: Iterable[npt.ArrayLike]) -> bool:
        return any(np.linalg.norm(np.subtract(p, centre)) * spacing <= radius_mm for p in kji)

    def where(step: str) -> Where:
        return Where(step, round(peak, 3), largest)

    if peak < threshold:
        return where("no response")
    if largest < min_voxels:
        return where("too small")
    found, kept = nodule_candidates(
        probability,
        lungs,
        geometry,
        threshold=threshold,
        min_volume_mm3=card.thresholds.min_volume_mm3,
    )
    ours = set(np.unique(found.components[box][ball]).tolist()) - {0}
    if not any(c.component in ours for c in kept):
        return where("off the lungs")
    if not near(c.centre_kji for c in kept):
        return where("candidate off-centre")
    if not near(geometry.lps_to_index(np.asarray([c]))[0] for c in finding_centres_lps):
        return where("finding off-centre")
    return where("below the cut")


def study(package: ModelPackage, which: str = "held-out") -> list[Where]:
    """Every nodule of ``package``'s evaluation set ``which`` (``held-out`` or ``robustness``)
    missed at its operating point, located; one line each. The held-out set's scans with a miss
    are known from the evaluation's nodules; every robustness scan is read (the evaluation keeps
    only that set's figures)."""
    from preread.models import predictor_for
    from preread.settings import Settings
    from training.phantoms import generate_phantom

    doc = json.loads(package.evaluation_path.read_text())
    data = doc["data"] if which == "held-out" else doc["robustness"]["data"]
    if data.get("source") != "phantoms":
        raise SystemExit(f"{package.evaluation_path}: not an evaluation on generated phantoms")
    cut = float(doc.get("min_probability") or 0.0)
    if which == "held-out":
        seeds = sorted({int(n.case_id.rsplit("-", 1)[1]) for n in missed(doc)})
    else:
        seeds = list(range(int(data["seed"]), int(data["seed"]) + int(data["count"])))
    predictor = predictor_for(package, Settings(), full_probability=True, all_candidates=True)
    out: list[Where] = []
    for seed in seeds:
        ph = generate_phantom(seed, matrix=int(data["matrix"]), profile=data["profile"])
        prediction = predictor.predict(ph.volume)
        scan = EvalScan(f"phantom-{seed}", ph.volume, ph.label, ph.nodules)
        _, results = score_scan(scan, prediction)
        for row in results:
            if not row.relevant or row.detected_at(cut):
                continue
            nodule = next(n for n in ph.nodules if n.label == row.label)
            where = locate(
                prediction.probability,
                prediction.lungs,
                prediction.model_geometry,
                [f.center_lps_mm for f in prediction.findings],
                package.card,
                nodule,
            )
            out.append(where)
            print(
                f"{scan.case_id} nodule {nodule.label}: {nodule.type}, {row.attachment}, "
                f"{nodule.long_axis_mm:.1f} mm: {where.step} (detector peak {where.peak}, "
                f"largest component {where.component_voxels} voxels)",
                flush=True,
            )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "package", nargs="?", help="package folder (default: the newest installed lung-nodule)"
    )
    parser.add_argument(
        "--set",
        dest="which",
        choices=("held-out", "robustness"),
        default="held-out",
        help="which evaluation set (default: held-out)",
    )
    args = parser.parse_args(argv)
    if args.package:
        package = ModelPackage.load(Path(args.package))
    else:
        from preread.settings import Settings

        package = Registry(Settings().models_dir).find("lung-nodule", None)
    card = package.card
    print(f"{card.id}@{card.version}: missed {args.which} nodules (margin {LUNG_MARGIN_MM} mm)")
    counts = Counter(m.step for m in study(package, args.which))
    for step in STEPS:
        print(f"{step:>22}: {counts.get(step, 0)}")


if __name__ == "__main__":
    main()
