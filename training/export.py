"""Export a trained network to ONNX (one file, dynamic batch and spatial axes) and check parity.

Uses torch's default (dynamo) exporter with ``external_data=False`` so the weights stay inside
``model.onnx`` (ENVIRONMENT.md: otherwise they land in a separate ``.onnx.data`` file).
Parity is checked with ONNX Runtime on the CPU against torch eager on several input shapes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from training.errors import ExportError

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ParityResult:
    shapes: list[tuple[int, ...]]
    max_abs_diff: float
    per_shape: list[float]


def export_onnx(net: torch.nn.Module, path: Path, *, example_size: int = 64) -> None:
    """Write ``net`` as a single-file ONNX model with dynamic batch and spatial axes."""
    net = net.eval().cpu()
    example = torch.zeros(1, 1, example_size, example_size, example_size)
    dims = {
        0: torch.export.Dim("batch", min=1, max=256),
        2: torch.export.Dim.DYNAMIC,
        3: torch.export.Dim.DYNAMIC,
        4: torch.export.Dim.DYNAMIC,
    }
    arg_name = _first_arg(net)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (example,),
                str(path),
                dynamo=True,
                external_data=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={arg_name: dims},
                opset_version=OPSET,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; report them as one
        raise ExportError(f"ONNX export to {path} failed: {exc}") from exc
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    stray = list(path.parent.glob(path.name + ".data"))
    if stray:
        raise ExportError(
            f"{path}: exporter wrote external weights {stray[0].name}; expected one file"
        )


def _first_arg(net: torch.nn.Module) -> str:
    import inspect

    return next(iter(inspect.signature(net.forward).parameters))


def check_parity(
    net: torch.nn.Module,
    path: Path,
    shapes: list[tuple[int, ...]],
    *,
    tolerance: float = 1e-3,
    seed: int = 0,
) -> ParityResult:
    """Compare torch eager and ONNX Runtime (CPU) outputs on random inputs of several shapes."""
    net = net.eval().cpu()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    diffs: list[float] = []
    for shape in shapes:
        x = torch.rand(*shape, generator=gen)
        with torch.no_grad():
            ref = net(x).numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"{path}: output shape {got.shape} != torch {ref.shape} for {shape}")
        diffs.append(float(np.abs(got - ref).max()))
    worst = max(diffs)
    if not worst <= tolerance:
        raise ExportError(
            f"{path}: ONNX Runtime differs from torch by {worst:.3g} (> {tolerance}) "
            f"on shapes {shapes}"
        )
    return ParityResult(shapes=shapes, max_abs_diff=worst, per_shape=diffs)
