"""Response shapes of the statistics endpoints (`/stats/overview`, `/timeseries`, `/agents`).

Durations are seconds (floats, millisecond precision); shares are fractions in 0..1; a figure
with nothing to measure is null, never 0.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime

from pydantic import BaseModel, Field

from app.models.ticket import Channel, Priority, TicketStatus


class StatsRange(BaseModel):
    """The instants the figures cover: `from` inclusive, `to` exclusive, both UTC."""

    from_: datetime = Field(serialization_alias="from")
    to: datetime
    timezone: str = Field(description="the business timezone (HELPDESK_TIMEZONE) that days are counted in")


class StatsFilters(BaseModel):
    team_id: int | None = None
    category_id: int | None = None
    channel: Channel | None = None
    priority: Priority | None = None


class DurationStats(BaseModel):
    """Wall-clock durations (not business hours) of the tickets measured."""

    count: int
    median_seconds: float | None
    p90_seconds: float | None


class SlaCompliance(BaseModel):
    """Of the tickets with a due date: `met` stopped the clock at or before it; `breached`
    stopped it later, or are still running past it. Still running and not yet due: neither."""

    met: int
    breached: int
    compliance: float | None = Field(description="met / (met + breached); null when both are 0")


class SlaStats(BaseModel):
    first_response: SlaCompliance
    resolution: SlaCompliance


class CsatStats(BaseModel):
    count: int
    average: float | None
    distribution: dict[str, int] = Field(description='ratings per score, "1" to "5", zeros included')


class CategoryCount(BaseModel):
    category_id: int | None = Field(description="null: tickets without a category")
    count: int


class StatsOverview(BaseModel):
    range: StatsRange
    filters: StatsFilters
    created: int = Field(description="tickets created in the range (the cohort the counts and SLA describe)")
    resolved: int = Field(description="tickets whose resolution fell in the range")
    by_status: dict[TicketStatus, int] = Field(description="the cohort by current status, zeros included")
    by_priority: dict[Priority, int]
    by_channel: dict[Channel, int]
    by_category: list[CategoryCount] = Field(description="categories with tickets in the cohort, largest first")
    first_response: DurationStats = Field(description="tickets first answered in the range: first reply - creation")
    resolution: DurationStats = Field(description="tickets resolved in the range: resolution - creation")
    sla: SlaStats = Field(description="the cohort (created in the range)")
    csat: CsatStats = Field(description="ratings given in the range")


class DayPoint(BaseModel):
    date: dt.date = Field(description="a day in the business timezone")
    created: int
    resolved: int


class StatsTimeseries(BaseModel):
    range: StatsRange
    filters: StatsFilters
    interval: str = "day"
    points: list[DayPoint] = Field(description="every day of the range in order, days without tickets included")


class GroupStats(BaseModel):
    """The overview's figures for one agent (current assignee) or one team."""

    created: int
    resolved: int
    first_response: DurationStats
    resolution: DurationStats
    sla: SlaStats
    csat: CsatStats


class AgentStats(GroupStats):
    agent_id: int | None = Field(description="null: tickets without an assignee")
    display_name: str | None
    is_active: bool | None


class TeamStats(GroupStats):
    team_id: int | None = Field(description="null: tickets without a team")
    name: str | None


class StatsAgents(BaseModel):
    range: StatsRange
    filters: StatsFilters
    agents: list[AgentStats] = Field(description="every agent and admin, then the unassigned row")
    teams: list[TeamStats] = Field(description="every team, then the row of tickets without one")
