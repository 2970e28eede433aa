"""Publish a trained run as a model package (``preread models publish RUN_DIR``).

Steps, all into a staging folder that is moved into place only when everything passed (a failed
publish never leaves a half-written package in the registry):

1. export ``model.onnx`` (one file) and check parity with torch on several input shapes;
2. write the card (``model.yaml``) with the sha256 of ``model.onnx``;
3. evaluate the package through the serving path on held-out phantoms (seeds disjoint from
   training) → ``evaluation.json``, ``evaluation.md`` and ``froc.png``; headline metrics go
   into the card;
4. move the folder to ``<models_dir>/<id>/<version>/`` and load it back through the registry.

``weights.pt`` (the torch state dict) is kept beside the ONNX file for fine-tuning and for the
torch-vs-ONNX benchmark; serving never reads it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import torch

from inference.card import (
    InferenceSpec,
    Label,
    ModelCard,
    OnnxSpec,
    SeriesRules,
    Thresholds,
    TrainingInfo,
)
from inference.package import ModelPackage
from inference.predict import Predictor
from inference.registry import Registry
from training.config import TrainConfig
from training.data import input_spec
from training.errors import TrainingError
from training.evaluate import evaluate, phantom_scans
from training.export import OPSET, check_parity, export_onnx
from training.provenance import DatasetProvenance
from training.report import write_report
from training.train import METRICS, load_weights

PARITY_SHAPES: list[tuple[int, ...]] = [(1, 1, 64, 64, 64), (2, 1, 96, 96, 96), (1, 1, 48, 80, 112)]
NODULE_LABEL = Label(
    value=1,
    name="Nodule",
    snomed_code="27925004",
    snomed_meaning="Nodule",
    category_code="49755003",
    category_meaning="Morphologically abnormal structure",
    finding_site_code="39607008",
    finding_site_meaning="Lung structure",
)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_card(
    cfg: TrainConfig,
    onnx_sha256: str,
    max_abs_diff: float,
    metrics: dict[str, float],
    eval_seeds: tuple[int, int],
    extra: dict[str, Any],
    provenance: DatasetProvenance | None = None,
) -> ModelCard:
    """The model card for a trained config (preprocessing numbers come from the config, once)."""
    train_seeds = (
        list(range(cfg.data.phantoms.seed, cfg.data.phantoms.seed + cfg.data.phantoms.count))
        if cfg.data.phantoms
        else None
    )
    from training.phantoms import GENERATOR_VERSION

    return ModelCard(
        id=cfg.model.id,
        version=cfg.model.version,
        name=cfg.model.name,
        description=cfg.model.description,
        intended_use=(
            "AI pre-read (preliminary, AI-generated) of lung nodules on chest CT, shown to a "
            "radiologist beside the images; never a diagnosis on its own."
        ),
        series_rules=SeriesRules(
            min_slices=50,
            max_slice_thickness_mm=2.5,
            min_slice_thickness_mm=0.5,
            description_exclude=["scout", "topogram", "localizer", "surview"],
        ),
        input=input_spec(cfg.input),
        inference=InferenceSpec(roi_size_vox=(96, 96, 96), overlap=0.25, batch_size=2),
        labels=[NODULE_LABEL],
        thresholds=Thresholds(
            probability=cfg.postprocess.probability, min_volume_mm3=cfg.postprocess.min_volume_mm3
        ),
        onnx=OnnxSpec(sha256=onnx_sha256, opset=OPSET, max_abs_diff_vs_torch=max_abs_diff),
        training=TrainingInfo(
            framework=f"MONAI {_version('monai')} / torch {torch.__version__}",
            network=(
                f"monai.networks.nets.UNet(channels={list(cfg.network.channels)}, "
                f"strides={list(cfg.network.strides)}, num_res_units={cfg.network.num_res_units}, "
                f"norm={cfg.network.norm!r})"
            ),
            generator_version=GENERATOR_VERSION if cfg.data.source == "phantoms" else None,
            train_seeds=train_seeds,
            test_seeds=list(range(eval_seeds[0], eval_seeds[0] + eval_seeds[1])),
            annotation_source=(
                "PreRead synthetic chest-CT phantoms (training.phantoms)"
                if cfg.data.source == "phantoms"
                else "radiologists' signed reviews: dataset(s) "
                + ", ".join(cfg.data.datasets or ())
                + (" mixed with phantoms" if cfg.data.phantoms else "")
                if cfg.data.source == "datasets"
                else f"DICOM SEG annotations in {cfg.data.folder}"
            ),
            data_authorization=provenance.authorization() if provenance else None,
            grants=list(provenance.grants) if provenance else [],
            iterations=cfg.optim.iterations,
            patch_size=cfg.optim.patch_size,
            batch_size=cfg.optim.batch_size,
            learning_rate=cfg.optim.learning_rate,
            loss="monai.losses.DiceCELoss(softmax)",
            optimizer="AdamW + OneCycleLR",
            seed=cfg.optim.seed,
            extra=extra,
        ),
        metrics=metrics,
        created=date.today(),
        authors=["PreRead model team"],
    )


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


def _headline(doc: dict[str, Any]) -> dict[str, float]:
    def pick(v: Any) -> float | None:
        return float(v) if isinstance(v, int | float) else None

    values = {
        "sensitivity_ge6mm": pick(doc["sensitivity_ge6mm"]),
        "fp_per_scan": pick(doc["fp_per_scan"]),
        "n_scans": pick(doc["n_scans"]),
        "froc_cpm_ge6mm": pick(doc["froc_ge6mm"]["cpm"]),
        "dice_median_ge6mm": pick(doc["dice_ge6mm"]["median"]),
        "diameter_mae_mm_ge6mm": pick(doc["diameter_error_mm_ge6mm"]["mae"]),
        "volume_median_abs_rel_error_ge6mm": pick(doc["volume_error_rel_ge6mm"]["median_abs"]),
    }
    return {k: v for k, v in values.items() if v is not None}


def publish(
    run_dir: Path,
    models_dir: Path,
    *,
    eval_seed: int = 900_000,
    eval_count: int = 50,
    eval_matrix: int = 512,
    force: bool = False,
    progress: Callable[[], None] | None = None,
) -> Path:
    """Export, check, evaluate and register the run's model; returns the package folder."""
    net, cfg = load_weights(run_dir)
    if cfg.data.phantoms is not None:
        train = range(cfg.data.phantoms.seed, cfg.data.phantoms.seed + cfg.data.phantoms.count)
        if set(train) & set(range(eval_seed, eval_seed + eval_count)):
            raise TrainingError(
                f"held-out seeds {eval_seed}..{eval_seed + eval_count - 1} overlap the training "
                f"seeds {train.start}..{train.stop - 1}"
            )
    final = models_dir / cfg.model.id / cfg.model.version
    if final.exists() and not force:
        raise TrainingError(f"{final} exists; publish a new version or pass --force")
    staging = models_dir / cfg.model.id / f".staging-{cfg.model.version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        onnx_path = staging / "model.onnx"
        export_onnx(net, onnx_path)
        parity = check_parity(net, onnx_path, PARITY_SHAPES)
        torch.save(net.state_dict(), staging / "weights.pt")
        extra: dict[str, Any] = {
            "parity_shapes": [list(s) for s in parity.shapes],
            "parity_max_abs_diff_per_shape": parity.per_shape,
            "weights_pt_sha256": sha256_file(staging / "weights.pt"),
            "training_config_digest": cfg.digest(),
            "network_config": cfg.network.model_dump(mode="json"),
            "training_log": _training_summary(run_dir),
        }
        provenance = DatasetProvenance.read(run_dir) or (
            DatasetProvenance("phantoms") if cfg.data.source == "phantoms" else None
        )
        if provenance is not None and provenance.datasets:
            extra["datasets"] = list(provenance.datasets)
        card = build_card(
            cfg,
            sha256_file(onnx_path),
            parity.max_abs_diff,
            {},
            (eval_seed, eval_count),
            extra,
            provenance,
        )
        card.to_yaml(staging / "model.yaml")
        (staging / "evaluation.json").write_text("{}")
        package = ModelPackage.load(staging)
        predictor = Predictor(package, providers=["CPUExecutionProvider"], policy="fail")
        doc = evaluate(
            predictor,
            phantom_scans(eval_seed, eval_count, matrix=eval_matrix),
            meta={
                "model": {"id": card.id, "version": card.version, "onnx_sha256": card.onnx.sha256},
                "data": {
                    "source": "phantoms",
                    "seed": eval_seed,
                    "count": eval_count,
                    "matrix": eval_matrix,
                    "generator_version": card.training.generator_version,
                },
            },
            progress=(lambda _s: progress()) if progress else None,
        )
        (staging / "evaluation.json").write_text(json.dumps(doc, indent=1))
        card = card.model_copy(update={"metrics": _headline(doc)})
        card.to_yaml(staging / "model.yaml")
        write_report(doc, card, staging)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Registry(models_dir).find(cfg.model.id, cfg.model.version).path


def _training_summary(run_dir: Path) -> dict[str, Any]:
    log = run_dir / METRICS
    if not log.exists():
        return {}
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    tail = rows[-50:]
    return {
        "iterations": rows[-1]["iteration"],
        "final_loss_mean_last50": sum(r["loss"] for r in tail) / len(tail),
        "first_loss": rows[0]["loss"],
        "patches_per_s": rows[-1]["patches_per_s"],
    }
