"""Outgoing webhooks: which hooks want an event, the signed request, the delivery log.

Delivery is at-least-once (a receiver's answer can be lost after it acted): every request
carries the event id and the delivery id so receivers can de-duplicate.
Signature (API.md): `X-Helpdesk-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import WebhookSettings
from app.core.logging import redact
from app.crud import crud_webhook
from app.db.base import utcnow
from app.models.ticket import TicketEvent
from app.models.webhook import DeliveryStatus, Webhook, WebhookDelivery

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """This attempt did not reach a 2xx answer; the job retries it. `status` is the receiver's
    HTTP status when it answered at all."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_body(event: TicketEvent) -> bytes:
    """The same frame realtime clients get: {id, type, ticket_id, data, created_at}."""
    frame = {
        "id": event.id,
        "type": event.type,
        "ticket_id": event.ticket_id,
        "internal": event.internal,
        "data": event.data,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()


def wants(webhook: Webhook, event_type: str) -> bool:
    return webhook.is_active and (not webhook.event_types or event_type in webhook.event_types)


class WebhookService:
    def __init__(self, settings: WebhookSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    async def deliver(self, webhook: Webhook, delivery: WebhookDelivery, event: TicketEvent) -> int:
        """POST the event once; the response status on 2xx, DeliveryFailed otherwise."""
        body = event_body(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "helpdesk-webhooks/1",
            "X-Helpdesk-Event": event.type,
            "X-Helpdesk-Delivery": str(delivery.id),
            "X-Helpdesk-Signature": sign(webhook.secret, body, int(time.time())),
        }
        try:
            response = await self.http.post(
                webhook.url,
                content=body,
                headers=headers,
                timeout=self.settings.timeout_seconds,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {redact(str(exc))[:300]}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"HTTP {response.status_code}", status=response.status_code)
        return response.status_code

    async def record_success(self, session: AsyncSession, delivery: WebhookDelivery, status: int) -> None:
        delivery.status, delivery.response_status, delivery.error = DeliveryStatus.succeeded, status, None
        delivery.delivered_at = utcnow()
        await crud_webhook.reset_failures(session, delivery.webhook_id)

    async def record_failure(
        self, session: AsyncSession, delivery: WebhookDelivery, failure: DeliveryFailed, *, final: bool
    ) -> None:
        delivery.error = str(failure)[:2000]
        delivery.response_status = failure.status
        if not final:
            return
        delivery.status = DeliveryStatus.failed
        failures = await crud_webhook.count_failure(session, delivery.webhook_id)
        if failures >= self.settings.disable_after_failures:
            await crud_webhook.disable(session, delivery.webhook_id, reason="too_many_failures")
            log.warning("webhook %s disabled after %s failed deliveries in a row", delivery.webhook_id, failures)


def delivery_key(webhook_id: int, event_id: int) -> str:
    return f"webhook:{webhook_id}:event:{event_id}"
