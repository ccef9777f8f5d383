"""SQL of the QQ helpdesk: the event inbox, ticket origins, the bot's sent-message map."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.statements import dialect_name, upsert_insert
from app.models.qq import InboxStatus, QQInboxEvent, QQSentMessage, QQTicketOrigin
from app.models.user import ExternalIdentity, IdentityProvider, User


def _insert(session: AsyncSession) -> Any:
    return upsert_insert(dialect_name(session))


async def add_inbox(
    session: AsyncSession, *, self_id: int, post_type: str, event_key: str, payload: dict[str, Any]
) -> int | None:
    """The new row's id, or None when this event is already in the inbox (a repeat delivery)."""
    stmt = (
        _insert(session)(QQInboxEvent)
        .values(
            self_id=self_id,
            post_type=post_type,
            event_key=event_key,
            payload=payload,
            status=InboxStatus.pending,
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["self_id", "post_type", "event_key"])
        .returning(QQInboxEvent.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_inbox(session: AsyncSession, inbox_id: int) -> QQInboxEvent | None:
    return await session.get(QQInboxEvent, inbox_id, with_for_update=session.get_bind().dialect.name == "postgresql")


async def set_origin(
    session: AsyncSession, *, ticket_id: int, self_id: int, qq_user_id: int, group_id: int | None
) -> None:
    session.add(QQTicketOrigin(ticket_id=ticket_id, self_id=self_id, qq_user_id=qq_user_id, group_id=group_id))
    await session.flush()


async def get_origin(session: AsyncSession, ticket_id: int) -> QQTicketOrigin | None:
    return await session.get(QQTicketOrigin, ticket_id)


async def record_sent(
    session: AsyncSession, *, self_id: int, message_id: str, ticket_id: int, group_id: int | None
) -> None:
    stmt = (
        _insert(session)(QQSentMessage)
        .values(self_id=self_id, message_id=message_id, ticket_id=ticket_id, group_id=group_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["self_id", "message_id"])
    )
    await session.execute(stmt)


async def ticket_for_sent(session: AsyncSession, *, self_id: int, message_id: str) -> int | None:
    stmt = select(QQSentMessage.ticket_id).where(
        QQSentMessage.self_id == self_id, QQSentMessage.message_id == message_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def qq_of_user(session: AsyncSession, user_id: int) -> int | None:
    """The QQ number bound to a user, if any."""
    stmt = select(ExternalIdentity.external_id).where(
        ExternalIdentity.user_id == user_id, ExternalIdentity.provider == IdentityProvider.qq
    )
    external_id = (await session.execute(stmt.limit(1))).scalar_one_or_none()
    return int(external_id) if external_id and external_id.isdigit() else None


async def bound_user(session: AsyncSession, qq_user_id: int) -> User | None:
    """The account this QQ number is linked to, without creating one."""
    stmt = (
        select(User)
        .join(ExternalIdentity, ExternalIdentity.user_id == User.id)
        .where(ExternalIdentity.provider == IdentityProvider.qq, ExternalIdentity.external_id == str(qq_user_id))
    )
    return (await session.execute(stmt)).scalar_one_or_none()
