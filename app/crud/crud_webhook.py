"""Webhooks and their deliveries: all their SQL."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.statements import dialect_name, upsert_insert
from app.models.webhook import DeliveryStatus, Webhook, WebhookDelivery


async def list_page(session: AsyncSession, *, after_id: int | None, limit: int) -> list[Webhook]:
    stmt = select(Webhook).order_by(Webhook.id).limit(limit + 1)
    if after_id is not None:
        stmt = stmt.where(Webhook.id > after_id)
    return list((await session.execute(stmt)).scalars())


async def get(session: AsyncSession, webhook_id: int) -> Webhook | None:
    return await session.get(Webhook, webhook_id)


async def active(session: AsyncSession) -> list[Webhook]:
    return list((await session.execute(select(Webhook).where(Webhook.is_active.is_(True)))).scalars())


async def add_delivery(session: AsyncSession, *, webhook_id: int, event_id: int, event_type: str) -> int | None:
    """The delivery's id; None when this event was already handed to this webhook."""
    insert = upsert_insert(dialect_name(session))
    stmt = (
        insert(WebhookDelivery)
        .values(
            webhook_id=webhook_id,
            event_id=event_id,
            event_type=event_type,
            status=DeliveryStatus.pending,
            attempts=0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[WebhookDelivery.webhook_id, WebhookDelivery.event_id])
        .returning(WebhookDelivery.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_delivery(session: AsyncSession, delivery_id: int) -> WebhookDelivery | None:
    return await session.get(WebhookDelivery, delivery_id)


async def deliveries_page(
    session: AsyncSession, webhook_id: int, *, before_id: int | None, limit: int
) -> list[WebhookDelivery]:
    """Newest first."""
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    return list((await session.execute(stmt)).scalars())


async def reset_failures(session: AsyncSession, webhook_id: int) -> None:
    await session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(consecutive_failures=0)
        .execution_options(synchronize_session=False)
    )


async def count_failure(session: AsyncSession, webhook_id: int) -> int:
    result = await session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(consecutive_failures=Webhook.consecutive_failures + 1)
        .returning(Webhook.consecutive_failures)
        .execution_options(synchronize_session=False)
    )
    return int(result.scalar_one())


async def disable(session: AsyncSession, webhook_id: int, *, reason: str) -> None:
    await session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(is_active=False, disabled_reason=reason)
        .execution_options(synchronize_session=False)
    )
