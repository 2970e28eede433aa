"""How well the type rule's solid share separates solid / part-solid / ground-glass nodules,
for several rims (``inference.measure``: the share over the voxels deeper than the rim inside
the nodule's mask), on three sets of nodules ≥ 6 mm, none of them held-out or robustness scans:

* ``train``: the true masks of ``train``-profile phantoms (the detector's training seeds),
* ``wide``: the true masks of ``wide``-profile phantoms (the scanners beside the training's),
* ``validation``: the masks the served model segments on the validation phantoms of the build
  ``--config`` (the default's; ``--validation N``: its first N; 0 skips them, ~15 s a scan).

For each rim and set: the accuracy of the rule :func:`training.staged.choose_type_rule` picks
on that set (as a build picks it on the validation set), and of that rule on the other sets.
The masks are on the model grid, as served; the shares come from
:func:`inference.measure.nodule_type` itself.

Run: ``.venv/bin/python -m training.type_rule_study`` (``--help`` for the options; the
defaults took ~30 min on 2 cores beside a model build, about half of it the validation scans).
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.card import InputSpec
from inference.measure import TypeRule, nodule_type
from inference.preprocess import to_model_grid
from inference.registry import Registry
from inference.resample import resample
from preread.domain import Geometry
from training.evaluate import RELEVANT_MM
from training.staged import SeedRange, choose_type_rule, load_staged_config, type_accuracy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "training" / "configs" / "lung-nodule-2.16.yaml"


@dataclass(frozen=True)
class Crop:
    """One nodule on the model grid: its mask, the HU around it and its true type."""

    mask: npt.NDArray[np.bool_]
    hu: npt.NDArray[np.float32]
    geometry: Geometry
    type: str


def _box(mask: npt.NDArray[np.bool_], margin: int) -> tuple[slice, slice, slice]:
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    k, j, i = (
        slice(max(0, s.start - margin), min(n, s.stop + margin))
        for s, n in zip(found, mask.shape, strict=True)
    )
    return k, j, i


def true_crops(seed: int, profile: str, spec: InputSpec) -> list[Crop]:
    """The true, not calcified nodules ≥ 6 mm of one phantom, their masks on the model grid."""
    from training.phantoms import generate_phantom

    ph = generate_phantom(seed, matrix=512, profile=profile)  # type: ignore[arg-type]
    grid = to_model_grid(ph.volume, spec)
    labels = resample(ph.label, ph.volume.geometry, grid.geometry, order=0)
    out = []
    for n in ph.nodules:
        if n.calcified or n.long_axis_mm < RELEVANT_MM:
            continue
        mask = labels == n.label
        if mask.any():
            box = _box(mask, 2)
            out.append(Crop(mask[box], grid.hu[box], grid.geometry.crop(box), n.type))
    return out


def validation_crops(validation: SeedRange, count: int) -> Iterator[Crop]:
    """The newest lung-nodule package's masks of the relevant nodules it finds on the first
    ``count`` of a build's ``validation`` phantoms (as ``training.staged.validate`` collects
    them)."""
    from training.evaluate import EvalScan, score_scan
    from training.staged import serving_predictor, typed_crops

    package = Registry(ROOT / "models").find("lung-nodule", None)
    predictor = serving_predictor(package)
    for seed in list(validation.seeds)[:count]:
        ph = validation.phantom(seed)
        pred = predictor.predict(ph.volume)
        _, nodules = score_scan(EvalScan(f"phantom-{seed}", ph.volume, ph.label, ph.nodules), pred)
        hu = to_model_grid(ph.volume, package.card.input).hu
        for mask, crop_hu, geometry, kind in typed_crops(pred, nodules, hu):
            yield Crop(mask, crop_hu, geometry, kind)


def shares(crops: list[Crop], rim_mm: float) -> list[tuple[float, str]]:
    probe = TypeRule(solid_fraction=1.0, ggo_fraction=0.0, rim_mm=rim_mm)
    return [(nodule_type(c.mask, c.hu, c.geometry, probe).solid_share, c.type) for c in crops]


def _seeds(text: str) -> range:
    start, _, stop = text.partition(":")
    return range(int(start), int(stop))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-seeds", type=_seeds, default=range(1000, 1100), help="A:B")
    ap.add_argument("--wide-seeds", type=_seeds, default=range(3000, 3060), help="A:B")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a staged build config")
    ap.add_argument("--validation", type=int, default=30, help="validation scans (0: none)")
    ap.add_argument("--rims", default="0,1,1.5,2,2.5,3", help="rims in mm, comma-separated")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    spec = Registry(ROOT / "models").find("lung-nodule", None).card.input
    sets: dict[str, list[Crop]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for name, seeds in (("train", args.train_seeds), ("wide", args.wide_seeds)):
            jobs = [pool.submit(true_crops, s, name, spec) for s in seeds]
            sets[name] = [c for j in jobs for c in j.result()]
    if args.validation:
        validation = load_staged_config(args.config)[0].validation
        if validation is None:
            raise SystemExit(f"{args.config}: the build has no validation phantoms")
        sets["validation"] = list(validation_crops(validation, args.validation))
    for name, crops in sets.items():
        kinds = ("solid", "part-solid", "ground-glass")
        counts = {t: sum(c.type == t for c in crops) for t in kinds}
        print(f"{name}: {len(crops)} nodules ≥ 6 mm {counts}")
    rims = [float(r) for r in args.rims.split(",")]
    names = list(sets)
    print("\n| rim (mm) | rule chosen on | " + " | ".join(f"on {n}" for n in names) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in names) + " |")
    for rim in rims:
        values = {n: shares(c, rim) for n, c in sets.items()}
        for chosen_on in names:
            rule = choose_type_rule(values[chosen_on], rim)
            row = [
                f"{type_accuracy(values[n], rule.solid_fraction, rule.ggo_fraction):.3f}"
                for n in names
            ]
            print(
                f"| {rim:g} | {chosen_on} ({rule.solid_fraction:g}, {rule.ggo_fraction:g}) | "
                + " | ".join(row)
                + " |"
            )


if __name__ == "__main__":
    main()
