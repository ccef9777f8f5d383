"""Shapes of the agents' AI endpoints: ticket summaries, the stored triage suggestion, and the
admins' LLM usage report. (Reply drafts are an SSE stream; their frames are described in
app/api/v1/endpoints/ai.py.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.schemas.stats import StatsRange

Mood = Literal["positive", "neutral", "anxious", "frustrated", "angry"]


class SummaryDraft(BaseModel):
    """What the model is asked for (its JSON Schema goes into the prompt). Lengths are not
    constrained here: an answer a little too long is trimmed, not sent back for repair."""

    intent: str = Field(description="what the customer wants, one sentence")
    summary: str = Field(description="what happened so far and where the ticket stands, 2-5 sentences")
    open_questions: list[str] = Field(
        default_factory=list, description="questions still unanswered or things to follow up; empty when none"
    )
    mood: Mood = Field(description="the customer's mood in their latest messages")


class TicketSummaryRead(BaseModel):
    intent: str
    summary: str
    open_questions: list[str]
    mood: Mood
    cached: bool = Field(description="true when served from the cache: the ticket has not changed since")
    generated_at: datetime
    provider: str
    model: str


class TicketTriageRead(BaseModel):
    """The latest triage suggestion, as the triage job stored it (category_id, priority, tags,
    summary, language, sentiment, provider, model); null when the ticket was never triaged."""

    ticket_id: int
    mode: Literal["off", "suggest", "apply"] = Field(description="the triage mode configured now")
    suggestion: dict[str, Any] | None
    triaged_at: datetime | None


class LlmUsageFigures(BaseModel):
    calls: int = Field(description="attempts at a provider (a fallback or a repair is one more)")
    failures: int = Field(description="attempts whose outcome was not ok")
    prompt_tokens: int = Field(description="as reported by the providers; calls that reported none count 0")
    completion_tokens: int
    avg_latency_ms: float | None = Field(description="null when there were no calls")


class LlmUsageGroup(LlmUsageFigures):
    key: str = Field(description="the day (YYYY-MM-DD, business timezone), the feature or the provider")


class LlmUsageReport(BaseModel):
    range: StatsRange
    group_by: Literal["day", "feature", "provider"]
    groups: list[LlmUsageGroup] = Field(description="days: every day of the range, zeros included; else by key")
    total: LlmUsageFigures
