"""The installed model packages: cards, held-out evaluations, and each version's stage in
its life (:mod:`preread.lifecycle`: who moved it, why, and a promotion's gate figures)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from inference.errors import InferenceError
from inference.package import ModelPackage
from preread.api.deps import ModelsReader, Services, ServicesDep
from preread.api.schemas import ModelDetailOut, ModelVersionOut, StageOut
from preread.lifecycle import Lineup, StageRecord

router = APIRouter(prefix="/api/v1", tags=["models"])


def _lineup(services: Services) -> Lineup:
    if services.lineup is None:  # an app built without one (the service passes its own)
        from preread.composition import live_lineup

        services.lineup = live_lineup(services.settings, services.store, services.registry)
    return services.lineup.current()


def _version(package: ModelPackage, stage: StageRecord) -> ModelVersionOut:
    card = package.card
    return ModelVersionOut(
        id=card.id,
        version=card.version,
        name=card.name,
        sha256=card.onnx.sha256,
        stage=stage.stage.value,
    )


@router.get("/models", response_model=list[ModelVersionOut])
def list_models(services: ServicesDep, who: ModelsReader) -> list[ModelVersionOut]:
    """Every installed model version and its stage."""
    lineup = _lineup(services)
    return [_version(p, lineup.stage(p.id, p.version)) for p in services.registry.list()]


@router.get("/models/{model_id}/{version}", response_model=ModelDetailOut)
def show_model(
    services: ServicesDep, who: ModelsReader, model_id: str, version: str
) -> ModelDetailOut:
    """One model version: its card, its held-out evaluation and its stage."""
    try:
        package = services.registry.find(model_id, version)
    except InferenceError:
        raise HTTPException(404, f"no model {model_id} {version}") from None
    stage = _lineup(services).stage(model_id, version)
    return ModelDetailOut(
        **_version(package, stage).model_dump(),
        card=package.card.model_dump(mode="json"),
        evaluation=dict(package.read_evaluation()),
        lifecycle=StageOut(
            changed_at=stage.changed_at,
            changed_by=stage.changed_by,
            reason=stage.reason,
            replaced=stage.replaced,
            promotion_gate=dict(stage.gate) if stage.gate is not None else None,
        ),
    )
