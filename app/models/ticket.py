"""Tickets, their messages and notes, the timeline, ratings, watchers and the number counter."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, TimestampMixin, UTCDateTime, utcnow
from app.models.attachment import Attachment
from app.models.category import Category
from app.models.tag import Tag, ticket_tags
from app.models.team import Team
from app.models.user import User


class TicketStatus(StrEnum):
    new = "new"
    open = "open"
    pending = "pending"
    resolved = "resolved"
    closed = "closed"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.low: 0, Priority.normal: 1, Priority.high: 2, Priority.urgent: 3}


class Channel(StrEnum):
    web = "web"
    android = "android"
    miniprogram = "miniprogram"
    qq = "qq"
    api = "api"


def _strings(enum: type[StrEnum], name: str) -> Enum:
    return Enum(enum, native_enum=False, length=16, validate_strings=True, name=name)


ticket_watchers = Table(
    "ticket_watchers",
    Base.metadata,
    Column("ticket_id", ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_updated_at_id", "updated_at", "id"),
        Index("ix_tickets_created_at_id", "created_at", "id"),
        Index("ix_tickets_priority_rank_id", "priority_rank", "id"),
        Index("ix_tickets_resolution_due_at_id", "resolution_due_at", "id"),
        Index("ix_tickets_requester_id_updated_at", "requester_id", "updated_at"),
        # The statistics' time windows (resolved, first answered in a range) and their durations
        # (minus created_at) from the index alone: no table lookup per ticket.
        Index("ix_tickets_resolved_at_created_at", "resolved_at", "created_at"),
        Index("ix_tickets_first_responded_at_created_at", "first_responded_at", "created_at"),
        CheckConstraint("priority_rank BETWEEN 0 AND 3", name="priority_rank_range"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[TicketStatus] = mapped_column(_strings(TicketStatus, "ticketstatus"), index=True)
    priority: Mapped[Priority] = mapped_column(_strings(Priority, "priority"))
    priority_rank: Mapped[int] = mapped_column(Integer)
    channel: Mapped[Channel] = mapped_column(_strings(Channel, "channel"), index=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="SET NULL"), index=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(Integer, default=1)

    # Optimistic concurrency: every UPDATE carries "WHERE version = <version read>", so a
    # concurrent writer gets StaleDataError (-> 409), never a lost update. We set the new value
    # ourselves, only for changes users make or see: bookkeeping does not bump it.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012  # SQLAlchemy's hook

    requester: Mapped[User] = relationship(foreign_keys=[requester_id], lazy="raise")
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id], lazy="raise")
    team: Mapped[Team | None] = relationship(lazy="raise")
    category: Mapped[Category | None] = relationship(lazy="raise")
    tags: Mapped[list[Tag]] = relationship(secondary=ticket_tags, lazy="raise", order_by=Tag.name)
    merged_into: Mapped[Ticket | None] = relationship(remote_side=[id], lazy="raise")
    rating: Mapped[Rating | None] = relationship(back_populates="ticket", lazy="raise", uselist=False)
    watchers: Mapped[list[User]] = relationship(secondary=ticket_watchers, lazy="raise")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_ticket_id_id", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    body: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[Channel] = mapped_column(_strings(Channel, "channel"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[User] = relationship(lazy="raise")
    attachments: Mapped[list[Attachment]] = relationship(lazy="raise", order_by="Attachment.id")


class TicketEvent(Base):
    """Append-only timeline; also the source of realtime events and webhooks."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket_id_id", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    actor: Mapped[User | None] = relationship(lazy="raise")


class Rating(TimestampMixin, Base):
    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),
        Index("ix_ratings_created_at", "created_at"),  # CSAT over a range
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)

    ticket: Mapped[Ticket] = relationship(back_populates="rating", lazy="raise")


class TicketNumberCounter(Base):
    """One row per business day: the last sequence number handed out that day."""

    __tablename__ = "ticket_number_counters"

    day: Mapped[str] = mapped_column(String(16), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)
