"""Execution providers and their options, from the settings (inference.providers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference.errors import ProviderError
from inference.package import ModelPackage
from inference.predict import Predictor
from inference.providers import (
    CPU,
    CUDA,
    TENSORRT,
    describe_device,
    provider_entries,
    split_entries,
)
from inference.session import SessionCache, open_session
from preread.models import predictor_for, provider_config
from preread.settings import Settings

GPU_ORDER = [TENSORRT, CUDA, CPU]
needs_no_gpu = pytest.mark.skipif(
    CUDA in ort.get_available_providers(), reason="this onnxruntime has CUDA"
)


def test_settings_give_tensorrt_fp16_with_caches_in_the_data_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, providers=GPU_ORDER)
    entries = provider_config(settings).entries()
    assert [name for name, _ in entries] == GPU_ORDER
    trt, cuda, cpu = (options for _, options in entries)
    cache = str(tmp_path / "tensorrt")
    assert trt == {
        "device_id": "0",
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
    }
    assert cuda == {
        "device_id": "0",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "arena_extend_strategy": "kSameAsRequested",
    }
    assert cpu == {}


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PREREAD_PROVIDERS", '["CUDAExecutionProvider", "CPUExecutionProvider"]')
    monkeypatch.setenv("PREREAD_GPU_DEVICE_ID", "1")
    monkeypatch.setenv("PREREAD_CUDNN_CONV_ALGO_SEARCH", "HEURISTIC")
    monkeypatch.setenv("PREREAD_TENSORRT_FP16", "false")
    monkeypatch.setenv("PREREAD_TENSORRT_CACHE_DIR", str(tmp_path / "engines"))
    settings = Settings()
    config = provider_config(settings)
    assert config.names == (CUDA, CPU)
    assert config.tensorrt_cache_dir == tmp_path / "engines"
    assert dict(config.entries())[CUDA]["device_id"] == "1"
    assert dict(config.entries())[CUDA]["cudnn_conv_algo_search"] == "HEURISTIC"
    trt = dict(provider_entries([TENSORRT], tensorrt_fp16=False, tensorrt_cache_dir=None))
    assert trt[TENSORRT] == {"device_id": "0", "trt_fp16_enable": "False"}


def test_bad_provider_lists_are_rejected() -> None:
    with pytest.raises(ValueError, match="named twice"):
        provider_entries([CUDA, CUDA])
    with pytest.raises(ValueError, match="device_id"):
        provider_entries([CUDA], device_id=-1)


def test_split_entries_accepts_names_and_pairs() -> None:
    names, options = split_entries([(CUDA, {"device_id": 2}), CPU])  # type: ignore[dict-item]
    assert names == (CUDA, CPU)
    assert options == ({"device_id": "2"}, {})


def test_device_description_names_the_visible_gpus() -> None:
    assert describe_device(CPU, 0, {}) == "cpu"
    assert describe_device(CUDA, 0, {}) == "cuda:0"
    assert describe_device(TENSORRT, 1, {"CUDA_VISIBLE_DEVICES": "3,5"}) == (
        "cuda:1 (CUDA_VISIBLE_DEVICES=3,5)"
    )


def test_cpu_session_reports_its_device(package: ModelPackage) -> None:
    session = open_session(package, [(CPU, {})])
    assert session.info.provider == CPU and session.info.device == "cpu"
    assert session.device_type == "cpu"


@needs_no_gpu
def test_gpu_settings_on_a_cpu_onnxruntime_fail_under_policy_fail(
    package: ModelPackage, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, providers=GPU_ORDER, provider_policy="fail")
    with pytest.raises(ProviderError, match="TensorrtExecutionProvider was requested"):
        predictor_for(package, settings)
    with pytest.raises(ProviderError, match="not falling back"):
        open_session(package, provider_config(settings).entries()[1:], "fail")  # CUDA first


@needs_no_gpu
def test_gpu_settings_on_a_cpu_onnxruntime_warn_and_record_it(
    package: ModelPackage, tmp_path: Path
) -> None:
    entries = provider_entries(GPU_ORDER, tensorrt_cache_dir=tmp_path / "tensorrt")
    predictor = Predictor(package, entries, "warn", sessions=SessionCache())
    info = predictor.session_info
    assert info.requested_providers == tuple(GPU_ORDER)
    assert info.provider == CPU and info.device == "cpu"
    assert info.warning is not None and TENSORRT in info.warning and CPU in info.warning
    assert not predictor.on_device  # auto: the CPU that ran it gets the numpy window
    y = predictor.session(np.zeros((1, 1, 2, 2, 2), np.float32))
    assert y.shape == (1, 2, 2, 2, 2)


def test_sessions_with_different_options_are_not_shared(package: ModelPackage) -> None:
    cache = SessionCache()
    a = cache.get(package, [(CPU, {})])
    assert cache.get(package, [CPU]) is a  # a bare name is a name without options
    b = cache.get(package, [(CUDA, {"device_id": "0"}), CPU], "warn")
    c = cache.get(package, [(CUDA, {"device_id": "1"}), CPU], "warn")
    assert b is not c and len(cache) == 3
