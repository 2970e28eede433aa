"""Build the small ONNX graphs of the on-device sliding window (:mod:`inference.device_window`).

The serving install has no ``onnx`` package, so these graphs ship prebuilt as package data in
``inference/graphs/`` (a few hundred bytes each); this module (which needs ``onnx``, the training
install has it) regenerates them::

    .venv/bin/python -m inference.blend_graphs          # rewrite inference/graphs/*.onnx
    .venv/bin/python -m inference.blend_graphs --check  # exit 1 if a shipped file differs

``tests/inference/test_blend_graphs.py`` checks that the shipped files are what this module
builds. Every graph has dynamic shapes (any volume, window, batch and channel count) and uses
opset 18 operators with CUDA kernels in ONNX Runtime (docs/OperatorKernels.md, CUDA section):
Gather, Add, Reshape, Unsqueeze, Transpose, Mul, Concat, ScatterND (``reduction="add"``,
atomic adds in the CUDA kernel), ConstantOfShape, Slice, Div, Sub, Sigmoid, Softmax, Squeeze,
GreaterOrEqual, Cast, Compress.

Layout: the volume is flat, ``N = D·H·W`` voxels in C order; the accumulator is channels-last,
``acc[N, C + 1]`` = the weighted sum of each window channel and, in the last column, the sum of
the weights (MONAI's count map), so one ScatterND row update adds a voxel's C weighted logits
and its weight.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

GRAPHS_DIR = Path(__file__).resolve().parent / "graphs"
OPSET = 18
IR_VERSION = 8  # opset 18 needs IR >= 8; ONNX Runtime >= 1.14 reads it
INT64_MAX = 2**63 - 1

NAMES = (
    "blend_init",
    "blend_windows",
    "blend_accumulate",
    "blend_finish_sigmoid",
    "blend_finish_softmax",
)


def build_all() -> dict[str, bytes]:
    """Every graph, serialized: ``{name: bytes}`` (file ``<name>.onnx``)."""
    graphs = {
        "blend_init": _init(),
        "blend_windows": _windows(),
        "blend_accumulate": _accumulate(),
        "blend_finish_sigmoid": _finish(sigmoid=True),
        "blend_finish_softmax": _finish(sigmoid=False),
    }
    return {name: _serialize(name, graphs[name]) for name in NAMES}


def _serialize(name: str, graph: Any) -> bytes:
    from onnx import checker, helper

    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="preread.inference.blend_graphs",
        producer_version="1",
        ir_version=IR_VERSION,
    )
    model.doc_string = f"PreRead on-device sliding window: {name}"
    checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString(deterministic=True)
    return data


def _i64(name: str, values: list[int]) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _init() -> Any:
    """``shape`` [2] int64 (host) → ``acc`` float32 zeros of that shape."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "ConstantOfShape",
        ["shape"],
        ["acc"],
        value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
    )
    return helper.make_graph(
        [node],
        "blend_init",
        [helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("acc", TensorProto.FLOAT, ["n", "k"])],
    )


def _windows() -> Any:
    """Cut a batch of windows out of the flat volume.

    ``image`` [N] float32, ``base`` [d, h, w] int64 (flat offset of each window voxel from the
    window's first voxel), ``corners`` [B] int64 (flat index of each window's first voxel) →
    ``x`` [B, 1, d, h, w] float32.
    """
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Reshape", ["corners", "shape_b111"], ["corners4"]),
        helper.make_node("Add", ["corners4", "base"], ["flat"]),
        helper.make_node("Gather", ["image", "flat"], ["voxels"], axis=0),
        helper.make_node("Unsqueeze", ["voxels", "axis1"], ["x"]),
    ]
    return helper.make_graph(
        nodes,
        "blend_windows",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("base", TensorProto.INT64, ["d", "h", "w"]),
            helper.make_tensor_value_info("corners", TensorProto.INT64, ["b"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 1, "d", "h", "w"])],
        initializer=[_i64("shape_b111", [-1, 1, 1, 1]), _i64("axis1", [1])],
    )


def _accumulate() -> Any:
    """Add one window of a batch into the accumulator.

    ``acc`` [N, C+1], ``logits`` [B, C, d, h, w], ``index`` [] int64 (the window in the batch),
    ``weight`` [d, h, w, 1] (importance map), ``base`` [d, h, w] int64, ``corner`` [] int64 →
    ``acc_out`` = ``acc`` with rows ``corner + base`` increased by ``[logits·weight, weight]``.
    Bind ``acc_out`` to the same buffer as ``acc``: ONNX Runtime's ScatterND then skips its
    copy of the input (it copies only when input and output differ), so the work is O(window).
    """
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Gather", ["logits", "index"], ["window"], axis=0),
        helper.make_node("Transpose", ["window"], ["window_last"], perm=[1, 2, 3, 0]),
        helper.make_node("Mul", ["window_last", "weight"], ["weighted"]),
        helper.make_node("Concat", ["weighted", "weight"], ["updates"], axis=3),
        helper.make_node("Add", ["base", "corner"], ["flat"]),
        helper.make_node("Unsqueeze", ["flat", "axis3"], ["rows"]),
        helper.make_node("ScatterND", ["acc", "rows", "updates"], ["acc_out"], reduction="add"),
    ]
    return helper.make_graph(
        nodes,
        "blend_accumulate",
        [
            helper.make_tensor_value_info("acc", TensorProto.FLOAT, ["n", "k"]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "c", "d", "h", "w"]),
            helper.make_tensor_value_info("index", TensorProto.INT64, []),
            helper.make_tensor_value_info("weight", TensorProto.FLOAT, ["d", "h", "w", 1]),
            helper.make_tensor_value_info("base", TensorProto.INT64, ["d", "h", "w"]),
            helper.make_tensor_value_info("corner", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["n", "k"])],
        initializer=[_i64("axis3", [3])],
    )


def _finish(*, sigmoid: bool) -> Any:
    """Mean logits → foreground probability → decision, keeping only what the host needs.

    ``acc`` [N, C+1], ``threshold`` [] float32 (and, for softmax, ``channel`` [] int64) →
    ``mask`` [N] uint8 (probability >= threshold) and ``values`` [K] float32, the probabilities
    of the K mask voxels in C order; ``probability`` [N] float32, the whole map, is copied back
    only when its output is bound (evaluation). Sigmoid variant (C = 2, foreground channel 1):
    ``sigmoid(l1 - l0)``, as :func:`inference.predict.foreground_probability` computes it;
    softmax variant: ``softmax(l)[channel]``.
    """
    from onnx import TensorProto, helper

    name = "blend_finish_sigmoid" if sigmoid else "blend_finish_softmax"
    nodes = [
        helper.make_node("Slice", ["acc", "zero", "minus1", "axis1"], ["sums"]),
        helper.make_node("Slice", ["acc", "minus1", "end", "axis1"], ["count"]),
        helper.make_node("Div", ["sums", "count"], ["mean"]),
    ]
    inputs = [
        helper.make_tensor_value_info("acc", TensorProto.FLOAT, ["n", "k"]),
        helper.make_tensor_value_info("threshold", TensorProto.FLOAT, []),
    ]
    initializers = [
        _i64("zero", [0]),
        _i64("minus1", [-1]),
        _i64("end", [INT64_MAX]),
        _i64("axis1", [1]),
    ]
    if sigmoid:
        initializers += [_i64("one", [1]), _i64("two", [2])]
        nodes += [
            helper.make_node("Slice", ["mean", "zero", "one", "axis1"], ["l0"]),
            helper.make_node("Slice", ["mean", "one", "two", "axis1"], ["l1"]),
            helper.make_node("Sub", ["l1", "l0"], ["diff"]),
            helper.make_node("Sigmoid", ["diff"], ["p2"]),
            helper.make_node("Squeeze", ["p2", "axis1"], ["p"]),
        ]
    else:
        inputs.append(helper.make_tensor_value_info("channel", TensorProto.INT64, []))
        nodes += [
            helper.make_node("Softmax", ["mean"], ["soft"], axis=1),
            helper.make_node("Gather", ["soft", "channel"], ["p"], axis=1),
        ]
    nodes += [
        helper.make_node("GreaterOrEqual", ["p", "threshold"], ["hit"]),
        helper.make_node("Cast", ["hit"], ["mask"], to=TensorProto.UINT8),
        helper.make_node("Compress", ["p", "hit"], ["values"], axis=0),
    ]
    return helper.make_graph(
        nodes,
        name,
        inputs,
        [
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["n"]),
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["m"]),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n"]),
        ],
        initializer=initializers,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare, write nothing")
    ap.add_argument("--out", type=Path, default=GRAPHS_DIR)
    args = ap.parse_args(argv)
    differs = []
    for name, data in build_all().items():
        path = args.out / f"{name}.onnx"
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                differs.append(str(path))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"wrote {path} ({len(data)} bytes)")
    if differs:
        print("differ from the generator: " + ", ".join(differs), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
