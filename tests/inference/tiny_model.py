"""A tiny ONNX "nodule" model and its package, built without torch, for the inference tests.

The network is one 1×1×1 Conv3d (opset 18): ``logits[1] = a * (x - t)``, ``logits[0] = -logits[1]``
for the windowed input ``x``; so the nodule probability ``sigmoid(2a(x - t))`` is a smooth
threshold at ``x = t`` (HU = window_min + t × width). Input "image" ``[N, 1, D, H, W]`` and output
"logits" ``[N, 2, D, H, W]`` have dynamic N, D, H, W like the exported MONAI UNet.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.card import (
    InferenceSpec,
    InputSpec,
    IntensityWindow,
    Label,
    ModelCard,
    OnnxSpec,
    SeriesRules,
    Thresholds,
    TrainingInfo,
)
from inference.package import sha256_file

SLOPE = 20.0
THRESHOLD = 0.4  # windowed; HU -440 with the window below
WINDOW = (-1000.0, 400.0)


def write_tiny_onnx(path: Path, a: float = SLOPE, t: float = THRESHOLD) -> None:
    """Write the 1×1×1-conv threshold network to ``path``."""
    weight = np.array([-a, a], dtype=np.float32).reshape(2, 1, 1, 1, 1)
    bias = np.array([a * t, -a * t], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[1, 1, 1])],
        "tiny_nodule",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, "D", "H", "W"])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def tiny_card(sha256: str, *, model_id: str = "tiny-nodule", version: str = "1.0.0") -> ModelCard:
    """A valid card for the tiny model."""
    return ModelCard(
        id=model_id,
        version=version,
        name="Tiny threshold nodule model (tests)",
        description="A 1x1x1 convolution that thresholds the windowed CT; for tests only.",
        intended_use="Software tests of the serving pipeline; not for clinical use.",
        series_rules=SeriesRules(
            min_slices=20,
            max_slice_thickness_mm=2.5,
            description_include=["(?i)chest|thorax|lung"],
            description_exclude=["(?i)scout|localizer"],
        ),
        input=InputSpec(
            spacing_mm=(1.0, 1.0, 1.0),
            intensity=IntensityWindow(window_min_hu=WINDOW[0], window_max_hu=WINDOW[1]),
        ),
        inference=InferenceSpec(roi_size_vox=(32, 32, 32), overlap=0.25, batch_size=2),
        labels=[
            Label(
                value=1,
                name="Nodule",
                snomed_code="27925004",
                snomed_meaning="Nodule",
                category_code="49755003",
                category_meaning="Morphologically Altered Structure",
                finding_site_code="39607008",
                finding_site_meaning="Lung",
            )
        ],
        thresholds=Thresholds(probability=0.5, min_volume_mm3=10.0),
        onnx=OnnxSpec(sha256=sha256, opset=18, max_abs_diff_vs_torch=0.0),
        training=TrainingInfo(framework="onnx.helper", network="Conv1x1x1", seed=0),
        metrics={"dice": 1.0},
        created=dt.date(2026, 1, 1),
        authors=["PreRead tests"],
    )


def write_tiny_package(
    folder: Path, *, model_id: str = "tiny-nodule", version: str = "1.0.0"
) -> Path:
    """Write ``model.onnx``, ``model.yaml`` and ``evaluation.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_onnx(folder / "model.onnx")
    card = tiny_card(sha256_file(folder / "model.onnx"), model_id=model_id, version=version)
    card.to_yaml(folder / "model.yaml")
    (folder / "evaluation.json").write_text(json.dumps({"dice": 1.0, "cases": 0}))
    return folder


def write_tiny_classifier(path: Path, a: float = 40.0, t: float = 0.45) -> None:
    """A candidate classifier without torch: ``logit = a · (mean of the fine channel's central
    8³ − t)``, input "patches" ``[N, 2, 32, 32, 32]``, output "logits" ``[N, 1]``.

    A solid nodule of ≥ 8 mm fills the centre (windowed ≈ 0.7); a vessel crossing the centre
    fills a small part of it (mean well below ``t``)."""
    starts = numpy_helper.from_array(np.array([0, 12, 12, 12], dtype=np.int64), "starts")
    ends = numpy_helper.from_array(np.array([1, 20, 20, 20], dtype=np.int64), "ends")
    axes = numpy_helper.from_array(np.array([1, 2, 3, 4], dtype=np.int64), "axes")
    mean_axes = numpy_helper.from_array(np.array([2, 3, 4], dtype=np.int64), "mean_axes")
    scale = numpy_helper.from_array(np.array(a, dtype=np.float32), "scale")
    shift = numpy_helper.from_array(np.array(-a * t, dtype=np.float32), "shift")
    graph = helper.make_graph(
        [
            helper.make_node("Slice", ["patches", "starts", "ends", "axes"], ["centre"]),
            helper.make_node("ReduceMean", ["centre", "mean_axes"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "shift"], ["logits"]),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["N", 2, 32, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1])],
        [starts, ends, axes, mean_axes, scale, shift],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_tiny_staged_package(folder: Path, *, version: str = "2.0.0") -> Path:
    """The tiny detector plus the tiny classifier as a staged ``lung-nodule`` package."""
    from inference.card import ClassifierStage, PipelineSpec, TypeRuleSpec

    write_tiny_package(folder, version=version)
    write_tiny_classifier(folder / "fpr.onnx")
    card = ModelCard.from_yaml(folder / "model.yaml")
    card = card.model_copy(
        update={
            "pipeline": PipelineSpec(
                postprocess="lung-nodule",
                lung_mask=True,
                candidate_probability=0.3,
                type_rule=TypeRuleSpec(solid_hu=-300.0, solid_fraction=0.6, ggo_fraction=0.04),
            ),
            "stages": [
                ClassifierStage(
                    name="fpr",
                    onnx=OnnxSpec(
                        file="fpr.onnx",
                        sha256=sha256_file(folder / "fpr.onnx"),
                        opset=18,
                        input_name="patches",
                        output_name="logits",
                        max_abs_diff_vs_torch=0.0,
                    ),
                    threshold=0.5,
                )
            ],
        }
    )
    card.to_yaml(folder / "model.yaml")
    return folder
