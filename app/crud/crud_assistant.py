"""SQL of the QQ assistant: a QQ user's open conversation, created at most once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.models.assistant import ConversationStatus, QQAssistantConversation


async def open_conversation(session: AsyncSession, *, self_id: int, qq_user_id: int) -> QQAssistantConversation | None:
    """The user's open conversation, locked (PostgreSQL) until the transaction ends: two messages
    handled at once append their turns one after the other."""
    stmt = (
        select(QQAssistantConversation)
        .where(
            QQAssistantConversation.self_id == self_id,
            QQAssistantConversation.qq_user_id == qq_user_id,
            QQAssistantConversation.status == ConversationStatus.open,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def start_conversation(
    session: AsyncSession, *, self_id: int, qq_user_id: int, user_id: int
) -> QQAssistantConversation:
    """A new open conversation; if a concurrent transaction started one first (the partial
    unique index), that one, locked."""
    for _ in range(3):
        try:
            async with session.begin_nested():
                now = utcnow()
                row = QQAssistantConversation(
                    self_id=self_id,
                    qq_user_id=qq_user_id,
                    user_id=user_id,
                    status=ConversationStatus.open,
                    turns=[],
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
            return row
        except IntegrityError:
            found = await open_conversation(session, self_id=self_id, qq_user_id=qq_user_id)
            if found is not None:
                return found
    raise RuntimeError(f"could not start an assistant conversation for QQ {qq_user_id}")


async def get(
    session: AsyncSession, conversation_id: int, *, for_update: bool = False
) -> QQAssistantConversation | None:
    return await session.get(
        QQAssistantConversation, conversation_id, with_for_update=for_update, populate_existing=True
    )
