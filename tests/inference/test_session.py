from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference.errors import PackageError, ProviderError
from inference.package import ModelPackage, sha256_file
from inference.predict import Predictor
from inference.session import SessionCache, open_session, shared_sessions

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
needs_no_cuda = pytest.mark.skipif(
    CUDA in ort.get_available_providers(), reason="this onnxruntime has CUDA"
)


def test_cpu_session_runs_the_model(package: ModelPackage) -> None:
    session = open_session(package, [CPU], intra_op_threads=1)
    assert session.info.provider == CPU
    assert session.info.requested_providers == (CPU,)
    assert session.info.intra_op_threads == 1
    assert session.info.warning is None
    assert session.info.model_sha256 == package.card.onnx.sha256
    x = np.array([0.0, 0.4, 1.0], dtype=np.float32).reshape(1, 1, 1, 1, 3)
    y = session(x)
    assert y.shape == (1, 2, 1, 1, 3)
    np.testing.assert_allclose(y[0, 1, 0, 0], [-8.0, 0.0, 12.0], atol=1e-5)
    np.testing.assert_allclose(y[0, 0], -y[0, 1])


@needs_no_cuda
def test_missing_cuda_fails_under_policy_fail(package: ModelPackage) -> None:
    with pytest.raises(ProviderError, match="CUDAExecutionProvider was requested"):
        open_session(package, [CUDA], "fail")
    with pytest.raises(ProviderError, match="not falling back"):
        open_session(package, [CUDA, CPU], "fail")
    with pytest.raises(ProviderError):
        Predictor(package, [CUDA, CPU], "fail")


@needs_no_cuda
def test_missing_cuda_warns_under_policy_warn(package: ModelPackage) -> None:
    session = open_session(package, [CUDA], "warn")
    info = session.info
    assert info.provider == CPU
    assert info.requested_providers == (CUDA,)
    assert info.policy == "warn"
    assert info.warning is not None
    assert CUDA in info.warning and CPU in info.warning
    assert session(np.zeros((1, 1, 2, 2, 2), np.float32)).shape == (1, 2, 2, 2, 2)


def test_sessions_are_cached(package: ModelPackage) -> None:
    cache = SessionCache()
    a = cache.get(package, [CPU])
    assert cache.get(package, [CPU]) is a
    assert cache.get(package, [CPU], intra_op_threads=1) is not a
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_no_provider_is_an_error(package: ModelPackage) -> None:
    with pytest.raises(ProviderError, match="no execution provider"):
        open_session(package, [])


def test_card_and_model_must_agree_on_tensor_names(package_dir: Path) -> None:
    card_file = package_dir / "model.yaml"
    card_file.write_text(card_file.read_text().replace("input_name: image", "input_name: ct"))
    package = ModelPackage.load(package_dir)
    with pytest.raises(PackageError, match=r"model\.onnx: the card names input 'ct'"):
        open_session(package)


def test_unloadable_model_is_a_package_error(package_dir: Path) -> None:
    (package_dir / "model.onnx").write_bytes(b"not an onnx file")
    card_file = package_dir / "model.yaml"
    sha = sha256_file(package_dir / "model.onnx")
    card_file.write_text(re.sub(r"sha256: [0-9a-f]{64}", f"sha256: {sha}", card_file.read_text()))
    with pytest.raises(PackageError, match="ONNX Runtime cannot load it"):
        open_session(ModelPackage.load(package_dir))


def test_predictors_share_the_process_wide_cache(package: ModelPackage) -> None:
    assert Predictor(package).session is Predictor(package).session
    assert Predictor(package).session is shared_sessions().get(package)
