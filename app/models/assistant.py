"""The QQ assistant's conversations: what a QQ user asked in a private chat, what the assistant
answered from the knowledge base, and how it ended (resolved, or handed over as a ticket).

One open conversation per (bot, QQ user) at most, enforced by a partial unique index, so two
messages handled at once cannot start two. `turns` is the transcript, in order; each entry is
`{"role": "user"|"assistant", "text": str, "at": iso time, ...}`: a user turn also has `lang`
and `answered` (the assistant's job sets it, so a re-run never answers twice), an assistant
turn the ids of the articles it cited.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow


class ConversationStatus(StrEnum):
    open = "open"
    handed_over = "handed_over"  # a ticket was opened (`ticket_id`)
    resolved = "resolved"  # the user said the answer helped
    expired = "expired"  # idle too long: the next message starts afresh


class QQAssistantConversation(Base):
    __tablename__ = "qq_assistant_conversations"
    __table_args__ = (
        Index(
            "uq_qq_assistant_conversations_open",
            "self_id",
            "qq_user_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    self_id: Mapped[int] = mapped_column(BigInteger)
    qq_user_id: Mapped[int] = mapped_column(BigInteger)
    # The helpdesk account behind the QQ user: the requester of the ticket a handover opens.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[ConversationStatus] = mapped_column(
        Enum(ConversationStatus, native_enum=False, length=16, validate_strings=True, name="conversationstatus"),
        default=ConversationStatus.open,
    )
    turns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
