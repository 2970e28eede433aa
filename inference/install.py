"""Which ONNX Runtime build is installed: exactly one, or PreRead refuses to run.

``onnxruntime`` (CPU) and ``onnxruntime-gpu`` (CUDA, TensorRT) install the same Python package,
``onnxruntime``: with both in one environment the one installed last silently overwrites the
other's files, and what runs is whichever wins. PreRead's extras install one of them
(``pip install preread[cpu]`` or ``preread[gpu]``); :func:`check_onnxruntime_install` checks
that the environment did not end up with both, or with neither.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from importlib import metadata

from inference.errors import OnnxRuntimeInstallError

CPU_DISTRIBUTION = "onnxruntime"
GPU_DISTRIBUTION = "onnxruntime-gpu"
#: Distributions that all install the ``onnxruntime`` package (PyPI names, normalised).
ONNXRUNTIME_DISTRIBUTIONS = (
    CPU_DISTRIBUTION,
    GPU_DISTRIBUTION,
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "onnxruntime-rocm",
    "onnxruntime-training",
    "ort-nightly",
    "ort-nightly-gpu",
)


def normalize(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503): lower case, runs of ``-_.`` → ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check_onnxruntime_install(distributions: Iterable[str]) -> str:
    """The one ONNX Runtime distribution among ``distributions`` (installed distribution names).

    Raises:
        OnnxRuntimeInstallError: none of them is an ONNX Runtime build, or more than one is
            (e.g. ``onnxruntime`` and ``onnxruntime-gpu``); the message says how to fix it.

    Example::

        >>> check_onnxruntime_install(["numpy", "onnxruntime_gpu"])
        'onnxruntime-gpu'
    """
    found = sorted({n for n in map(normalize, distributions) if n in ONNXRUNTIME_DISTRIBUTIONS})
    if len(found) == 1:
        return found[0]
    if not found:
        raise OnnxRuntimeInstallError(
            "no ONNX Runtime is installed: install exactly one, `pip install preread[cpu]` "
            "(onnxruntime) or `pip install preread[gpu]` (onnxruntime-gpu, for CUDA/TensorRT)"
        )
    keep = GPU_DISTRIBUTION if GPU_DISTRIBUTION in found else found[0]
    remove = [n for n in found if n != keep]
    raise OnnxRuntimeInstallError(
        f"several ONNX Runtime builds are installed in this environment ({', '.join(found)}); "
        "they overwrite each other's files, so what runs is undefined. Keep exactly one: "
        f"`pip uninstall -y {' '.join(found)} && pip install {keep}` "
        f"(or `pip uninstall -y {' '.join(remove)}` and reinstall {keep})"
    )


def installed_distributions() -> list[str]:
    """Names of the distributions installed in this environment (``importlib.metadata``)."""
    names = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata is not None else None
        if name:
            names.append(str(name))
    return names


@functools.cache
def onnxruntime_distribution() -> str:
    """The installed ONNX Runtime distribution (checked once per process; see
    :func:`check_onnxruntime_install`)."""
    return check_onnxruntime_install(installed_distributions())
