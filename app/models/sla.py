"""SLA: policies (targets by priority and category), the business calendar saved by admins, and
each ticket's SLA bookkeeping (paused time, when to warn, which alerts went out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, TimestampMixin, UTCDateTime, utcnow
from app.models.ticket import Priority, Ticket, _strings


class SlaPolicy(TimestampMixin, Base):
    """Targets in business minutes (None: no target). A ticket takes the policy of its priority
    and category, else of its priority and parent category, else of its priority alone."""

    __tablename__ = "sla_policies"
    __table_args__ = (
        # NULLs are distinct in a unique constraint: the partial index below covers the
        # priority-only policies, this one the category-specific ones.
        UniqueConstraint("priority", "category_id"),
        Index(
            "uq_sla_policies_priority_default",
            "priority",
            unique=True,
            sqlite_where=text("category_id IS NULL"),
            postgresql_where=text("category_id IS NULL"),
        ),
        CheckConstraint("first_response_minutes IS NULL OR first_response_minutes > 0", name="first_response_positive"),
        CheckConstraint("resolution_minutes IS NULL OR resolution_minutes > 0", name="resolution_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    priority: Mapped[Priority] = mapped_column(_strings(Priority, "priority"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"), index=True)
    first_response_minutes: Mapped[int | None] = mapped_column(Integer)
    resolution_minutes: Mapped[int | None] = mapped_column(Integer)


class BusinessCalendarRow(Base):
    """The calendar an admin saved (one row, id 1): it wins over the settings file; a null
    `document` means "back to the file". `revision` only grows, so every process sees that its
    cached copy is stale with one small read."""

    __tablename__ = "business_calendars"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class TicketSla(Base):
    """One row per ticket (made at its creation when a policy applies, else at its first
    change). The due dates themselves live on `tickets`; this holds what computing them needs
    and what the periodic check claims.

    `*_warn_at` / `*_breach_at` are set only while the alert is still to come (clock running,
    target not met, not yet sent), so the check is an indexed range scan; `*_warned_at` /
    `*_breached_at` record that the alert went out, set by a conditional UPDATE (row lock), so
    of two workers checking at once exactly one sends it."""

    __tablename__ = "ticket_slas"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("sla_policies.id", ondelete="SET NULL"), index=True)
    # What the due dates were computed from: a change that leaves it equal skips the work.
    basis: Mapped[str] = mapped_column(String(128), default="")
    # Business seconds the clock stood still (pending, resolved, closed) before `paused_at`.
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # paused_seconds as of the first response: the first-response due date stays put after it.
    response_paused_seconds: Mapped[int | None] = mapped_column(Integer)
    first_response_warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    first_response_breach_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    resolution_warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    resolution_breach_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    first_response_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Set on a ticket not yet inserted (its due dates go into its INSERT): the flush orders
    # the two rows and fills ticket_id.
    ticket: Mapped[Ticket] = relationship(lazy="raise")
