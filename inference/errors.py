"""Exceptions raised by :mod:`inference`.

Every error this package raises on purpose derives from :class:`InferenceError` (itself a
:class:`preread.errors.PrereadError`), so a caller (the
pipeline, the API's error mapping) can catch one type::

    InferenceError
    ├── PackageError          a model package is missing, malformed or tampered with
    │   └── PackageNotFoundError   no installed package matches an id / version
    ├── ProviderError         ONNX Runtime cannot run on the execution provider that was asked for
    │   └── OnnxRuntimeInstallError   onnxruntime and onnxruntime-gpu both installed, or neither
    └── PreprocessError       a volume cannot be brought onto the model's grid (e.g. oblique)
"""

from __future__ import annotations

from preread.errors import PrereadError


class InferenceError(PrereadError):
    """Base class of every error raised by :mod:`inference`."""


class PackageError(InferenceError):
    """A model package (``model.yaml``, ``model.onnx``, ``evaluation.json``) is unusable.

    The message names the offending file and what is wrong with it.
    """


class PackageNotFoundError(PackageError):
    """No installed model package matches the requested id (and version)."""


class ProviderError(InferenceError):
    """The requested ONNX Runtime execution provider is not the one that would run the model."""


class OnnxRuntimeInstallError(ProviderError):
    """The environment holds both ``onnxruntime`` and ``onnxruntime-gpu`` (they overwrite each
    other's files), or no ONNX Runtime at all. The message names the fix."""


class PreprocessError(InferenceError):
    """A volume cannot be resampled onto a model's input grid."""
