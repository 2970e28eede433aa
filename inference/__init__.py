"""Serving side of PreRead's models: packages, ONNX Runtime sessions, pre/post-processing.

Runs without torch or monai. Names are imported lazily, so that ``from inference.card import
ModelCard`` (e.g. in ``dicom_gateway``, which never imports onnxruntime) stays light. The
sliding-window function is ``inference.sliding_window.sliding_window`` (not re-exported: its
module has the same name).

Typical use::

    from inference import Registry, Predictor

    package = Registry("models").find("lung-nodule-seg")
    predictor = Predictor(package, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    prediction = predictor.predict(volume)

Providers with options (TensorRT fp16 and its engine cache, CUDA's device): ``ProviderConfig``
(:mod:`inference.providers`). On a GPU the sliding window is blended and thresholded on the
device (:mod:`inference.device_window`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.card import ModelCard
    from inference.errors import (
        InferenceError,
        OnnxRuntimeInstallError,
        PackageError,
        PackageNotFoundError,
        PreprocessError,
        ProviderError,
    )
    from inference.package import ModelPackage
    from inference.postprocess import Detections, find_nodules
    from inference.predict import Prediction, Predictor
    from inference.preprocess import (
        ModelInput,
        labels_to_model_grid,
        labels_to_source_grid,
        to_model_grid,
        to_source_grid,
    )
    from inference.providers import ProviderConfig
    from inference.registry import PackageRef, Registry
    from inference.session import SessionCache, SessionInfo, open_session

_EXPORTS = {
    "ModelCard": "inference.card",
    "InferenceError": "inference.errors",
    "OnnxRuntimeInstallError": "inference.errors",
    "PackageError": "inference.errors",
    "PackageNotFoundError": "inference.errors",
    "PreprocessError": "inference.errors",
    "ProviderError": "inference.errors",
    "ModelPackage": "inference.package",
    "Detections": "inference.postprocess",
    "find_nodules": "inference.postprocess",
    "Prediction": "inference.predict",
    "Predictor": "inference.predict",
    "ModelInput": "inference.preprocess",
    "labels_to_model_grid": "inference.preprocess",
    "labels_to_source_grid": "inference.preprocess",
    "to_model_grid": "inference.preprocess",
    "to_source_grid": "inference.preprocess",
    "ProviderConfig": "inference.providers",
    "Registry": "inference.registry",
    "PackageRef": "inference.registry",
    "SessionCache": "inference.session",
    "SessionInfo": "inference.session",
    "open_session": "inference.session",
}

__all__ = [
    "Detections",
    "InferenceError",
    "ModelCard",
    "ModelInput",
    "ModelPackage",
    "OnnxRuntimeInstallError",
    "PackageError",
    "PackageNotFoundError",
    "PackageRef",
    "Prediction",
    "Predictor",
    "PreprocessError",
    "ProviderConfig",
    "ProviderError",
    "Registry",
    "SessionCache",
    "SessionInfo",
    "find_nodules",
    "labels_to_model_grid",
    "labels_to_source_grid",
    "open_session",
    "to_model_grid",
    "to_source_grid",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
