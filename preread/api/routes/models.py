"""The installed model packages: cards and held-out evaluations."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from inference.errors import InferenceError
from inference.package import ModelPackage
from preread.api.deps import ModelsReader, ServicesDep
from preread.api.schemas import ModelDetailOut, ModelVersionOut

router = APIRouter(prefix="/api/v1", tags=["models"])


def _version(package: ModelPackage) -> ModelVersionOut:
    card = package.card
    return ModelVersionOut(
        id=card.id, version=card.version, name=card.name, sha256=card.onnx.sha256
    )


@router.get("/models", response_model=list[ModelVersionOut])
def list_models(services: ServicesDep, who: ModelsReader) -> list[ModelVersionOut]:
    """Every installed model version."""
    return [_version(p) for p in services.registry.list()]


@router.get("/models/{model_id}/{version}", response_model=ModelDetailOut)
def show_model(
    services: ServicesDep, who: ModelsReader, model_id: str, version: str
) -> ModelDetailOut:
    """One model version: its card and its held-out evaluation."""
    try:
        package = services.registry.find(model_id, version)
    except InferenceError:
        raise HTTPException(404, f"no model {model_id} {version}") from None
    return ModelDetailOut(
        **_version(package).model_dump(),
        card=package.card.model_dump(mode="json"),
        evaluation=dict(package.read_evaluation()),
    )
