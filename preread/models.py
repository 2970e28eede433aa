"""Model packages as configured: one place that turns Settings into a running Predictor."""

from __future__ import annotations

from inference.package import ModelPackage
from inference.predict import Predictor
from preread.settings import Settings


def predictor_for(package: ModelPackage, settings: Settings) -> Predictor:
    """A predictor with the configured providers, provider policy and thread count."""
    return Predictor(
        package,
        providers=settings.providers,
        policy=settings.provider_policy,
        intra_op_threads=settings.intra_op_threads or None,
    )
