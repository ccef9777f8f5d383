"""Outgoing webhooks (admin): configure them and read their delivery log."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Response, status

from app.api.v1.dependencies import AdminUser, PageDep, SessionDep
from app.core.errors import Forbidden, InvalidCursor, WebhookNotFound, problem_responses
from app.core.pagination import after_id, id_page
from app.crud import crud_webhook
from app.models.webhook import Webhook
from app.schemas.common import Page
from app.schemas.webhook import WebhookCreate, WebhookCreated, WebhookDeliveryRead, WebhookRead, WebhookUpdate

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.get("", response_model=Page[WebhookRead], responses=problem_responses(Forbidden, InvalidCursor))
async def list_webhooks(admin: AdminUser, session: SessionDep, page: PageDep) -> Page[WebhookRead]:
    rows = await crud_webhook.list_page(session, after_id=after_id(page.cursor), limit=page.limit)
    rows, next_cursor = id_page(rows, page.limit)
    return Page[WebhookRead](items=[WebhookRead.model_validate(w) for w in rows], next_cursor=next_cursor)


@router.post(
    "", response_model=WebhookCreated, status_code=status.HTTP_201_CREATED, responses=problem_responses(Forbidden)
)
async def create_webhook(body: WebhookCreate, admin: AdminUser, session: SessionDep) -> Webhook:
    webhook = Webhook(
        url=str(body.url),
        secret=body.secret or secrets.token_urlsafe(32),
        event_types=body.event_types,
        description=body.description,
        is_active=True,
        consecutive_failures=0,
    )
    session.add(webhook)
    await session.flush()
    return webhook


@router.get("/{webhook_id}", response_model=WebhookRead, responses=problem_responses(Forbidden, WebhookNotFound))
async def read_webhook(webhook_id: int, admin: AdminUser, session: SessionDep) -> Webhook:
    return await _get(session, webhook_id)


@router.patch("/{webhook_id}", response_model=WebhookRead, responses=problem_responses(Forbidden, WebhookNotFound))
async def update_webhook(webhook_id: int, body: WebhookUpdate, admin: AdminUser, session: SessionDep) -> Webhook:
    webhook = await _get(session, webhook_id)
    if body.url is not None:
        webhook.url = str(body.url)
    if body.secret is not None:
        webhook.secret = body.secret
    if body.event_types is not None:
        webhook.event_types = body.event_types
    if "description" in body.model_fields_set:
        webhook.description = body.description
    if body.is_active is not None:
        webhook.is_active = body.is_active
        if body.is_active:  # a fresh start after it was switched off
            webhook.consecutive_failures, webhook.disabled_reason = 0, None
    await session.flush()
    return webhook


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(Forbidden, WebhookNotFound)
)
async def delete_webhook(webhook_id: int, admin: AdminUser, session: SessionDep) -> Response:
    await session.delete(await _get(session, webhook_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[WebhookDeliveryRead],
    responses=problem_responses(Forbidden, WebhookNotFound, InvalidCursor),
)
async def list_deliveries(
    webhook_id: int, admin: AdminUser, session: SessionDep, page: PageDep
) -> Page[WebhookDeliveryRead]:
    """Newest first."""
    await _get(session, webhook_id)
    rows = await crud_webhook.deliveries_page(session, webhook_id, before_id=after_id(page.cursor), limit=page.limit)
    rows, next_cursor = id_page(rows, page.limit)
    return Page[WebhookDeliveryRead](
        items=[WebhookDeliveryRead.model_validate(d) for d in rows], next_cursor=next_cursor
    )


async def _get(session: SessionDep, webhook_id: int) -> Webhook:
    webhook = await crud_webhook.get(session, webhook_id)
    if webhook is None:
        raise WebhookNotFound
    return webhook
