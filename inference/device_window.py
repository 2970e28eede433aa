"""Sliding-window inference that stays on the model's device (GPU) until the decision is made.

The numpy path (:mod:`inference.sliding_window`) copies every window's logits to the host and
blends them there; for a GPU that is ``C × window`` floats over PCIe per window plus the whole
``[C, D, H, W]`` blend in host memory. Here everything between the image upload and the
decision runs in ONNX Runtime on the model's device, with I/O binding (``OrtValue`` buffers that
stay on the device between calls), through the small graphs of :mod:`inference.blend_graphs`:

1. ``blend_init``: the accumulator ``acc[N, C+1]`` (channels-last, last column = sum of the
   window weights, MONAI's count map) set to zero on the device.
2. per batch: ``blend_windows`` cuts the batch ``[B, 1, d, h, w]`` out of the uploaded volume
   (one Gather); the model runs on it (:meth:`~inference.session.ModelSession.run_bound`);
   ``blend_accumulate`` adds each window's ``logits × importance`` and ``importance`` at its
   offset (ScatterND ``reduction="add"``, output bound to the input buffer: O(window) work).
   Windows are added one at a time, in MONAI's window order, so the sums are the numpy path's.
3. ``blend_finish_*``: mean = sums / count, foreground probability (sigmoid of the logit
   difference for 2 channels, softmax otherwise), mask = probability >= threshold; only the mask
   (uint8, N bytes) and the K probabilities of the mask voxels (Compress) come back.

:class:`Decision` rebuilds a probability map from those: exact on the mask voxels, 0 elsewhere.
That is all :func:`inference.postprocess.find_nodules` reads (components of ``probability >=
threshold`` and each component's maximum), so findings and labels are those of the numpy path.
Values below the threshold are not copied back.

On the CPU provider the same graphs run on the host (``device_window="on"``, used by the tests):
the arithmetic is the numpy path's, float32 operation for operation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.errors import InferenceError, ProviderError
from inference.grid import Region
from inference.providers import CPU, CUDA
from inference.session import DeviceType, ModelSession, onnxruntime_module
from inference.sliding_window import BlendMode, grow_region, importance_map, window_slices

GRAPHS_DIR = Path(__file__).resolve().parent / "graphs"
GRAPHS = (
    "blend_init",
    "blend_windows",
    "blend_accumulate",
    "blend_finish_sigmoid",
    "blend_finish_softmax",
)


@dataclass(frozen=True)
class Decision:
    """The thresholded foreground of one volume, as copied back from the device.

    ``mask`` ``[D, H, W]`` bool (probability >= threshold); ``values`` ``[K]`` float32, the
    probabilities of the K mask voxels in C (row-major) order; ``full``, the whole probability
    map, only when it was asked for.
    """

    mask: npt.NDArray[np.bool_]
    values: npt.NDArray[np.float32]
    full: npt.NDArray[np.float32] | None = None

    def probability(self) -> npt.NDArray[np.float32]:
        """``[D, H, W]`` float32: ``full`` if copied back, else ``values`` on the mask voxels
        and 0 elsewhere."""
        if self.full is not None:
            return self.full
        out = np.zeros(self.mask.shape, dtype=np.float32)
        out[self.mask] = self.values
        return out


class DeviceWindow:
    """The blend graphs, loaded on one device: ``"cuda"`` (with ``device_id``) or ``"cpu"``.

    On CUDA, ONNX Runtime is told not to fall back to the CPU for any node
    (``session.disable_cpu_ep_fallback``): a graph node without a CUDA kernel is an error at
    load time, never a silent host round trip.

    Raises:
        ProviderError: the graphs cannot be placed on that device.
    """

    def __init__(self, device_type: DeviceType, device_id: int = 0) -> None:
        ort = onnxruntime_module()
        self.device_type: DeviceType = device_type
        self.device_id = device_id
        self._ort = ort
        options = ort.SessionOptions()
        if device_type == "cuda":
            if CUDA not in ort.get_available_providers():
                raise ProviderError(
                    f"the device sliding window needs {CUDA}; this onnxruntime offers only "
                    f"{', '.join(ort.get_available_providers())}"
                )
            providers: list[Any] = [(CUDA, {"device_id": str(device_id)})]
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            want = CUDA
        else:
            providers = [CPU]
            want = CPU
        self._sessions: dict[str, Any] = {}
        for name in GRAPHS:
            path = GRAPHS_DIR / f"{name}.onnx"
            try:
                session = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime's own, unexported exception types
                raise ProviderError(f"{path}: cannot run on {device_type}: {exc}") from exc
            if session.get_providers()[0] != want:
                raise ProviderError(
                    f"{path}: {want} was requested, ONNX Runtime runs it on "
                    f"{session.get_providers()[0]}"
                )
            self._sessions[name] = session

    def run(
        self,
        image: npt.NDArray[np.float32],
        model: ModelSession,
        roi_size: tuple[int, int, int],
        overlap: float,
        batch_size: int,
        mode: BlendMode = "gaussian",
        *,
        sigma_scale: float = 0.125,
        threshold: float,
        channel: int,
        full_probability: bool = False,
    ) -> Decision:
        """Blend ``model``'s windows over ``image`` ``[D, H, W]`` and threshold channel
        ``channel``'s probability: the same windows, weights and padding as
        :func:`inference.sliding_window.sliding_window_box` (whose arguments these are).
        ``full_probability`` also copies the whole probability map back (N floats).

        Every batch holds ``batch_size`` windows (the last one is filled up with copies of its
        last window, whose outputs are not used), so that TensorRT builds one engine shape.
        """
        if model.device_type != self.device_type or model.device_id != self.device_id:
            raise InferenceError(
                f"the model runs on {model.device_type}:{model.device_id}, the blend graphs on "
                f"{self.device_type}:{self.device_id}"
            )
        if image.ndim != 3:
            raise ValueError(f"image must be [D, H, W], got shape {image.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        shape = image.shape
        deficits = [max(r - n, 0) for r, n in zip(roi_size, shape, strict=True)]
        pads = [(d // 2, d - d // 2) for d in deficits]
        img = np.asarray(image, dtype=np.float32)
        if any(p != (0, 0) for p in pads):
            img = np.pad(img, pads, mode="constant", constant_values=0.0)
        size = (img.shape[0], img.shape[1], img.shape[2])
        slices = window_slices(size, roi_size, overlap)
        strides = np.array([size[1] * size[2], size[2], 1], dtype=np.int64)
        k, j, i = np.meshgrid(*(np.arange(r, dtype=np.int64) for r in roi_size), indexing="ij")
        base = np.ascontiguousarray(k * strides[0] + j * strides[1] + i)
        weight = importance_map(roi_size, mode, sigma_scale)[..., None]
        corners = np.array([[s.start for s in sl] for sl in slices], dtype=np.int64) @ strides
        channels = model.num_channels
        n = int(np.prod(size))

        d_image = self._upload(np.ascontiguousarray(img).reshape(-1))
        d_base = self._upload(base)
        d_weight = self._upload(np.ascontiguousarray(weight))
        d_acc = self._empty((n, channels + 1))
        self._run("blend_init", {"shape": np.array([n, channels + 1], np.int64)}, {"acc": d_acc})
        d_x = self._empty((batch_size, 1, *roi_size))
        d_y = self._empty((batch_size, channels, *roi_size))
        for b0 in range(0, len(corners), batch_size):
            batch = corners[b0 : b0 + batch_size]
            filled = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(batch))])
            self._run(
                "blend_windows",
                {"image": d_image, "base": d_base, "corners": filled},
                {"x": d_x},
            )
            model.run_bound(d_x, d_y)
            for index, corner in enumerate(batch):
                self._run(
                    "blend_accumulate",
                    {
                        "acc": d_acc,
                        "logits": d_y,
                        "index": np.array(index, dtype=np.int64),
                        "weight": d_weight,
                        "base": d_base,
                        "corner": np.array(corner, dtype=np.int64),
                    },
                    {"acc_out": d_acc},
                )
        if channels == 2 and channel == 1:
            finish, extra = "blend_finish_sigmoid", {}
        else:
            if not 0 <= channel < channels:
                raise ValueError(f"channel {channel} out of range for {channels} channels")
            finish, extra = "blend_finish_softmax", {"channel": np.array(channel, np.int64)}
        wanted: dict[str, Any] = {"mask": None, "values": None}
        if full_probability:
            wanted["p"] = None
        back = self._run(
            finish, {"acc": d_acc, "threshold": np.array(threshold, np.float32), **extra}, wanted
        )
        mask = np.asarray(back[0]).reshape(size).astype(bool)
        vals = np.asarray(back[1], dtype=np.float32)
        full = np.asarray(back[2], np.float32).reshape(size) if full_probability else None
        if any(p != (0, 0) for p in pads):
            crop = tuple(slice(lo, lo + m) for (lo, _), m in zip(pads, shape, strict=True))
            cropped = Decision(mask, vals, full).probability()[crop]
            mask = np.ascontiguousarray(mask[crop])
            vals = cropped[mask]
            full = np.ascontiguousarray(cropped) if full_probability else None
        return Decision(mask=mask, values=vals, full=full)

    # --- ONNX Runtime plumbing -----------------------------------------------------------------

    def _upload(self, array: npt.NDArray[Any]) -> Any:
        return self._ort.OrtValue.ortvalue_from_numpy(array, self.device_type, self.device_id)

    def _empty(self, shape: tuple[int, ...]) -> Any:
        return self._ort.OrtValue.ortvalue_from_shape_and_type(
            list(shape), np.float32, self.device_type, self.device_id
        )

    def _run(self, graph: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> list[Any]:
        """Run ``graph``: numpy inputs are host arrays (ONNX Runtime copies them), others are
        ``OrtValue``; an output ``None`` comes back to the host as numpy, an ``OrtValue``
        output is written in place."""
        session = self._sessions[graph]
        binding = session.io_binding()
        for name, value in inputs.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        to_host = [name for name, value in outputs.items() if value is None]
        for name, value in outputs.items():
            if value is None:
                binding.bind_output(name, "cpu")
            else:
                binding.bind_ortvalue_output(name, value)
        session.run_with_iobinding(binding)
        if not to_host:
            return []
        values = binding.copy_outputs_to_cpu()
        names = list(outputs)
        return [values[names.index(name)] for name in to_host]


def decide(
    window: DeviceWindow,
    image: npt.NDArray[np.float32],
    model: ModelSession,
    roi_size: tuple[int, int, int],
    overlap: float,
    batch_size: int,
    mode: BlendMode = "gaussian",
    *,
    sigma_scale: float = 0.125,
    threshold: float,
    channel: int,
    region: Region | None = None,
    background_probability: float = 0.0,
    full_probability: bool = False,
) -> Decision:
    """:meth:`DeviceWindow.run` over ``image``, or only over ``region`` (grown to at least one
    window, as :func:`inference.sliding_window.sliding_window_box` does); outside the region every
    voxel has ``background_probability`` (the foreground probability of the background logits
    that the numpy path fills in there)."""
    kwargs: dict[str, Any] = {
        "sigma_scale": sigma_scale,
        "threshold": threshold,
        "channel": channel,
        "full_probability": full_probability,
    }
    if region is None:
        return window.run(image, model, roi_size, overlap, batch_size, mode, **kwargs)
    box = grow_region(region, roi_size, (image.shape[0], image.shape[1], image.shape[2]))
    inner = window.run(image[box], model, roi_size, overlap, batch_size, mode, **kwargs)
    background_is_foreground = bool(np.float32(background_probability) >= np.float32(threshold))
    full: npt.NDArray[np.float32] | None = None
    if full_probability or background_is_foreground:
        full = np.zeros(image.shape, dtype=np.float32)  # lazy pages: only the box is written
        if background_probability != 0.0:
            full.fill(background_probability)
        full[box] = inner.probability()
    mask = np.full(image.shape, background_is_foreground, dtype=bool)
    mask[box] = inner.mask
    if full is not None and background_is_foreground:
        return Decision(mask=mask, values=full[mask], full=full if full_probability else None)
    # the C order of the box's voxels is their C order in the whole volume
    return Decision(mask=mask, values=inner.values, full=full)


_windows: dict[tuple[str, int], DeviceWindow] = {}
_windows_lock = threading.Lock()


def device_window_for(model: ModelSession) -> DeviceWindow:
    """The process-wide :class:`DeviceWindow` on ``model``'s device (created on first use)."""
    key = (model.device_type, model.device_id)
    with _windows_lock:
        window = _windows.get(key)
        if window is None:
            window = DeviceWindow(model.device_type, model.device_id)
            _windows[key] = window
        return window
