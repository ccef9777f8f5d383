"""Webhook schemas (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, HttpUrl
from pydantic_core import PydanticCustomError

from app.models.webhook import DeliveryStatus
from app.schemas.common import ReadModel, RequestModel

EVENT_TYPES = frozenset(
    {
        "ticket.created",
        "ticket.updated",
        "ticket.assigned",
        "ticket.message_added",
        "ticket.note_added",
        "ticket.merged",
        "ticket.rated",
        "sla.warning",
        "sla.breached",
    }
)


def _known_types(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - EVENT_TYPES)
    if unknown:
        raise PydanticCustomError("invalid_value", "unknown event types: {unknown}", {"unknown": unknown})
    return sorted(set(value))


EventTypes = Annotated[list[str], Field(max_length=len(EVENT_TYPES)), AfterValidator(_known_types)]
Url = Annotated[HttpUrl, Field(max_length=500)]


class WebhookCreate(RequestModel):
    url: Url
    # Generated when omitted; at least 16 characters when given.
    secret: Annotated[str, Field(min_length=16, max_length=128)] | None = None
    event_types: EventTypes = Field(default_factory=list)
    description: Annotated[str, Field(max_length=200)] | None = None


class WebhookUpdate(RequestModel):
    url: Url | None = None
    secret: Annotated[str, Field(min_length=16, max_length=128)] | None = None
    event_types: EventTypes | None = None
    description: Annotated[str, Field(max_length=200)] | None = None
    # true re-enables a webhook that was switched off after failures.
    is_active: bool | None = None


class WebhookRead(ReadModel):
    id: int
    url: str
    event_types: list[str]
    description: str | None
    is_active: bool
    consecutive_failures: int
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead):
    """Only the create answer shows the secret (the receiver needs it to verify signatures)."""

    secret: str


class WebhookDeliveryRead(ReadModel):
    id: int
    webhook_id: int
    event_id: int
    event_type: str
    status: DeliveryStatus
    attempts: int
    response_status: int | None
    error: str | None
    created_at: datetime
    delivered_at: datetime | None
