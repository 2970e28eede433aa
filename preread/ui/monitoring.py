"""``/ui/monitoring``: every model version reading the signed-in user's tenant's studies —
per version and acquisition group the review figures (acceptance, rejected findings per scan
by reason, reader-added nodules per scan), the probability distribution and the input
statistics; the trend of each metric as a plot; the monitoring alerts, open and past.

It shows no patient data (no study, no name): any signed-in user of the tenant sees it; its
figures come from :mod:`preread.monitoring`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from preread.api.deps import ServicesDep
from preread.monitoring.monitor import (
    METRICS,
    Point,
    points,
    recent_alerts,
    summary,
    versions_in_use,
)
from preread.monitoring.plots import trend_svg
from preread.store import JobStore
from preread.ui.auth import PageReader
from preread.ui.csrf import require_csrf
from preread.ui.templates import render

router = APIRouter(prefix="/ui", dependencies=[Depends(require_csrf)], include_in_schema=False)


def _versions(store: JobStore, tenant: str) -> list[tuple[str, str, list[Point]]]:
    return [
        (model_id, version, points(store, tenant, model_id, version))
        for t, model_id, version in versions_in_use(store)
        if t == tenant
    ]


@router.get("/monitoring", name="ui_monitoring")
async def monitoring(request: Request, services: ServicesDep, reader: PageReader) -> HTMLResponse:
    """The tenant's model versions in use, watched."""
    versions = await run_in_threadpool(_versions, services.store, reader.tenant)
    alerts = await run_in_threadpool(recent_alerts, services.store, reader.tenant)
    sections = []
    for model_id, version, series in versions:
        plots = [
            Markup(trend_svg([p.values[m] for p in series if m in p.values], meaning))  # escaped
            for m, meaning in METRICS.items()
        ]
        sections.append(
            {
                "model": f"{model_id} {version}",
                "shadow": any(p.shadow for p in series),
                "groups": summary(series),
                "plots": plots,
                "studies": len(series),
            }
        )
    return render(
        request,
        "monitoring.html",
        {"sections": sections, "alerts": alerts, "metrics": METRICS},
    )
