"""Build a staged nodule model (lung-nodule 2.x) from nothing: ``preread models build CONFIG``.

Every step writes its result into the run folder and is skipped when that result is there, so
an interrupted build continues where it stopped (the detector and the classifier also resume
from their own checkpoints):

1. **detector** — train the candidate segmentation network (:mod:`training.train`, its own
   config file: explicit bone/vessel negatives, per-nodule sampling, nodules anywhere in the
   patch, fine-tuned from 1.0.0's weights); or, with ``detector_from``, a published package's
   detector trained from the same config (checked), so a new classifier can be built behind a
   detector that was trained once, on a GPU, on a machine without its run folder;
2. **detector package** — export it to ONNX with parity checks, in a provisional package that
   runs the serving path with the lung mask (with ``model_spacing_mm`` the detector reads its
   own, coarser grid and everything after it works on the model grid);
3. **mining** — run it on the mining phantoms; every candidate (component at the candidate
   threshold, centred in the dilated lungs) becomes a labelled two-scale patch, plus jittered
   true nodule centres (:mod:`training.fpr`); with ``reviews``, also the cases of dataset
   versions built from radiologists' signed reviews (``preread datasets build``): the
   findings they rejected as hard negatives, the nodules they confirmed or added as positives
   (:mod:`training.review_samples`);
4. **classifier** — train the false-positive reduction network on them, from scratch or, with
   ``classifier.init_from``, fine-tuned from a published package's classifier; export with
   parity (or, with ``classifier_from``, re-use a published package's classifier and skip
   steps 3–4: it scores image patches around each candidate, so a new detector can sit in
   front of it);
5. **operating point** — run the two-stage package on the validation phantoms (seeds disjoint
   from training, mining and test) and choose the classifier threshold (the lowest cut-off
   whose false positives per scan stay within the configured rate) and the attenuation
   thresholds of the type rule (best accuracy on the validation nodules); or, with
   ``operating_point_from``, keep a published package's (a classifier fine-tuned from its);
6. **package** — write the final card (stages, sha256 of every graph, provenance, operating
   point) into ``<run>/package``; :mod:`training.compare` evaluates it beside the baseline and
   publishes it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from inference.candidates import two_scale_patch
from inference.card import (
    ClassifierStage,
    HarmonizeSpec,
    InferenceSpec,
    InputSpec,
    ModelCard,
    OnnxSpec,
    PipelineSpec,
    RefineSpec,
    Thresholds,
    TypeRuleSpec,
)
from inference.measure import TypeRule, nodule_type
from inference.package import ModelPackage, sha256_file
from inference.postprocessors import nodule_candidates
from inference.predict import Prediction, Predictor
from inference.preprocess import to_model_grid
from training.config import TrainConfig, load_config
from training.data import input_spec
from training.errors import ConfigError, TrainingError
from training.evaluate import EvalScan, NoduleResult, ScanResult, operating_point, score_scan
from training.export import check_parity, export_onnx
from training.fpr import (
    FINAL as FPR_FINAL,
)
from training.fpr import (
    STORED,
    CandidateSample,
    FprConfig,
    export_fpr,
    load_fpr,
    mine_scan,
    save_samples,
    train_fpr,
    truth_samples,
)
from training.provenance import DatasetProvenance
from training.publish import PARITY_SHAPES, build_card
from training.train import load_weights, network_from_package, select_device

if TYPE_CHECKING:
    from preread.datasets import DatasetManifest
    from preread.domain import Geometry
    from training.phantoms import Phantom

#: dataset versions built from reviews, resolved and authorized by the caller (the CLI checks
#: their files and grants: :func:`preread.datasets.authorized_datasets`), with their folders
ReviewDatasets = Sequence[tuple["DatasetManifest", Path]]

Progress = Callable[[str, int, int], None]  # step, done, total
SOLID_HU = -300.0  # the type rule's soft-tissue threshold (inference.measure)


def summarize_validation(scans: list[ScanResult], threshold: float) -> dict[str, float]:
    """False positives per scan and findings kept on the validation set at ``threshold``."""
    n = max(len(scans), 1)
    return {
        "fp_per_scan": sum(len(s.false_positives(threshold)) for s in scans) / n,
        "findings_per_scan": sum(
            sum(1 for f in s.findings if f.probability >= threshold) for s in scans
        )
        / n,
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeedRange(_Strict):
    """Phantoms ``seed … seed + count − 1`` (``matrix`` and ``max_slices``: smaller ones, for
    tests; the shipped build uses the full 512 × 512 scans)."""

    seed: int = Field(ge=0)
    count: int = Field(ge=1)
    matrix: int = Field(default=512, ge=32, le=1024)
    max_slices: int | None = Field(default=None, ge=8)

    def phantom(self, seed: int, profile: str = "train") -> Phantom:
        from training.phantoms import generate_phantom

        return generate_phantom(
            seed,
            matrix=self.matrix,
            max_slices=self.max_slices,
            profile=profile,  # type: ignore[arg-type]
        )

    @property
    def seeds(self) -> range:
        return range(self.seed, self.seed + self.count)


class MiningConfig(SeedRange):
    truth_copies: int = Field(default=3, ge=0)
    #: the generator profile of the mining phantoms (``wide``: acquisitions beside the training
    #: scanners', hard negatives the training profile does not make; never ``robustness``)
    profile: Literal["train", "wide"] = "train"
    #: scans mined at once, each in its own process with the CPU's cores split between them
    workers: int = Field(default=1, ge=1, le=64)


class NodulePatchesConfig(SeedRange):
    """Phantoms the detector never reads: only their true nodules, jittered ``copies`` times
    (positives; calcified ones negatives) — nodules for the classifier at the cost of
    generating them, ~2 s a scan instead of mining's ~19 s."""

    copies: int = Field(default=4, ge=1)
    profile: Literal["train", "wide"] = "train"


class ClassifierConfig(_Strict):
    iterations: int = Field(default=1500, ge=1)
    batch_size: int = Field(default=32, ge=2)
    learning_rate: float = Field(default=2e-3, gt=0)
    width: int = Field(default=8, ge=4)
    seed: int = 0
    #: acquisition-like augmentation of the candidate patches (training.fpr._acquisition)
    acquisition: bool = False
    #: the views of each candidate the serving classifier averages (the card's
    #: ``stages[].test_views``, inference.postprocessors.TEST_VIEWS); validation chooses the
    #: operating point with them
    test_views: Literal[4, 16] = 4
    #: a published package whose classifier (``fpr-weights.pt``, of width ``width``) the
    #: training starts from: fine-tuning (relative to the build config)
    init_from: Path | None = None


class ReviewSamplesConfig(_Strict):
    """Dataset versions built from signed reviews (``preread datasets build --from-reviews``),
    pinned as ``NAME@VERSION``; used only while every grant they were built under is valid."""

    datasets: list[str] = Field(min_length=1)
    #: jittered patches per confirmed or reader-added nodule (a rejected finding: one patch)
    copies: int = Field(default=3, ge=1)


class ValidationConfig(SeedRange):
    max_fp_per_scan: float = Field(default=1.0, gt=0)


class EvaluationConfig(_Strict):
    held_out: SeedRange
    robustness: SeedRange
    baseline: str = "lung-nodule@1.0.0"
    #: ``run``: the baseline reads the same scans in this run; ``published``: its figures come
    #: from its package's ``evaluation.json``, which must be of the same held-out and
    #: robustness phantoms and generator (checked) — half the evaluation's time, for a
    #: baseline whose published evaluation is of exactly these scans
    baseline_from: Literal["run", "published"] = "run"
    #: scans scored at once, each in its own process with the CPU's cores split between them
    #: (phantom generation, the lung mask and post-processing are single-threaded)
    workers: int = Field(default=2, ge=1, le=64)


class StagedConfig(_Strict):
    detector: Path  # a training config (training.config.TrainConfig), relative to this file
    candidate_probability: float = Field(gt=0, lt=1)
    #: the serving windows' overlap (a share of the window). Less overlap: fewer windows and
    #: less time, but a faint nodule at a seam is seen by fewer windows (2.9.0, 1/8: two small
    #: ground-glass nodules of 122 lost); the evaluation tells
    overlap: float = Field(default=0.25, ge=0, lt=1)
    #: the serving windows' edge (voxels; default: the detector's training patch). Larger
    #: windows than the patches give the instance norm more context and need fewer network
    #: voxels for the same seams (2.10.0: 96^3 windows of the detector trained on 64^3)
    roi_size_vox: int | None = Field(default=None, ge=16, le=256)
    segmentation_probability: float = Field(default=0.5, gt=0, lt=1)
    #: the model grid (the card's ``input.spacing_mm``, isotropic) when the detector reads a
    #: coarser one: the detector config's ``input.spacing_mm`` then goes into the card as
    #: ``pipeline.detector_spacing_mm``, and candidates, classifiers, edges and measurements
    #: work on this grid (None: everything on the detector's grid). A detector on 1.25 mm
    #: behind classifiers trained on 1 mm patches: 2.18.0 in docs/model-lung-nodule.md
    model_spacing_mm: float | None = Field(default=None, gt=0, le=10)
    #: the published version when it is not the detector config's (a build that re-uses
    #: another build's detector: same config, same run folder, so it is trained once)
    version: str | None = Field(default=None, pattern=r"^\d+\.\d+\.\d+$")
    mining: MiningConfig | None = None
    nodule_patches: NodulePatchesConfig | None = None
    reviews: ReviewSamplesConfig | None = None
    classifier: ClassifierConfig = ClassifierConfig()
    #: a published package whose false-positive classifier (``fpr-weights.pt``, of width
    #: ``classifier.width``) this build re-uses instead of mining and training its own: a new
    #: detector behind a classifier that scores image patches, not the detector's output. Two
    #: or more packages: their classifiers as one ensemble (logits averaged, one graph:
    #: :class:`training.fpr.CandidateEnsemble`), e.g. one mined on the training scanners and
    #: one on wider acquisitions
    classifier_from: list[Path] | None = None
    #: a published package whose detector (``weights.pt``, trained from the ``detector``
    #: config: its digest is checked) this build re-uses instead of training or reading the
    #: detector's run folder — a new classifier behind a detector trained once, on a GPU
    detector_from: Path | None = None
    #: noise harmonisation in the card (inference.harmonize): scans noisier than this on the
    #: model grid are smoothed down to it, in mining, validation, evaluation and serving alike
    harmonize: HarmonizeSpec | None = None
    validation: ValidationConfig | None = None
    #: the type rule's rim (``inference.measure``): the solid share of each validation nodule
    #: is taken this deep inside its mask, and the card's rule carries it (0: the whole mask)
    type_rim_mm: float = Field(default=0.0, ge=0, le=5)
    #: how far beyond the detector's mask a finding's edge may be looked for when every shell
    #: up to there is nodule (the card's ``pipeline.refine.reach_mm``: a detector that drew
    #: only a fragment of the nodule; None: the growth limit only)
    refine_reach_mm: float | None = Field(default=None, ge=0, le=10)
    #: the smallest detector component that is a candidate, into the card's
    #: ``thresholds.min_volume_mm3`` and so into mining, validation, evaluation and serving
    #: alike (default: the detector config's ``postprocess``). The detector's faint response
    #: to a subtle nodule can be a handful of voxels; what letting those in costs: 2.17.0 in
    #: docs/model-lung-nodule.md
    candidate_min_volume_mm3: float | None = Field(default=None, gt=0)
    #: a published package whose classifier threshold and type rule this build keeps instead
    #: of choosing them on validation phantoms (a classifier fine-tuned from that package's on
    #: a few reviewed cases: the held-out comparison and the promotion gate judge the result)
    operating_point_from: Path | None = None
    #: phantoms none of the training reads, whose true nodules (patches at their centres) the
    #: fine-tuned classifier's threshold is matched on (``operating_point_from`` with
    #: ``classifier.init_from``): nodules it was trained on would score higher than new ones
    calibration: SeedRange | None = None
    evaluation: EvaluationConfig
    output_dir: Path

    @field_validator("classifier_from", mode="before")
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str | Path) else value

    @model_validator(mode="after")
    def _classifier_source(self) -> StagedConfig:
        trains = self.mining is not None or self.reviews is not None
        if trains == (self.classifier_from is not None):
            raise ValueError(
                "give either mining and/or reviews (train a classifier) or classifier_from"
            )
        if (self.validation is None) == (self.operating_point_from is None):
            raise ValueError("give either validation (choose the operating point) or "
                             "operating_point_from")  # fmt: skip
        if self.classifier_from is not None and not self.classifier_from:
            raise ValueError("classifier_from: name at least one package")
        if self.reviews is not None:
            for ref in self.reviews.datasets:
                name, _, version = ref.partition("@")
                if not name or not version.isdigit():
                    raise ValueError(f"reviews.datasets: {ref!r} is not NAME@VERSION")
        return self

    def check_disjoint(self, detector: TrainConfig) -> None:
        """Detector training, mining, validation, held-out and robustness seeds never overlap
        (the classifier learns from candidates on scans the detector has not seen)."""
        groups: dict[str, set[int]] = {
            "detector training": set(),
            "mining": set(self.mining.seeds if self.mining else ()),
            "nodule patches": set(self.nodule_patches.seeds if self.nodule_patches else ()),
            "calibration": set(self.calibration.seeds if self.calibration else ()),
            "validation": set(self.validation.seeds if self.validation else ()),
            "held-out": set(self.evaluation.held_out.seeds),
            "robustness": set(self.evaluation.robustness.seeds),
        }
        if detector.data.phantoms is not None:
            p = detector.data.phantoms
            groups["detector training"] = set(range(p.seed, p.seed + p.count))
        names = list(groups)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = groups[a] & groups[b]
                if both:
                    raise ConfigError(f"{a} and {b} seeds overlap: {sorted(both)[:5]}…")


def load_staged_config(path: Path) -> tuple[StagedConfig, TrainConfig]:
    try:
        raw = yaml.safe_load(path.read_text())
        cfg = StagedConfig.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the build config: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: invalid build config: {problems}") from exc
    base = path.resolve().parent
    cfg = cfg.model_copy(
        update={
            "detector": (base / cfg.detector).resolve(),
            "output_dir": (base / cfg.output_dir).resolve(),
            "classifier_from": [(base / p).resolve() for p in cfg.classifier_from]
            if cfg.classifier_from
            else None,
            "detector_from": (base / cfg.detector_from).resolve() if cfg.detector_from else None,
            "operating_point_from": (base / cfg.operating_point_from).resolve()
            if cfg.operating_point_from
            else None,
            "classifier": cfg.classifier.model_copy(
                update={"init_from": (base / cfg.classifier.init_from).resolve()}
            )
            if cfg.classifier.init_from
            else cfg.classifier,
        }
    )
    detector = load_config(cfg.detector)
    divisor = detector.network.divisor
    if cfg.roi_size_vox is not None and cfg.roi_size_vox % divisor:
        raise ConfigError(
            f"{path}: roi_size_vox {cfg.roi_size_vox} is not divisible by {divisor}, as the "
            "detector network needs"
        )
    if cfg.model_spacing_mm is not None:
        coarse = detector.input.spacing_mm
        if len(set(coarse)) != 1 or coarse[0] < cfg.model_spacing_mm:
            raise ConfigError(
                f"{path}: model_spacing_mm {cfg.model_spacing_mm} needs a detector trained on "
                f"an isotropic grid at least as coarse, but {cfg.detector.name} has "
                f"input.spacing_mm {list(coarse)}"
            )
    cfg.check_disjoint(detector)
    return cfg, detector


def model_input(cfg: StagedConfig, detector: TrainConfig) -> tuple[InputSpec, float | None]:
    """The card's model grid and its ``pipeline.detector_spacing_mm``: the detector's own
    grid, or ``model_spacing_mm`` with the detector's grid as the coarser one."""
    if cfg.model_spacing_mm is None or cfg.model_spacing_mm == detector.input.spacing_mm[0]:
        return input_spec(detector.input), None
    fine = detector.input.model_copy(update={"spacing_mm": (cfg.model_spacing_mm,) * 3})
    return input_spec(fine), detector.input.spacing_mm[0]


@dataclass(frozen=True)
class Layout:
    """Where each step keeps its result inside the run folder."""

    root: Path

    @property
    def detector_package(self) -> Path:
        return self.root / "detector-package"

    @property
    def mining(self) -> Path:
        return self.root / "mining"

    @property
    def classifier(self) -> Path:
        return self.root / "classifier"

    @property
    def validation(self) -> Path:
        return self.root / "validation.json"

    @property
    def package(self) -> Path:
        return self.root / "package"


def serving_predictor(package: ModelPackage, *, full_probability: bool = False) -> Predictor:
    """The serving path with the configured providers (``PREREAD_PROVIDERS``: the GPU when the
    machine has one and onnxruntime-gpu is installed; a downgrade follows the provider policy)."""
    from preread.models import predictor_for
    from preread.settings import Settings

    return predictor_for(package, Settings(), full_probability=full_probability)


# -- step 2: the detector as a provisional package -------------------------------------------


def published_detector(
    source_dir: Path, detector: TrainConfig
) -> tuple[torch.nn.Module, DatasetProvenance, str]:
    """The detector network of a published package (``detector_from``), checked: its graphs'
    sha256 (loading the package), its ``weights.pt`` against the card, and the card's training
    config digest against ``detector`` (the same training, not another network of that name)."""
    source = ModelPackage.load(source_dir)
    extra = source.card.training.extra
    name = f"{source.card.id}@{source.card.version}"
    if extra.get("training_config_digest") != detector.digest():
        raise ConfigError(
            f"detector_from: {name} was not trained from {detector.model.id} "
            f"{detector.model.version}'s config (digest {extra.get('training_config_digest')} "
            f"!= {detector.digest()})"
        )
    weights = source_dir / "weights.pt"
    if not weights.is_file() or sha256_file(weights) != extra.get("weights_pt_sha256"):
        raise ConfigError(f"detector_from: {weights} is missing or not the card's weights")
    network = extra.get("network_config")
    if not isinstance(network, dict):
        raise ConfigError(f"detector_from: {name}'s card records no network_config")
    net = network_from_package(source_dir, network)
    provenance = DatasetProvenance(detector.data.source, grants=tuple(source.card.training.grants))
    return net, provenance, name


def detector_package(cfg: StagedConfig, detector: TrainConfig, layout: Layout) -> ModelPackage:
    """Export the trained detector into a one-stage package that yields its candidates."""
    folder = layout.detector_package
    if (folder / "model.yaml").exists():
        return ModelPackage.load(folder)
    provenance: DatasetProvenance | None
    if cfg.detector_from is not None:
        net, provenance, _ = published_detector(cfg.detector_from, detector)
    else:
        net, _ = load_weights(detector.output_dir)
        provenance = DatasetProvenance.read(detector.output_dir)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    onnx_path = tmp / "model.onnx"
    export_onnx(net, onnx_path)
    parity = check_parity(net, onnx_path, PARITY_SHAPES)
    torch.save(net.state_dict(), tmp / "weights.pt")
    card = build_card(
        detector,
        sha256_file(onnx_path),
        parity.max_abs_diff,
        {},
        (cfg.evaluation.held_out.seed, cfg.evaluation.held_out.count),
        {
            "parity_shapes": [list(s) for s in parity.shapes],
            "parity_max_abs_diff_per_shape": parity.per_shape,
            "weights_pt_sha256": sha256_file(tmp / "weights.pt"),
            "training_config_digest": detector.digest(),
            "network_config": detector.network.model_dump(mode="json"),
        },
        provenance or DatasetProvenance(detector.data.source),
    )
    model_grid, detector_grid = model_input(cfg, detector)
    card = card.model_copy(
        update={
            "version": cfg.version or card.version,
            "input": model_grid,
            # serving windows as large as the training patches unless the config says
            # otherwise (the evaluation tells whether the network keeps its findings)
            "inference": InferenceSpec(
                roi_size_vox=detector.optim.patch_size
                if cfg.roi_size_vox is None
                else (cfg.roi_size_vox,) * 3,
                overlap=cfg.overlap,
                batch_size=2,
            ),
            "thresholds": Thresholds(
                probability=cfg.candidate_probability,
                min_volume_mm3=detector.postprocess.min_volume_mm3
                if cfg.candidate_min_volume_mm3 is None
                else cfg.candidate_min_volume_mm3,
            ),
            "pipeline": PipelineSpec(
                postprocess="components",
                lung_mask=True,
                harmonize=cfg.harmonize,
                detector_spacing_mm=detector_grid,
            ),
        }
    )
    ModelCard.model_validate(card.model_dump())
    card.to_yaml(tmp / "model.yaml")
    (tmp / "evaluation.json").write_text("{}")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return ModelPackage.load(folder)


# -- step 3: mining ------------------------------------------------------------------------


def candidates_of(
    prediction: Prediction, card: ModelCard, threshold: float
) -> list[tuple[Any, float]]:
    """The candidates the serving path would score: ``(centre_kji, peak)`` in the lungs."""
    _, cands = nodule_candidates(
        prediction.probability,
        prediction.lungs,
        prediction.model_geometry,
        threshold=threshold,
        min_volume_mm3=card.thresholds.min_volume_mm3,
    )
    return [(c.centre_kji, c.peak_probability) for c in cands]


_MINER: dict[str, Any] = {}


def _start_miner(package: Path, threads: int) -> None:
    """A mining process: its own detector session with ``threads`` intra-op threads (0: as
    configured)."""
    from preread.models import predictor_for
    from preread.settings import Settings

    settings = Settings(intra_op_threads=threads) if threads else Settings()
    pkg = ModelPackage.load(package)
    _MINER["package"] = pkg
    _MINER["predictor"] = predictor_for(pkg, settings, full_probability=True)


def _mine_seed(seed: int, cfg: StagedConfig, out: Path) -> int:
    """One mining phantom's labelled candidates (and jittered truth) into ``out``."""
    assert cfg.mining is not None
    package: ModelPackage = _MINER["package"]
    ph = cfg.mining.phantom(seed, cfg.mining.profile)
    pred = _MINER["predictor"].predict(ph.volume)
    image = to_model_grid(ph.volume, package.card.input).array
    samples = mine_scan(
        f"phantom-{seed}",
        image,
        pred.model_geometry,
        candidates_of(pred, package.card, cfg.candidate_probability),
        ph.nodules,
        np.random.default_rng(seed),
        truth_copies=cfg.mining.truth_copies,
    )
    _save_or_mark(samples, out)
    return seed


def _save_or_mark(samples: list[CandidateSample], out: Path) -> None:
    """``samples`` into ``out``; none (a phantom without nodules in which the detector makes
    no candidate either): an empty marker, so that a resumed run skips the phantom."""
    if samples:
        save_samples(samples, out)
    else:
        empty = np.zeros((0, 2, STORED, STORED, STORED), np.float16)
        np.savez(out.with_suffix(".tmp.npz"), patches=empty)
        out.with_suffix(".tmp.npz").replace(out)


def _nodule_patches_seed(seed: int, cfg: StagedConfig, out: Path) -> int:
    """One nodule-patch phantom's jittered true nodules into ``out`` (no detector)."""
    assert cfg.nodule_patches is not None
    package: ModelPackage = _MINER["package"]
    ph = cfg.nodule_patches.phantom(seed, cfg.nodule_patches.profile)
    grid = to_model_grid(ph.volume, package.card.input)
    samples = truth_samples(
        f"phantom-{seed}",
        grid.array,
        grid.geometry,
        ph.nodules,
        np.random.default_rng(seed),
        copies=cfg.nodule_patches.copies,
    )
    _save_or_mark(samples, out)
    return seed


def _mine_job(job: tuple[str, int, Path], cfg: StagedConfig) -> int:
    kind, seed, out = job
    if kind == "mining":
        return _mine_seed(seed, cfg, out)
    return _nodule_patches_seed(seed, cfg, out)


def _review_samples(
    cfg: StagedConfig, datasets: ReviewDatasets, package: ModelPackage, layout: Layout
) -> list[Path]:
    """Each case of the review datasets as samples (:func:`training.review_samples.case_samples`),
    one file per case (resumable; the version's content is fixed by its hash)."""
    from training.review_samples import case_samples

    assert cfg.reviews is not None
    wanted = set(cfg.reviews.datasets)
    given = {m.ref for m, _ in datasets}
    if given != wanted:
        raise ConfigError(
            f"reviews.datasets names {sorted(wanted)} but {sorted(given) or 'none'} were "
            "resolved: build through `preread models build`, which checks their files and grants"
        )
    out: list[Path] = []
    for manifest, folder in datasets:
        for case in manifest.cases:
            path = layout.mining / f"review-{manifest.name}-{manifest.version}-{case.case_id}.npz"
            if not path.exists():
                seed = int(hashlib.sha256(case.case_id.encode()).hexdigest()[:8], 16)
                samples = case_samples(
                    folder / case.folder,
                    [(p.centre_lps_mm, p.long_axis_mm) for p in case.positives],
                    package.card.input,
                    np.random.default_rng(seed),
                    copies=cfg.reviews.copies,
                )
                _save_or_mark(samples, path)
            out.append(path)
    return out


def mine(
    cfg: StagedConfig,
    package: ModelPackage,
    layout: Layout,
    progress: Progress | None = None,
    datasets: ReviewDatasets = (),
) -> tuple[npt.NDArray[np.float16], npt.NDArray[np.bool_]]:
    """Mine every mining phantom, collect the nodule-patch phantoms and the review datasets'
    cases (one file per scan: resumable), ``mining.workers`` scans at a time; all samples
    concatenated."""
    if cfg.mining is None and cfg.reviews is None:
        raise ConfigError("this build re-uses a classifier (classifier_from): nothing to mine")
    layout.mining.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, int, Path]] = [
        ("mining", seed, layout.mining / f"phantom-{seed}.npz")
        for seed in (cfg.mining.seeds if cfg.mining else ())
    ]
    if cfg.nodule_patches is not None:
        jobs += [
            ("nodule-patches", seed, layout.mining / f"nodules-{seed}.npz")
            for seed in cfg.nodule_patches.seeds
        ]
    todo = [j for j in jobs if not j[2].exists()]
    done = len(jobs) - len(todo)
    if progress:
        progress("mining", done, len(jobs))
    workers = cfg.mining.workers if cfg.mining else 1
    if todo and workers == 1:
        _start_miner(package.path, 0)
        try:
            for job in todo:
                _mine_job(job, cfg)
                done += 1
                if progress:
                    progress("mining", done, len(jobs))
        finally:
            _MINER.clear()
    elif todo:
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")  # fresh ONNX Runtime sessions per process
        with ctx.Pool(workers, _start_miner, (package.path, threads)) as pool:
            for _ in pool.imap_unordered(partial(_mine_job, cfg=cfg), todo):
                done += 1
                if progress:
                    progress("mining", done, len(jobs))
    files = [path for _, _, path in jobs]
    if cfg.reviews is not None:
        files += _review_samples(cfg, datasets, package, layout)
    patches, positive = [], []
    for path in files:
        with np.load(path) as z:
            if len(z["patches"]):
                patches.append(z["patches"])
                positive.append(z["positive"])
    return np.concatenate(patches), np.concatenate(positive)


# -- step 4: classifier --------------------------------------------------------------------


def reuse_classifier(cfg: StagedConfig, layout: Layout) -> Path:
    """The classifier of ``classifier_from`` as this build's classifier step — several
    packages' as one ensemble — checked: each package's card declares it, its graph's sha256
    matches, its weights load at the width."""
    assert cfg.classifier_from is not None
    final = layout.classifier / FPR_FINAL
    if final.exists():
        return final
    from training.fpr import classifier_from_state, ensemble

    nets = []
    for package in cfg.classifier_from:
        source = ModelPackage.load(package)  # verifies every graph's sha256
        if not any(stage.name == "fpr" for stage in source.card.stages):
            raise ConfigError(f"classifier_from: {package} has no fpr stage")
        weights = package / "fpr-weights.pt"
        if not weights.exists():
            raise ConfigError(f"classifier_from: {weights} does not exist")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            nets.append(classifier_from_state(state, cfg.classifier.width))
        except ValueError as exc:
            raise ConfigError(
                f"classifier_from: {weights} is not a width-{cfg.classifier.width} "
                f"classifier: {exc}"
            ) from exc
    net = nets[0] if len(nets) == 1 else ensemble(nets)
    layout.classifier.mkdir(parents=True, exist_ok=True)
    tmp = final.with_suffix(".tmp")
    torch.save({"width": cfg.classifier.width, "model": net.state_dict()}, tmp)
    tmp.replace(final)
    return final


def classifier_provenance(cfg: StagedConfig, datasets: ReviewDatasets = ()) -> dict[str, Any]:
    """Where the classifier's training samples came from (for the card): phantom seeds, the
    review dataset versions (with their content hash) and the grants they were built under,
    the package it was fine-tuned from."""
    if cfg.classifier_from is not None:
        cards = [ModelPackage.load(p).card for p in cfg.classifier_from]
        refs = [f"{c.id}@{c.version}" for c in cards]
        seeds = [c.training.extra.get("mining_seeds") for c in cards]
        if len(cards) == 1:
            return {"classifier_from": refs[0], "mining_seeds": seeds[0]}
        return {"classifier_from": refs, "classifier_ensemble": "mean logit", "mining_seeds": seeds}
    out: dict[str, Any] = {}
    if cfg.mining is not None:
        out["mining_seeds"] = [cfg.mining.seed, cfg.mining.count]
        out["mining_profile"] = cfg.mining.profile
    if datasets:
        out["datasets"] = [f"{m.ref} sha256:{m.content_sha256}" for m, _ in datasets]
        out["dataset_grants"] = sorted({g for m, _ in datasets for g in m.grant_ids})
        out["dataset_cases"] = sum(len(m.cases) for m, _ in datasets)
    if cfg.classifier.init_from is not None:
        card = ModelPackage.load(cfg.classifier.init_from).card
        out["classifier_fine_tuned_from"] = f"{card.id}@{card.version}"
    if cfg.nodule_patches is not None:
        out["nodule_patch_seeds"] = [cfg.nodule_patches.seed, cfg.nodule_patches.count]
        out["nodule_patch_profile"] = cfg.nodule_patches.profile
    return out


def detector_provenance(cfg: StagedConfig) -> dict[str, Any]:
    """The published package the detector came from (``detector_from``), for the card."""
    if cfg.detector_from is None:
        return {}
    card = ModelPackage.load(cfg.detector_from).card
    return {"detector_from": f"{card.id}@{card.version}"}


def classifier(
    cfg: StagedConfig,
    samples: tuple[npt.NDArray[np.float16], npt.NDArray[np.bool_]],
    layout: Layout,
    progress: Progress | None = None,
) -> Path:
    c = cfg.classifier
    init = None
    if c.init_from is not None:
        init = c.init_from / "fpr-weights.pt"
        if not init.exists():
            raise ConfigError(f"classifier.init_from: {init} does not exist (no classifier)")
    if not (layout.classifier / FPR_FINAL).exists():
        train_fpr(
            samples[0],
            samples[1],
            FprConfig(
                iterations=c.iterations,
                batch_size=c.batch_size,
                learning_rate=c.learning_rate,
                width=c.width,
                seed=c.seed,
                acquisition=c.acquisition,
                init_weights=str(init) if init else None,
            ),
            layout.classifier,
            device=select_device("auto").torch_device,  # CUDA when present, like the detector
            on_step=(lambda it, _loss: progress("classifier", it, c.iterations))
            if progress
            else None,
        )
    return layout.classifier / FPR_FINAL


def staged_package(
    det: ModelPackage,
    layout: Layout,
    cfg: StagedConfig,
    *,
    threshold: float,
    type_rule: TypeRuleSpec,
    folder: Path,
    extra: dict[str, Any] | None = None,
) -> ModelPackage:
    """The detector package plus the classifier stage, at the given operating point."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(det.path, tmp)
    net = load_fpr(layout.classifier)
    diff = export_fpr(net, tmp / "fpr.onnx")
    torch.save(net.state_dict(), tmp / "fpr-weights.pt")
    card = det.card
    training = card.training.model_copy(update={"extra": {**card.training.extra, **(extra or {})}})
    card = card.model_copy(
        update={
            "thresholds": Thresholds(
                probability=cfg.segmentation_probability,
                min_volume_mm3=card.thresholds.min_volume_mm3,
            ),
            "pipeline": PipelineSpec(
                postprocess="lung-nodule",
                lung_mask=True,
                candidate_probability=cfg.candidate_probability,
                type_rule=type_rule,
                harmonize=cfg.harmonize,
                refine=None
                if cfg.refine_reach_mm is None
                else RefineSpec(reach_mm=cfg.refine_reach_mm),
                detector_spacing_mm=card.pipeline.detector_spacing_mm,
            ),
            "stages": [
                ClassifierStage(
                    name="fpr",
                    onnx=OnnxSpec(
                        file="fpr.onnx",
                        sha256=sha256_file(tmp / "fpr.onnx"),
                        opset=18,
                        input_name="patches",
                        output_name="logits",
                        max_abs_diff_vs_torch=diff,
                    ),
                    threshold=threshold,
                    test_views=cfg.classifier.test_views,
                )
            ],
            "training": training,
        }
    )
    ModelCard.model_validate(card.model_dump())
    card.to_yaml(tmp / "model.yaml")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return ModelPackage.load(folder)


# -- step 5: operating point -----------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """The classifier-scored findings on the validation phantoms, matched to the truth, and
    for each detected relevant nodule its solid share and true type (the type rule's data)."""

    scans: list[ScanResult]
    shares: list[tuple[float, str]]


def typed_crops(
    prediction: Prediction, nodules: Sequence[NoduleResult], hu: npt.NDArray[np.float32]
) -> Iterator[tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32], Geometry, str]]:
    """For each relevant nodule a finding hits (``nodules``: :func:`training.evaluate.
    score_scan`'s for ``prediction``): the finding's mask in its box, the HU there (``hu``: the
    scan on the model grid), the box's geometry and the nodule's true type."""
    by_label = {f.label: f for f in prediction.findings}
    for n in nodules:
        f = by_label.get(n.finding_label) if n.finding_label is not None else None
        if not n.relevant or f is None or f.bbox_kji is None:
            continue
        (k0, j0, i0), (k1, j1, i1) = f.bbox_kji
        box = (slice(k0, k1), slice(j0, j1), slice(i0, i1))
        mask = prediction.labels[box] == f.label
        if mask.any():
            yield mask, hu[box], prediction.model_geometry.crop(box), n.type


def validate(
    cfg: StagedConfig, package: ModelPackage, progress: Progress | None = None
) -> Validation:
    assert cfg.validation is not None
    predictor = serving_predictor(package)
    probe = TypeRule(
        solid_hu=SOLID_HU, solid_fraction=1.0, ggo_fraction=0.0, rim_mm=cfg.type_rim_mm
    )
    results: list[ScanResult] = []
    shares: list[tuple[float, str]] = []
    seeds = list(cfg.validation.seeds)
    for done, seed in enumerate(seeds):
        ph = cfg.validation.phantom(seed)
        scan = EvalScan(f"phantom-{seed}", ph.volume, ph.label, ph.nodules)
        pred = predictor.predict(ph.volume)
        sr, nodules = score_scan(scan, pred)
        results.append(sr)
        hu = to_model_grid(ph.volume, package.card.input).hu
        for mask, crop_hu, geometry, kind in typed_crops(pred, nodules, hu):
            shares.append((nodule_type(mask, crop_hu, geometry, probe).solid_share, kind))
        if progress:
            progress("validation", done + 1, len(seeds))
    return Validation(results, shares)


def calibration_nodules(cfg: StagedConfig, package: ModelPackage) -> npt.NDArray[np.float16]:
    """A patch at the centre of each true, not calcified nodule of the calibration phantoms."""
    assert cfg.calibration is not None
    out = []
    for seed in cfg.calibration.seeds:
        ph = cfg.calibration.phantom(seed)
        grid = to_model_grid(ph.volume, package.card.input)
        for n in ph.nodules:
            if not n.calcified:
                index = grid.geometry.lps_to_index(n.center_lps_mm)
                out.append(two_scale_patch(grid.array, index, STORED).astype(np.float16))
    if not out:
        raise ConfigError("calibration: its phantoms hold no nodule to match the threshold on")
    return np.stack(out)


def kept_operating_point(
    cfg: StagedConfig, layout: Layout, nodules: npt.NDArray[np.float16] | None = None
) -> dict[str, Any]:
    """The operating point of ``operating_point_from`` (``validation.json`` of a build that
    keeps it): its type rule, and its classifier threshold — for a classifier fine-tuned from
    that package's (``classifier.init_from``, the same package), moved by the median change of
    the logits of true-nodule patches (``nodules``: the ``calibration`` phantoms', which no
    step trained on, else the training's own; :func:`training.fpr.matched_threshold`)."""
    assert cfg.operating_point_from is not None
    package_dir = cfg.operating_point_from
    card = ModelPackage.load(package_dir).card
    stage = next((s for s in card.stages if s.name == "fpr"), None)
    if stage is None or card.pipeline is None or card.pipeline.type_rule is None:
        raise ConfigError(
            f"operating_point_from: {package_dir} is not a staged package (no fpr stage or type "
            "rule)"
        )
    out: dict[str, Any] = {
        "threshold": stage.threshold,
        "type_rule": card.pipeline.type_rule.model_dump(),
        "kept_from": f"{card.id}@{card.version}",
    }
    if nodules is not None and cfg.classifier.init_from == package_dir:
        from training.fpr import classifier_from_state, matched_threshold, scores

        base = classifier_from_state(
            torch.load(package_dir / "fpr-weights.pt", map_location="cpu", weights_only=True),
            cfg.classifier.width,
        )
        threshold, shift = matched_threshold(
            scores(base, nodules), scores(load_fpr(layout.classifier), nodules), stage.threshold
        )
        out |= {
            "threshold": threshold,
            "matched": {
                "threshold_of_kept": stage.threshold,
                "nodule_patches": len(nodules),
                "median_logit_shift": shift,
            },
        }
    return out


def type_accuracy(shares: list[tuple[float, str]], solid: float, ggo: float) -> float:
    """The share of ``(solid share, true type)`` pairs a rule with these thresholds types right
    (solid at ``solid`` or above, ground-glass below ``ggo``, part-solid between)."""
    if not shares:
        return 0.0
    values = np.array([s for s, _ in shares], dtype=np.float64)
    truth = np.array([t for _, t in shares])
    subsolid = np.where(values < ggo, "ground-glass", "part-solid")
    return float(np.mean(np.where(values >= solid, "solid", subsolid) == truth))


def choose_type_rule(shares: list[tuple[float, str]], rim_mm: float = 0.0) -> TypeRuleSpec:
    """The (solid, ground-glass) share thresholds with the best accuracy on validation
    nodules (of the tied best, the middle ones); ``rim_mm``: the rim the shares were read with,
    which the rule carries."""
    grid: list[tuple[float, float, float]] = []
    for sf in np.arange(0.20, 0.951, 0.01):
        for gf in np.arange(0.0, 0.2001, 0.005):
            if gf < sf:
                grid.append((type_accuracy(shares, sf, gf), float(sf), float(gf)))
    top = max(a for a, _, _ in grid)
    # the middle of the best plateau, not its edge: the margin generalises better
    sfs = sorted({sf for a, sf, _ in grid if a == top})
    sf = sfs[len(sfs) // 2]
    gfs = sorted({gf for a, s_, gf in grid if a == top and s_ == sf})
    best = (top, sf, gfs[len(gfs) // 2])
    return TypeRuleSpec(
        solid_hu=SOLID_HU,
        solid_fraction=round(best[1], 3),
        ggo_fraction=round(best[2], 3),
        rim_mm=rim_mm,
    )


def build(config: Path, progress: Progress | None = None, datasets: ReviewDatasets = ()) -> Path:
    """Run steps 1–6 (each skipped when its result exists); returns the package folder.
    ``datasets``: the config's ``reviews.datasets``, resolved and authorized by the caller."""
    from training.data import training_cases
    from training.train import train

    cfg, detector = load_staged_config(config)
    layout = Layout(cfg.output_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    if cfg.detector_from is None and not (detector.output_dir / "model.pt").exists():
        from preread.settings import Settings

        cases = training_cases(
            detector.data, detector.input, Settings().data_dir / "cache" / "cases", workers=2
        )
        train(
            detector,
            cases,
            on_step=(lambda it, _l, _r: progress("detector", it, detector.optim.iterations))
            if progress
            else None,
            # on a GPU, batches drawn by a process per spare core (the same batches: the same
            # weights); on the CPU the cores are the training's
            loader_workers=max(0, (os.cpu_count() or 1) - 1) if torch.cuda.is_available() else 0,
        )
        del cases
    det = detector_package(cfg, detector, layout)
    if cfg.classifier_from is not None:
        reuse_classifier(cfg, layout)
    else:
        samples = mine(cfg, det, layout, progress, datasets)
        classifier(cfg, samples, layout, progress)
        if not layout.validation.exists() and cfg.operating_point_from is not None:
            nodules = (
                calibration_nodules(cfg, det)
                if cfg.calibration is not None
                else samples[0][samples[1]]
            )
            layout.validation.write_text(json.dumps(kept_operating_point(cfg, layout, nodules)))
        del samples
    if not layout.validation.exists() and cfg.operating_point_from is not None:
        layout.validation.write_text(json.dumps(kept_operating_point(cfg, layout)))
    if not layout.validation.exists():
        assert cfg.validation is not None
        probe = staged_package(
            det,
            layout,
            cfg,
            threshold=1e-4,
            type_rule=TypeRuleSpec(solid_hu=SOLID_HU, solid_fraction=0.6, ggo_fraction=0.04),
            folder=layout.root / "probe-package",
        )
        found = validate(cfg, probe, progress)
        threshold = operating_point(found.scans, cfg.validation.max_fp_per_scan)
        rule = choose_type_rule(found.shares, cfg.type_rim_mm)
        at = summarize_validation(found.scans, threshold)
        layout.validation.write_text(
            json.dumps(
                {
                    "threshold": threshold,
                    "type_rule": rule.model_dump(),
                    "n_scans": len(found.scans),
                    "at_threshold": at,
                    "shares": found.shares,
                    "scans": [asdict(s) for s in found.scans],
                },
                indent=1,
            )
        )
    chosen = json.loads(layout.validation.read_text())
    if not (layout.package / "model.yaml").exists():
        staged_package(
            det,
            layout,
            cfg,
            threshold=float(chosen["threshold"]),
            type_rule=TypeRuleSpec.model_validate(chosen["type_rule"]),
            folder=layout.package,
            extra={
                **(
                    {"validation_seeds": [cfg.validation.seed, cfg.validation.count]}
                    if cfg.validation
                    else {}
                ),
                **classifier_provenance(cfg, datasets),
                **detector_provenance(cfg),
                "operating_point": {"classifier_threshold": chosen["threshold"]}
                | (
                    {"chosen_for_max_fp_per_scan": cfg.validation.max_fp_per_scan}
                    if cfg.validation
                    else {"kept_from": chosen["kept_from"], "matched": chosen.get("matched")}
                ),
            },
        )
    if not (layout.package / "model.yaml").exists():
        raise TrainingError(f"{layout.package}: the package was not written")
    return layout.package
