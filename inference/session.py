"""ONNX Runtime sessions for model packages, on the execution providers that were asked for.

ONNX Runtime quietly runs on the CPU when a requested provider (CUDA, TensorRT) is not installed
or its libraries are missing. PreRead never accepts that silently: after creating a session we
compare ``session.get_providers()[0]`` with the first requested provider and, per ``policy``,
either raise :class:`~inference.errors.ProviderError` (``"fail"``) or keep the session and record
the downgrade in :attr:`SessionInfo.warning` (``"warn"``), which the caller stores with the job.

Providers are names or ``(name, options)`` pairs (:mod:`inference.providers` builds them from the
settings). Before the first session, the environment is checked to hold exactly one ONNX Runtime
build (:mod:`inference.install`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from inference.card import OnnxSpec
from inference.errors import InferenceError, PackageError, ProviderError
from inference.install import onnxruntime_distribution
from inference.package import ModelPackage
from inference.providers import (
    CPU as CPU,
)
from inference.providers import (
    GPU_PROVIDERS,
    ProviderEntry,
    describe_device,
    device_id_of,
    split_entries,
)

if TYPE_CHECKING:
    import onnxruntime as ort

ProviderPolicy = Literal["fail", "warn"]
DeviceType = Literal["cuda", "cpu"]

_log = logging.getLogger(__name__)


def onnxruntime_module() -> ModuleType:
    """``onnxruntime``, imported after checking that exactly one build of it is installed.

    Raises:
        OnnxRuntimeInstallError: none, or several (``onnxruntime`` + ``onnxruntime-gpu``).
    """
    onnxruntime_distribution()
    import onnxruntime

    module: ModuleType = onnxruntime
    return module


@dataclass(frozen=True)
class SessionInfo:
    """What ran a model: record it with every result.

    ``intra_op_threads`` is the value given to ONNX Runtime; 0 means its default (one thread per
    physical core). ``device`` says where the provider in use runs: ``"cpu"`` or ``"cuda:N"``
    (N among the GPUs this process sees), with ``CUDA_VISIBLE_DEVICES`` when set.
    """

    model_id: str
    model_version: str
    model_sha256: str
    requested_providers: tuple[str, ...]
    provider: str
    session_providers: tuple[str, ...]
    intra_op_threads: int
    policy: ProviderPolicy
    warning: str | None = None
    device: str = "cpu"


class ModelSession:
    """A package's network as a callable ``[B, 1, d, h, w] → [B, C, d, h, w]`` float32.

    :meth:`run_bound` runs it on tensors that stay on the session's device (ONNX Runtime I/O
    binding), for :mod:`inference.device_window`.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        info: SessionInfo,
        package: ModelPackage,
        *,
        device_id: int = 0,
    ):
        self._session = session
        self.info = info
        self._input = package.card.onnx.input_name
        self._output = package.card.onnx.output_name
        self._channels = package.card.num_channels
        self.device_type: DeviceType = "cuda" if info.provider in GPU_PROVIDERS else "cpu"
        self.device_id = device_id if self.device_type == "cuda" else 0

    @property
    def num_channels(self) -> int:
        return self._channels

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        (y,) = self._session.run([self._output], {self._input: x})
        out = np.asarray(y, dtype=np.float32)
        self._check_shape(tuple(x.shape), tuple(out.shape))
        return out

    def run_bound(self, x: Any, y: Any) -> None:
        """Run on device tensors: ``x`` ``[B, 1, d, h, w]`` in, ``y`` ``[B, C, d, h, w]`` out
        (both ``onnxruntime.OrtValue`` on this session's device, ``y`` preallocated).

        Nothing is copied to or from the host.
        """
        self._check_shape(tuple(x.shape()), tuple(y.shape()))
        binding = self._session.io_binding()
        binding.bind_ortvalue_input(self._input, x)
        binding.bind_ortvalue_output(self._output, y)
        self._session.run_with_iobinding(binding)

    def _check_shape(self, x: tuple[int, ...], out: tuple[int, ...]) -> None:
        expected = (x[0], self._channels, *x[2:])
        if out != expected:
            raise InferenceError(
                f"model {self.info.model_id} {self.info.model_version} returned shape "
                f"{out}, expected {expected}"
            )


def open_session(
    package: ModelPackage,
    providers: Sequence[ProviderEntry] = (CPU,),
    policy: ProviderPolicy = "fail",
    *,
    intra_op_threads: int | None = None,
) -> ModelSession:
    """Create an ONNX Runtime session for ``package`` on ``providers`` (in priority order).

    Args:
        providers: names, or ``(name, options)`` pairs (see
            :func:`inference.providers.provider_entries`); a ``trt_engine_cache_path`` or
            ``trt_timing_cache_path`` folder is created if missing.

    Raises:
        OnnxRuntimeInstallError: the environment holds no ONNX Runtime, or more than one build.
        ProviderError: ``policy == "fail"`` and the first requested provider is not available
            or not the one the session ended up using; or ``providers`` is empty.
    """
    session, info, device_id = _open(
        package, package.model_path, package.card.onnx, providers, policy, intra_op_threads
    )
    return ModelSession(session, info, package, device_id=device_id)


def open_stage_session(
    package: ModelPackage,
    stage: str,
    providers: Sequence[ProviderEntry] = (CPU,),
    policy: ProviderPolicy = "fail",
    *,
    intra_op_threads: int | None = None,
) -> StageSession:
    """A session for the card's further stage ``stage`` (same providers and policy rules as
    :func:`open_session`: a downgrade is never silent)."""
    spec = package.card.stage(stage)
    session, info, _ = _open(
        package, package.stage_path(stage), spec.onnx, providers, policy, intra_op_threads
    )
    return StageSession(session, info, spec.onnx.input_name, spec.onnx.output_name)


class StageSession:
    """A candidate-classifier stage as a callable ``[B, S, p, p, p] → [B, 1]`` float32."""

    def __init__(
        self, session: ort.InferenceSession, info: SessionInfo, input_name: str, output_name: str
    ) -> None:
        self._session = session
        self.info = info
        self._input = input_name
        self._output = output_name

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        (y,) = self._session.run([self._output], {self._input: x})
        out = np.asarray(y, dtype=np.float32)
        if out.shape != (x.shape[0], 1):
            raise InferenceError(
                f"stage of {self.info.model_id} {self.info.model_version} returned shape "
                f"{out.shape}, expected {(x.shape[0], 1)}"
            )
        return out


def _open(
    package: ModelPackage,
    path: Path,
    spec: OnnxSpec,
    providers: Sequence[ProviderEntry],
    policy: ProviderPolicy,
    intra_op_threads: int | None,
) -> tuple[ort.InferenceSession, SessionInfo, int]:
    ort = onnxruntime_module()
    names, all_options = split_entries(providers)
    requested = names
    if not requested:
        raise ProviderError("no execution provider requested")
    available = ort.get_available_providers()
    first = requested[0]
    if policy == "fail" and first not in available:
        raise ProviderError(
            f"{first} was requested but this onnxruntime offers only {', '.join(available)} "
            "(policy 'fail': not falling back)"
        )
    usable = [(n, o) for n, o in zip(names, all_options, strict=True) if n in available]
    if not usable:
        usable = [(CPU, {})]
    for _, opts in usable:
        for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
            if opts.get(key):
                Path(opts[key]).mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    threads = 0 if intra_op_threads is None else int(intra_op_threads)
    options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=[n for n, _ in usable],
            provider_options=[o for _, o in usable],
        )
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise PackageError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
    _check_io(session, path, spec)
    used = session.get_providers()[0]
    used_options = dict(usable).get(used, {})
    device_id = device_id_of(used_options)
    warning = None
    if used != first:
        message = (
            f"{first} was requested for {package.id} {package.version} but ONNX Runtime runs it "
            f"on {used} (available: {', '.join(available)})"
        )
        if policy == "fail":
            raise ProviderError(message + " (policy 'fail': not falling back)")
        warning = message
        _log.warning("%s", message)
    info = SessionInfo(
        model_id=package.id,
        model_version=package.version,
        model_sha256=package.card.onnx.sha256,
        requested_providers=requested,
        provider=used,
        session_providers=tuple(session.get_providers()),
        intra_op_threads=threads,
        policy=policy,
        warning=warning,
        device=describe_device(used, device_id),
    )
    return session, info, device_id


def _check_io(session: ort.InferenceSession, path: Path, spec: OnnxSpec) -> None:
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if spec.input_name not in inputs or spec.output_name not in outputs:
        raise PackageError(
            f"{path}: the card names input {spec.input_name!r} and output "
            f"{spec.output_name!r}, the model has inputs {inputs} and outputs {outputs}"
        )


class SessionCache:
    """One session per (package file, providers and their options, policy, threads);
    thread-safe."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[object, ...], ModelSession] = {}
        self._stages: dict[tuple[object, ...], StageSession] = {}
        self._lock = threading.Lock()

    def get(
        self,
        package: ModelPackage,
        providers: Sequence[ProviderEntry] = (CPU,),
        policy: ProviderPolicy = "fail",
        *,
        intra_op_threads: int | None = None,
    ) -> ModelSession:
        """The cached session for these settings, created on first use (see
        :func:`open_session`)."""
        key = self._key(
            package.model_path, package.card.onnx.sha256, providers, policy, intra_op_threads
        )
        with self._lock:
            cached = self._sessions.get(key)
            if cached is None:
                cached = open_session(package, providers, policy, intra_op_threads=intra_op_threads)
                self._sessions[key] = cached
            return cached

    def get_stage(
        self,
        package: ModelPackage,
        stage: str,
        providers: Sequence[ProviderEntry] = (CPU,),
        policy: ProviderPolicy = "fail",
        *,
        intra_op_threads: int | None = None,
    ) -> StageSession:
        """The cached session of the card's further stage ``stage`` (see
        :func:`open_stage_session`)."""
        spec = package.card.stage(stage).onnx
        key = self._key(package.stage_path(stage), spec.sha256, providers, policy, intra_op_threads)
        with self._lock:
            cached = self._stages.get(key)
            if cached is None:
                cached = open_stage_session(
                    package, stage, providers, policy, intra_op_threads=intra_op_threads
                )
                self._stages[key] = cached
            return cached

    @staticmethod
    def _key(
        path: Path,
        sha256: str,
        providers: Sequence[ProviderEntry],
        policy: ProviderPolicy,
        intra_op_threads: int | None,
    ) -> tuple[object, ...]:
        names, options = split_entries(providers)
        return (
            str(path.resolve()),
            sha256,
            names,
            tuple(tuple(sorted(o.items())) for o in options),
            policy,
            0 if intra_op_threads is None else int(intra_op_threads),
        )

    def clear(self) -> None:
        """Drop every cached session."""
        with self._lock:
            self._sessions.clear()
            self._stages.clear()

    def __len__(self) -> int:
        return len(self._sessions)


_shared: SessionCache | None = None
_shared_lock = threading.Lock()


def shared_sessions() -> SessionCache:
    """The process-wide :class:`SessionCache` (created on first use), used by
    :class:`~inference.predict.Predictor` unless it is given one."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SessionCache()
        return _shared
