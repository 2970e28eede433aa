"""The on-device sliding window (inference.device_window), run here on the CPU provider.

The same ONNX graphs run on CUDA in production; on the CPU they must give the numpy path's
decision: the same mask, and probabilities equal to ~1e-5 on it (in practice ~1e-7: the sums
are the numpy path's, float32 operation for operation; sigmoid/softmax implementations differ
in the last bits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from inference.blend_graphs import GRAPHS_DIR, OPSET, build_all
from inference.device_window import Decision, DeviceWindow, decide
from inference.errors import ProviderError
from inference.package import ModelPackage
from inference.predict import Predictor, foreground_probability
from inference.session import ModelSession, SessionCache, open_session
from inference.sliding_window import grow_region, window_slices
from tests.inference.phantoms import geometry, spheres
from tests.inference.test_sliding_window import full_volume
from training.phantoms import generate_phantom

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "lung-nodule" / "1.0.0"
CUDA = "CUDAExecutionProvider"

# Every op of the blend graphs, with the evidence that ONNX Runtime's CUDA provider has a kernel
# for it at opset 18 (docs/OperatorKernels.md, "Operators implemented by CUDAExecutionProvider";
# ScatterND reduction="add": onnxruntime/core/providers/cuda/tensor/scatter_nd.cc, atomic add).
# A new op in inference/blend_graphs.py must be checked there and added here.
CUDA_OPS_AT_OPSET_18 = {
    "Add",  # 14+
    "Cast",  # 13-18 (bool -> uint8)
    "Compress",  # 11+ (T1 = bool)
    "Concat",  # 13+
    "ConstantOfShape",  # 9+
    "Div",  # 14+
    "Gather",  # 13+ (Tind = int64)
    "GreaterOrEqual",  # 16+ (float -> bool)
    "Reshape",  # 14-18
    "ScatterND",  # 18+ (reduction none/add on CUDA)
    "Sigmoid",  # 13+
    "Slice",  # 13+
    "Softmax",  # 13+
    "Squeeze",  # 13-20
    "Sub",  # 14+
    "Transpose",  # 13-20
    "Unsqueeze",  # 13-20
    "Mul",  # 14+
}


def test_shipped_graphs_are_what_the_generator_builds() -> None:
    built = build_all()
    shipped = {p.stem: p.read_bytes() for p in GRAPHS_DIR.glob("*.onnx")}
    assert set(shipped) == set(built)
    for name, data in built.items():
        assert shipped[name] == data, f"{name}.onnx differs: run python -m inference.blend_graphs"


def test_graphs_use_only_ops_with_cuda_kernels() -> None:
    for path in GRAPHS_DIR.glob("*.onnx"):
        model = onnx.load(str(path))
        assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
        ops = {node.op_type for node in model.graph.node}
        assert ops <= CUDA_OPS_AT_OPSET_18, f"{path.name}: {ops - CUDA_OPS_AT_OPSET_18}"


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_cuda_graphs_on_a_cpu_onnxruntime_are_an_error() -> None:
    with pytest.raises(ProviderError, match="needs CUDAExecutionProvider"):
        DeviceWindow("cuda")


def test_decision_rebuilds_the_probability_map() -> None:
    mask = np.zeros((2, 3, 4), bool)
    mask[0, 1, 2] = mask[1, 2, 3] = True
    d = Decision(mask, np.array([0.6, 0.9], np.float32))
    p = d.probability()
    assert p.dtype == np.float32 and p[0, 1, 2] == np.float32(0.6) and p[1, 2, 3] == np.float32(0.9)
    assert p.sum() == pytest.approx(1.5)


def _numpy_decision(
    image: npt.NDArray[np.float32],
    model: Any,
    roi: tuple[int, int, int],
    threshold: float,
    channel: int,
    **kwargs: Any,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
    logits = full_volume(image, model, roi, 0.25, 2, **kwargs)
    probability = foreground_probability(logits, channel)
    mask = probability >= np.float32(threshold)
    return mask, probability


def _assert_same(
    decision: Decision, mask: npt.NDArray[np.bool_], probability: npt.NDArray[np.float32]
) -> None:
    assert mask.any() and (~mask).any()  # a real decision, not all one way
    np.testing.assert_array_equal(decision.mask, mask)
    np.testing.assert_allclose(decision.values, probability[mask], rtol=0, atol=1e-5)
    assert decision.values.dtype == np.float32


@pytest.mark.parametrize(
    ("shape", "mode"),
    [
        ((40, 45, 50), "gaussian"),  # 2×2×2 windows, the last batch filled up
        ((20, 70, 33), "constant"),  # depth below the window: padded, then cropped back
        ((32, 32, 32), "gaussian"),  # exactly one window
    ],
)
def test_device_window_equals_the_numpy_window(
    package: ModelPackage, shape: tuple[int, int, int], mode: Any
) -> None:
    rng = np.random.default_rng(sum(shape))
    image = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    model = open_session(package)
    roi = package.card.inference.roi_size_vox
    window = DeviceWindow("cpu")
    decision = window.run(image, model, roi, 0.25, 2, mode, threshold=0.5, channel=1)
    mask, probability = _numpy_decision(image, model, roi, 0.5, 1, mode=mode)
    _assert_same(decision, mask, probability)
    assert decision.full is None
    expected = np.where(mask, probability, np.float32(0))
    np.testing.assert_allclose(decision.probability(), expected, rtol=0, atol=1e-5)
    full = window.run(
        image, model, roi, 0.25, 2, mode, threshold=0.5, channel=1, full_probability=True
    )
    _assert_same(full, mask, probability)
    assert full.full is not None and full.full.shape == shape
    np.testing.assert_allclose(full.probability(), probability, rtol=0, atol=1e-5)


def test_device_window_in_a_region_equals_the_numpy_window(package: ModelPackage) -> None:
    rng = np.random.default_rng(5)
    image = rng.uniform(0.0, 1.0, (40, 60, 60)).astype(np.float32)
    model = open_session(package)
    roi = package.card.inference.roi_size_vox
    region = (slice(5, 30), slice(10, 25), slice(20, 58))  # grown to 32 along two axes
    background = np.array([20.0, -20.0], np.float32).reshape(2, 1, 1, 1)
    bg = float(foreground_probability(background, 1).item())
    cases = [(0.5, False), (0.5, True), (0.0, False)]  # 0.0: the background is foreground too
    for threshold, full in cases:
        decision = decide(
            DeviceWindow("cpu"),
            image,
            model,
            roi,
            0.25,
            2,
            threshold=threshold,
            channel=1,
            region=region,
            background_probability=bg,
            full_probability=full,
        )
        mask, probability = _numpy_decision(image, model, roi, threshold, 1, region=region)
        assert (decision.full is not None) == full
        if full:
            np.testing.assert_allclose(decision.probability(), probability, rtol=0, atol=1e-5)
        if threshold == 0.0:
            assert mask.all()
            np.testing.assert_array_equal(decision.mask, mask)
            np.testing.assert_allclose(decision.values, probability[mask], rtol=0, atol=1e-5)
        else:
            _assert_same(decision, mask, probability)


def test_predictor_full_probability_on_the_device(package: ModelPackage) -> None:
    g = geometry((30, 80, 80), (2.0, 1.0, 1.0))
    mid = g.index_to_lps((np.array(g.shape) - 1) / 2.0)
    volume = spheres(g, [tuple(mid + np.array([-15.0, 0.0, 0.0]))], 6.0)
    host = Predictor(package, sessions=SessionCache(), device_window="off").predict(volume)
    device = Predictor(
        package, sessions=SessionCache(), device_window="on", full_probability=True
    ).predict(volume)
    np.testing.assert_array_equal(device.labels, host.labels)
    np.testing.assert_allclose(device.probability, host.probability, rtol=0, atol=1e-5)
    assert (host.probability < 0.5).any() and (host.probability[host.probability < 0.5] > 0).any()


class _ThreeChannelModel:
    """A 1×1×1 convolution with 3 output channels (for the softmax graph), on the CPU."""

    device_type = "cpu"
    device_id = 0
    num_channels = 3

    def __init__(self, path: Path) -> None:
        weight = np.array([-10.0, 10.0, 4.0], np.float32).reshape(3, 1, 1, 1, 1)
        bias = np.array([4.0, -4.0, -1.0], np.float32)
        graph = helper.make_graph(
            [helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[1, 1, 1])],
            "three",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, "D", "H", "W"])],
            [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        onnx.save(model, str(path))
        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(self._session.run(None, {"image": x})[0])

    def run_bound(self, x: Any, y: Any) -> None:
        binding = self._session.io_binding()
        binding.bind_ortvalue_input("image", x)
        binding.bind_ortvalue_output("logits", y)
        self._session.run_with_iobinding(binding)


@pytest.mark.parametrize("channel", [1, 2])
def test_softmax_decision_for_more_than_two_channels(tmp_path: Path, channel: int) -> None:
    model = _ThreeChannelModel(tmp_path / "three.onnx")
    image = np.random.default_rng(channel).uniform(0.0, 1.0, (30, 40, 50)).astype(np.float32)
    roi = (16, 24, 24)
    decision = DeviceWindow("cpu").run(
        image, cast(ModelSession, model), roi, 0.25, 2, threshold=0.3, channel=channel
    )
    mask, probability = _numpy_decision(image, model, roi, 0.3, channel)
    _assert_same(decision, mask, probability)


@pytest.fixture(scope="module")
def phantom_predictions() -> tuple[Any, Any, int]:
    phantom = generate_phantom(7, matrix=128, max_slices=48)
    package = ModelPackage.load(SHIPPED)
    host = Predictor(package, sessions=SessionCache(), device_window="off")
    device = Predictor(package, sessions=SessionCache(), device_window="on")
    assert not host.on_device and device.on_device
    prediction = host.predict(phantom.volume)
    # how many windows ran: the region (the body box) grown to at least one window
    assert prediction.region is not None
    roi = package.card.inference.roi_size_vox
    box = grow_region(prediction.region, roi, prediction.model_geometry.shape)
    windows = len(window_slices([s.stop - s.start for s in box], roi, 0.25))
    return prediction, device.predict(phantom.volume), windows


def test_shipped_model_device_window_equals_numpy_on_a_phantom(
    phantom_predictions: tuple[Any, Any, int],
) -> None:
    host, device, windows = phantom_predictions
    assert windows > 2  # several windows, overlapping
    assert len(host.findings) >= 2  # the phantom's nodules (and the model's false positives)
    np.testing.assert_array_equal(device.labels, host.labels)
    assert len(device.findings) == len(host.findings)
    for a, b in zip(host.findings, device.findings, strict=True):
        assert b.probability == pytest.approx(a.probability, abs=1e-5)
        assert b == type(a)(**{**a.__dict__, "probability": b.probability})
    mask = host.probability >= 0.5
    assert mask.sum() > 100
    np.testing.assert_array_equal(device.probability >= 0.5, mask)
    np.testing.assert_allclose(device.probability[mask], host.probability[mask], atol=1e-5)
    assert not device.probability[~mask].any()  # below the threshold: not copied back
    assert device.probability.shape == host.probability.shape
    assert device.probability.dtype == np.float32 and device.labels.dtype == host.labels.dtype
    assert device.region == host.region and device.model_geometry == host.model_geometry
