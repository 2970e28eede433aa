"""Errors of the training side (configs, datasets, export)."""

from preread.errors import PrereadError


class TrainingError(PrereadError):
    """Base of training-side errors."""


class ConfigError(TrainingError):
    """A training configuration file is missing, unreadable or invalid."""


class ExportError(TrainingError):
    """ONNX export failed or the exported model does not match torch."""
