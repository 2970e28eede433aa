"""Webhooks of the caller's tenant: register, list, show, disable, delete; their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from preread.api.bodies import RequestBody
from preread.api.deps import ServicesDep, WebhooksManager
from preread.webhooks.delivery import DeliveryResult, public_result, status_class
from preread.webhooks.outbox import (
    EVENT_TYPES,
    DeliveryNotFoundError,
    DeliveryRecord,
    WebhookRecord,
)

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


class WebhookIn(RequestBody):
    url: str = Field(
        max_length=2048,
        description="https URL that receives the events; its host must resolve to public "
        "addresses only (or to networks the operator allows): 422 says why not",
    )
    events: list[str] = Field(
        default=list(EVENT_TYPES), max_length=len(EVENT_TYPES), description="event types"
    )
    description: str = Field(default="", max_length=500)


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    created_at: datetime
    enabled: bool

    @classmethod
    def of(cls, hook: WebhookRecord) -> WebhookOut:
        return cls(
            id=hook.id,
            url=hook.url,
            events=list(hook.events),
            description=hook.description,
            created_at=hook.created_at,
            enabled=hook.enabled,
        )


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="signing secret (Standard Webhooks, whsec_...): shown once, keep it"
    )


class DeliveryOut(BaseModel):
    id: str = Field(description="the webhook-id header of every attempt")
    event_type: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_result: (
        Literal["delivered", "rejected", "unreachable", "refused-address", "disabled"] | None
    ) = Field(
        description="the last attempt: delivered; rejected (the receiver answered, not 2xx); "
        "unreachable (no answer); refused-address (the URL resolves to an address webhooks "
        "may not reach); disabled (the webhook was disabled); null: not tried yet"
    )
    last_status_class: str | None = Field(
        description="the status class of a rejected attempt's answer: 3xx (redirects are not "
        "followed), 4xx or 5xx"
    )
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, d: DeliveryRecord) -> DeliveryOut:
        result = public_result(d)
        return cls(
            id=d.id,
            event_type=d.event_type,
            state=d.state.value,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_attempt_at=d.last_attempt_at,
            last_result=None if result is None else result.value,
            last_status_class=status_class(d.last_status)
            if result is DeliveryResult.REJECTED
            else None,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            payload=dict(d.payload),
        )


@router.post("/webhooks", response_model=WebhookCreatedOut, status_code=201)
def create_webhook(
    services: ServicesDep, who: WebhooksManager, body: WebhookIn
) -> WebhookCreatedOut:
    """Register a URL for the tenant's events; the answer holds the signing secret, once.

    The URL's host is resolved and every address checked (422 naming why one is refused)."""
    services.destinations.check(body.url)
    hook, secret = services.webhooks.create(who.tenant, body.url, body.events, body.description)
    return WebhookCreatedOut(**WebhookOut.of(hook).model_dump(), secret=secret)


@router.get("/webhooks", response_model=list[WebhookOut])
def list_webhooks(services: ServicesDep, who: WebhooksManager) -> list[WebhookOut]:
    return [WebhookOut.of(h) for h in services.webhooks.list(who.tenant)]


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut)
def get_webhook(services: ServicesDep, who: WebhooksManager, webhook_id: str) -> WebhookOut:
    return WebhookOut.of(services.webhooks.get(who.tenant, webhook_id))


@router.post("/webhooks/{webhook_id}/disable", response_model=WebhookOut)
def disable_webhook(services: ServicesDep, who: WebhooksManager, webhook_id: str) -> WebhookOut:
    """Stop sending to the URL (messages already queued are kept)."""
    return WebhookOut.of(services.webhooks.disable(who.tenant, webhook_id))


@router.delete("/webhooks/{webhook_id}", status_code=204, response_class=Response)
def delete_webhook(services: ServicesDep, who: WebhooksManager, webhook_id: str) -> Response:
    """Remove the webhook and its delivery records."""
    services.webhooks.delete(who.tenant, webhook_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    services: ServicesDep,
    who: WebhooksManager,
    webhook_id: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """The webhook's latest messages, newest first, with their delivery state."""
    return [DeliveryOut.of(d) for d in services.webhooks.deliveries(who.tenant, webhook_id, limit)]


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut
)
def redeliver(
    services: ServicesDep, who: WebhooksManager, webhook_id: str, delivery_id: str
) -> DeliveryOut:
    """Send a message that gave up (``failed``) again, with a fresh retry schedule."""
    services.webhooks.get(who.tenant, webhook_id)
    delivery = services.webhooks.delivery(who.tenant, delivery_id)
    if delivery.webhook_id != webhook_id:
        raise DeliveryNotFoundError(delivery_id)
    return DeliveryOut.of(services.webhooks.redeliver(who.tenant, delivery_id))
