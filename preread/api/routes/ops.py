"""Operations: liveness, readiness, Prometheus metrics (no authentication: no patient data;
expose them on the internal network only)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from preread.api.deps import ServicesDep
from preread.api.metrics import CONTENT_TYPE
from preread.api.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    """The process answers."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Every dependency answers: the database, Orthanc, the models (503 naming what fails)."""

    def run() -> dict[str, str]:
        results = {}
        for name, check in services.ready_checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:  # a readiness probe reports, never raises
                results[name] = f"failed: {type(exc).__name__}"
        return results

    checks = await run_in_threadpool(run)
    ready = all(v == "ok" for v in checks.values())
    body = ReadyOut(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text format."""
    data = await run_in_threadpool(services.metrics.render)
    return Response(data, media_type=CONTENT_TYPE)
