"""Model packages as configured: one place that turns Settings into a running Predictor."""

from __future__ import annotations

from inference.package import ModelPackage
from inference.predict import Predictor
from inference.providers import ProviderConfig
from preread.settings import Settings


def provider_config(settings: Settings) -> ProviderConfig:
    """The execution providers of ``settings`` with their options (TensorRT's caches in
    ``<data_dir>/tensorrt`` unless ``PREREAD_TENSORRT_CACHE_DIR`` says otherwise)."""
    return ProviderConfig(
        names=tuple(settings.providers),
        device_id=settings.gpu_device_id,
        tensorrt_fp16=settings.tensorrt_fp16,
        tensorrt_cache_dir=settings.tensorrt_cache_dir or settings.data_dir / "tensorrt",
        cudnn_conv_algo_search=settings.cudnn_conv_algo_search,
    )


def predictor_for(
    package: ModelPackage,
    settings: Settings,
    *,
    full_probability: bool = False,
    all_candidates: bool = False,
) -> Predictor:
    """A predictor with the configured providers (and their options), provider policy, thread
    count and device-window mode; ``full_probability`` and ``all_candidates`` for evaluation
    (see :class:`~inference.predict.Predictor`)."""
    return Predictor(
        package,
        providers=provider_config(settings).entries(),
        policy=settings.provider_policy,
        intra_op_threads=settings.intra_op_threads or None,
        device_window=settings.device_window,
        full_probability=full_probability,
        all_candidates=all_candidates,
        max_grid_voxels=settings.max_model_grid_voxels,
    )
