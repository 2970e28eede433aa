"""ONNX Runtime execution providers, with their options: TensorRT, CUDA, CPU.

ONNX Runtime takes providers as a list of names or ``(name, options)`` pairs, in order of
preference. :func:`provider_entries` builds that list from PreRead's settings:

* **TensorRT** (``TensorrtExecutionProvider``): fp16 kernels (``trt_fp16_enable``) and the
  built engines and tactic timings cached on disk (``trt_engine_cache_path``,
  ``trt_timing_cache_path``; PreRead uses ``<data_dir>/tensorrt``), so that only the first
  session of a model on a GPU model pays for the engine build.
  https://onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html
* **CUDA** (``CUDAExecutionProvider``): the GPU (``device_id``), cuDNN's convolution algorithm
  search (``cudnn_conv_algo_search``: EXHAUSTIVE benchmarks once per shape, which pays off for
  the fixed window shape of a sliding window), and an arena that grows by what is asked
  (``kSameAsRequested``) instead of doubling, since whole-volume buffers are large.
  https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html
* **CPU** (``CPUExecutionProvider``): no options.

``device_id`` counts the GPUs this process sees: with ``CUDA_VISIBLE_DEVICES=3`` (what
``preread worker --gpu 3`` sets), device 0 is physical GPU 3. :func:`describe_device` says both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: Providers that run on an NVIDIA GPU (the device sliding window applies to them).
GPU_PROVIDERS = (TENSORRT, CUDA)

ConvAlgoSearch = Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"]
ProviderOptions = Mapping[str, str]
#: What ONNX Runtime's ``providers=`` accepts: a name, or a name with its options.
ProviderEntry = str | tuple[str, ProviderOptions]


@dataclass(frozen=True)
class ProviderConfig:
    """The providers to ask for, in order, and their options (built from Settings)."""

    names: tuple[str, ...] = (CPU,)
    device_id: int = 0
    tensorrt_fp16: bool = True
    tensorrt_cache_dir: Path | None = None
    cudnn_conv_algo_search: ConvAlgoSearch = "EXHAUSTIVE"

    def entries(self) -> list[tuple[str, dict[str, str]]]:
        """``(name, options)`` for each provider; see :func:`provider_entries`."""
        return provider_entries(
            self.names,
            device_id=self.device_id,
            tensorrt_fp16=self.tensorrt_fp16,
            tensorrt_cache_dir=self.tensorrt_cache_dir,
            cudnn_conv_algo_search=self.cudnn_conv_algo_search,
        )


def provider_entries(
    names: Sequence[str],
    *,
    device_id: int = 0,
    tensorrt_fp16: bool = True,
    tensorrt_cache_dir: Path | None = None,
    cudnn_conv_algo_search: ConvAlgoSearch = "EXHAUSTIVE",
) -> list[tuple[str, dict[str, str]]]:
    """``(name, options)`` pairs for ONNX Runtime, in the order of ``names``.

    Args:
        names: provider names, e.g. ``["TensorrtExecutionProvider", "CUDAExecutionProvider",
            "CPUExecutionProvider"]``; names other than these three get no options.
        device_id: the GPU, among those visible to this process.
        tensorrt_fp16: let TensorRT pick fp16 kernels.
        tensorrt_cache_dir: folder for TensorRT's engine and timing caches (created when the
            session opens); None disables both caches.
        cudnn_conv_algo_search: cuDNN's convolution algorithm search for the CUDA provider.

    Raises:
        ValueError: ``device_id`` is negative or a name appears twice.
    """
    if device_id < 0:
        raise ValueError(f"device_id must be >= 0, got {device_id}")
    if len(set(names)) != len(names):
        raise ValueError(f"a provider is named twice in {list(names)}")
    out: list[tuple[str, dict[str, str]]] = []
    for name in names:
        options: dict[str, str] = {}
        if name == TENSORRT:
            options = {"device_id": str(device_id), "trt_fp16_enable": _flag(tensorrt_fp16)}
            if tensorrt_cache_dir is not None:
                cache = str(tensorrt_cache_dir)
                options |= {
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": cache,
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": cache,
                }
        elif name == CUDA:
            options = {
                "device_id": str(device_id),
                "cudnn_conv_algo_search": cudnn_conv_algo_search,
                "arena_extend_strategy": "kSameAsRequested",
            }
        out.append((name, options))
    return out


def split_entries(
    entries: Sequence[ProviderEntry],
) -> tuple[tuple[str, ...], tuple[dict[str, str], ...]]:
    """Provider names and their options (``{}`` for a bare name), as two parallel tuples."""
    names: list[str] = []
    options: list[dict[str, str]] = []
    for entry in entries:
        if isinstance(entry, str):
            names.append(entry)
            options.append({})
        else:
            names.append(entry[0])
            options.append({str(k): str(v) for k, v in entry[1].items()})
    return tuple(names), tuple(options)


def device_id_of(options: Mapping[str, str]) -> int:
    """The ``device_id`` option (0 when absent)."""
    return int(options.get("device_id", "0"))


def describe_device(provider: str, device_id: int, environ: Mapping[str, str] | None = None) -> str:
    """Where a provider runs, for logs and the worker's start line: ``"cpu"``, or
    ``"cuda:0"`` followed by ``(CUDA_VISIBLE_DEVICES=…)`` when that variable is set."""
    if provider not in GPU_PROVIDERS:
        return "cpu"
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    return f"cuda:{device_id}" + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible else "")


def _flag(value: bool) -> str:
    return "True" if value else "False"
