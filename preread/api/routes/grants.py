"""Grants, for the authorization platform's client (scope ``grants:manage``, which ``admin``
does not include): issue, list, show, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from preread.api.bodies import RequestBody
from preread.api.deps import GrantsManager, ServicesDep
from preread.api.ids import TENANT_PATTERN, TEXT_PATTERN
from preread.grants import Grant, GrantError, GrantSpec, Purpose
from preread.grants.records import check_senders

router = APIRouter(prefix="/api/v1", tags=["grants"])


class GrantIn(RequestBody):
    tenant: str = Field(max_length=64, pattern=TENANT_PATTERN, description="the data source")
    purpose: Purpose
    valid_from: datetime
    valid_to: datetime
    legal_basis: str = Field(
        max_length=2000, pattern=TEXT_PATTERN, description="law, contract or consent reference"
    )
    sender_aets: list[str] = Field(default=[], max_length=100)
    modalities: list[str] = Field(default=[], max_length=50)
    study_date_from: str | None = Field(default=None, description="YYYYMMDD, inclusive")
    study_date_to: str | None = Field(default=None, description="YYYYMMDD, inclusive")
    study_uids: list[str] | None = Field(default=None, max_length=10_000)


class RevokeIn(RequestBody):
    reason: str = Field(min_length=1, max_length=2000, pattern=TEXT_PATTERN)


class GrantOut(BaseModel):
    id: str
    tenant: str
    purpose: Purpose
    valid_from: datetime
    valid_to: datetime
    legal_basis: str
    issued_by: str
    sender_aets: list[str]
    modalities: list[str]
    study_date_from: str | None
    study_date_to: str | None
    study_uids: list[str] | None
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None
    requeued_jobs: int = Field(default=0, description="studies waiting for it, now queued")
    models_trained: list[str] = Field(
        default=[], description="on revocation: installed models whose card lists this grant"
    )

    @classmethod
    def of(cls, grant: Grant, requeued: int = 0) -> GrantOut:
        spec = grant.spec
        return cls(
            id=grant.id,
            tenant=spec.tenant,
            purpose=spec.purpose,
            valid_from=spec.valid_from,
            valid_to=spec.valid_to,
            legal_basis=spec.legal_basis,
            issued_by=spec.issued_by,
            sender_aets=list(spec.sender_aets),
            modalities=list(spec.modalities),
            study_date_from=spec.study_date_from,
            study_date_to=spec.study_date_to,
            study_uids=None if spec.study_uids is None else list(spec.study_uids),
            created_at=grant.created_at,
            revoked_at=grant.revoked_at,
            revoked_by=grant.revoked_by,
            revoke_reason=grant.revoke_reason,
            requeued_jobs=requeued,
        )


@router.post("/grants", response_model=GrantOut, status_code=201)
async def create_grant(services: ServicesDep, who: GrantsManager, body: GrantIn) -> GrantOut:
    """Issue a grant (issued by the calling client); studies that waited for it are read."""
    spec = GrantSpec(
        tenant=body.tenant,
        purpose=body.purpose,
        valid_from=body.valid_from,
        valid_to=body.valid_to,
        legal_basis=body.legal_basis,
        issued_by=f"client:{who.client_id}",
        sender_aets=tuple(body.sender_aets),
        modalities=tuple(body.modalities),
        study_date_from=body.study_date_from,
        study_date_to=body.study_date_to,
        study_uids=None if body.study_uids is None else tuple(body.study_uids),
    )

    def create() -> GrantOut:
        assert services.grant_store is not None
        grant = services.grant_store.create(check_senders(spec, services.settings.tenant_of))
        requeued = services.on_grant_created(grant) if services.on_grant_created else 0
        return GrantOut.of(grant, requeued)

    return await run_in_threadpool(create)


@router.get("/grants", response_model=list[GrantOut])
def list_grants(
    services: ServicesDep,
    who: GrantsManager,
    tenant: Annotated[str | None, Query(max_length=64, pattern=TENANT_PATTERN)] = None,
    purpose: Purpose | None = None,
) -> list[GrantOut]:
    assert services.grant_store is not None
    return [GrantOut.of(g) for g in services.grant_store.list(tenant=tenant, purpose=purpose)]


@router.get("/grants/{grant_id}", response_model=GrantOut)
def get_grant(services: ServicesDep, who: GrantsManager, grant_id: str) -> GrantOut:
    assert services.grant_store is not None
    return GrantOut.of(services.grant_store.get(grant_id))


@router.post("/grants/{grant_id}/revoke", response_model=GrantOut)
def revoke_grant(
    services: ServicesDep, who: GrantsManager, grant_id: str, body: RevokeIn
) -> GrantOut:
    """Revoke a grant from now on: its uses stop at once in every API process."""
    assert services.grant_store is not None
    grant = services.grant_store.revoke(grant_id, by=f"client:{who.client_id}", reason=body.reason)
    out = GrantOut.of(grant)
    out.models_trained = [
        f"{p.card.id} {p.card.version}"
        for p in services.registry.list()
        if grant.id in p.card.training.grants
    ]
    return out


__all__ = ["GrantError", "router"]
