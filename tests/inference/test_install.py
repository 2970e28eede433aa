"""Exactly one ONNX Runtime build per environment (inference.install)."""

from __future__ import annotations

import pytest

from inference.errors import OnnxRuntimeInstallError, ProviderError
from inference.install import check_onnxruntime_install, onnxruntime_distribution

BASE = ["numpy", "scipy", "pydicom", "preread"]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([*BASE, "onnxruntime"], "onnxruntime"),
        ([*BASE, "onnxruntime-gpu"], "onnxruntime-gpu"),
        ([*BASE, "onnxruntime_gpu"], "onnxruntime-gpu"),  # wheel metadata spelling
        ([*BASE, "ONNXRuntime-GPU", "onnx", "onnxscript"], "onnxruntime-gpu"),
    ],
)
def test_one_build_is_accepted(names: list[str], expected: str) -> None:
    assert check_onnxruntime_install(names) == expected


def test_cpu_and_gpu_builds_together_are_refused_with_the_fix() -> None:
    with pytest.raises(OnnxRuntimeInstallError) as caught:
        check_onnxruntime_install([*BASE, "onnxruntime", "onnxruntime-gpu"])
    message = str(caught.value)
    assert "onnxruntime, onnxruntime-gpu" in message
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in message
    assert isinstance(caught.value, ProviderError)  # callers catching provider trouble see it


def test_two_other_builds_are_refused() -> None:
    with pytest.raises(OnnxRuntimeInstallError, match="ort-nightly"):
        check_onnxruntime_install(["onnxruntime", "ort-nightly"])


def test_no_build_is_refused_with_the_extras_to_install() -> None:
    with pytest.raises(OnnxRuntimeInstallError) as caught:
        check_onnxruntime_install([*BASE, "onnx", "onnxruntime-extensions"])
    assert "preread[cpu]" in str(caught.value) and "preread[gpu]" in str(caught.value)


def test_this_environment_has_the_cpu_build() -> None:
    # ./run setup installs .[cpu,train,dev]
    assert onnxruntime_distribution() == "onnxruntime"
