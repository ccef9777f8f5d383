"""The QQ helpdesk's tables: the inbox of OneBot events, where each QQ ticket came from, the
bot's sent messages (for quote-replies), and one-time binding codes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow


class InboxStatus(StrEnum):
    pending = "pending"
    done = "done"
    failed = "failed"


class QQInboxEvent(Base):
    """Every OneBot event that carries an id, written before it is handled: a repeated delivery
    hits the unique key, a crash mid-handling leaves it pending for its job to retry."""

    __tablename__ = "qq_inbox"
    __table_args__ = (UniqueConstraint("self_id", "post_type", "event_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    self_id: Mapped[int] = mapped_column(BigInteger)
    post_type: Mapped[str] = mapped_column(String(32))
    # message_id (opaque: beyond int32 or negative) or a request's flag, as text.
    event_key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[InboxStatus] = mapped_column(
        Enum(InboxStatus, native_enum=False, length=16, validate_strings=True), default=InboxStatus.pending
    )
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QQTicketOrigin(Base):
    """Where a ticket opened from QQ came from: a private chat, or a group (`group_id`), so a
    notification can fall back to an @ in that group when a private message is refused."""

    __tablename__ = "qq_ticket_origins"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    self_id: Mapped[int] = mapped_column(BigInteger)
    qq_user_id: Mapped[int] = mapped_column(BigInteger)
    group_id: Mapped[int | None] = mapped_column(BigInteger)


class QQSentMessage(Base):
    """A message the bot sent about a ticket. NapCat keeps only ~5000 messages for get_msg, so a
    quote-reply is resolved from this map, never by fetching the quoted message."""

    __tablename__ = "qq_sent_messages"
    __table_args__ = (UniqueConstraint("self_id", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    self_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QQBindingCode(Base):
    """A one-time code that links a QQ account to a web account (`/绑定 <code>`); stored hashed."""

    __tablename__ = "qq_binding_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
