"""What the AI features keep: one `llm_calls` row per attempt at a provider (usage and cost
accounting, and the evidence of every fallback), and per ticket the latest triage suggestion
and the cached summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow


class LlmCall(Base):
    __tablename__ = "llm_calls"
    __table_args__ = (Index("ix_llm_calls_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # triage, summary, reply, assistant, ...
    feature: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    # NULL where the provider did not report usage (a stream without stream_usage).
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    # ok, timeout, rate_limited, server_error, connection_error, invalid_output, error, cancelled
    outcome: Mapped[str] = mapped_column(String(32))
    # A short reason for a failure (the status code, the validation error); never the prompt.
    error: Mapped[str | None] = mapped_column(String(300))


class TicketAi(Base):
    """The AI's notes on one ticket, for agents only."""

    __tablename__ = "ticket_ai"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    triage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    triaged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The ticket's newest timeline event id when the summary was made: any change (a message,
    # a note, a status) adds an event, so a different id means the summary is stale.
    summary_event_id: Mapped[int | None] = mapped_column(Integer)
    summarized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
