"""Statistics for agents and admins: volume, created vs resolved per day, first-response and
resolution times (median, p90), SLA compliance and CSAT, overall, per agent and per team.

The figures are computed by aggregate SQL in app/crud/crud_stats.py (a fixed number of
statements per request, whatever the number of tickets); this module turns the query
parameters into a window of UTC instants and the aggregate rows into the response schemas.

Windows: `from`/`to` are dates in the business timezone (`to` inclusive: the whole day) or
RFC 3339 datetimes with an offset (`to` exclusive). Default: the last 30 business days,
today included. At most 366 business days.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import FieldProblem
from app.crud import crud_stats
from app.crud.crud_stats import FIRST_RESPONSE, RESOLUTION, Scope
from app.models.ticket import Channel, Priority, TicketStatus
from app.models.user import User
from app.schemas.stats import (
    AgentStats,
    CategoryCount,
    CsatStats,
    DayPoint,
    DurationStats,
    GroupStats,
    SlaCompliance,
    SlaStats,
    StatsAgents,
    StatsFilters,
    StatsOverview,
    StatsRange,
    StatsTimeseries,
    TeamStats,
)

DEFAULT_DAYS = 30
MAX_DAYS = 366
SCORES = range(1, 6)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SPACED_OFFSET = re.compile(r"(?<=\d) (\d{2}:\d{2})$")
_MICROSECOND = timedelta(microseconds=1)


# --- the window ----------------------------------------------------------------------------------


def parse_bound(raw: str | None, field: str) -> date | datetime | None:
    """`YYYY-MM-DD` (a business day) or an RFC 3339 datetime with its offset; else 422."""
    if raw is None or not raw.strip():
        return None
    # An unencoded "+08:00" in a query string arrives as " 08:00": restore the sign.
    raw = _SPACED_OFFSET.sub(r"+\1", raw.strip())
    try:
        if _DATE.fullmatch(raw):
            return date.fromisoformat(raw)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise FieldProblem(field, "invalid_value") from None
    if moment.tzinfo is None:  # RFC 3339 requires the offset; guessing it would shift the window
        raise FieldProblem(field, "invalid_value")
    return moment.astimezone(UTC)


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of `day` in `tz`, in UTC. Where midnight falls in a DST gap, fold=0
    takes the offset before the jump, which lands exactly on the jump: the day's first instant."""
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def window(
    from_: date | datetime | None, to: date | datetime | None, *, tz: ZoneInfo, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) in UTC; 422 when empty, reversed or longer than MAX_DAYS business days."""
    if to is None:
        end = day_start(now.astimezone(tz).date() + timedelta(days=1), tz)
    elif isinstance(to, datetime):
        end = to
    else:
        end = day_start(to + timedelta(days=1), tz)
    if from_ is None:
        last_day = (end - _MICROSECOND).astimezone(tz).date()
        start = day_start(last_day - timedelta(days=DEFAULT_DAYS - 1), tz)
    elif isinstance(from_, datetime):
        start = from_
    else:
        start = day_start(from_, tz)
    if start >= end:
        raise FieldProblem("from", "invalid_value")
    span = ((end - _MICROSECOND).astimezone(tz).date() - start.astimezone(tz).date()).days + 1
    if span > MAX_DAYS:
        raise FieldProblem("to", "range_too_long", limit=MAX_DAYS)
    return start, end


def days(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[date, datetime, datetime]]:
    """Each business day the window touches, with its bounds clipped to the window."""
    first = start.astimezone(tz).date()
    last = (end - _MICROSECOND).astimezone(tz).date()
    result = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        lo = max(start, day_start(day, tz))
        hi = min(end, day_start(day + timedelta(days=1), tz))
        result.append((day, lo, hi))
    return result


def _range(scope: Scope, tz: ZoneInfo) -> StatsRange:
    return StatsRange(from_=scope.start, to=scope.end, timezone=tz.key)


def _filters(scope: Scope) -> StatsFilters:
    return StatsFilters(
        team_id=scope.team_id, category_id=scope.category_id, channel=scope.channel, priority=scope.priority
    )


# --- rows to figures -----------------------------------------------------------------------------


def _seconds(microseconds: Any) -> float | None:
    return None if microseconds is None else round(float(microseconds) / 1_000_000, 3)


def _duration(row: Any | None) -> DurationStats:
    if row is None:
        return DurationStats(count=0, median_seconds=None, p90_seconds=None)
    return DurationStats(count=int(row.n), median_seconds=_seconds(row.p0), p90_seconds=_seconds(row.p1))


def _compliance(met: int, breached: int) -> SlaCompliance:
    total = met + breached
    return SlaCompliance(met=met, breached=breached, compliance=round(met / total, 4) if total else None)


def _sla(row: Any | None) -> SlaStats:
    if row is None:
        return SlaStats(first_response=_compliance(0, 0), resolution=_compliance(0, 0))
    return SlaStats(
        first_response=_compliance(int(row.fr_met), int(row.fr_breached)),
        resolution=_compliance(int(row.res_met), int(row.res_breached)),
    )


def _csat(distribution: dict[int, int]) -> CsatStats:
    count = sum(distribution.values())
    total = sum(score * n for score, n in distribution.items())
    return CsatStats(
        count=count,
        average=round(total / count, 3) if count else None,
        distribution={str(score): distribution.get(score, 0) for score in SCORES},
    )


class _Groups:
    """The three aggregate results of one grouping, by group key."""

    def __init__(self, cohorts: Sequence[Any], durations: Sequence[Any], ratings: Sequence[Any]) -> None:
        self.cohorts = {row.g: row for row in cohorts}
        self.durations = {(row.g, row.kind): row for row in durations}
        self.ratings: dict[Any, dict[int, int]] = {}
        for row in ratings:
            self.ratings.setdefault(row.g, {})[int(row.score)] = int(row.n)

    def keys(self) -> set[Any]:
        return set(self.cohorts) | {g for g, _ in self.durations} | set(self.ratings)

    def figures(self, key: Any) -> GroupStats:
        cohort = self.cohorts.get(key)
        resolution = self.durations.get((key, RESOLUTION))
        return GroupStats(
            created=int(cohort.created) if cohort is not None else 0,
            resolved=int(resolution.n) if resolution is not None else 0,
            first_response=_duration(self.durations.get((key, FIRST_RESPONSE))),
            resolution=_duration(resolution),
            sla=_sla(cohort),
            csat=_csat(self.ratings.get(key, {})),
        )


async def _groups(session: AsyncSession, user: User, scope: Scope, by: str | None) -> _Groups:
    return _Groups(
        await crud_stats.cohort(session, user, scope, by=by),
        await crud_stats.durations(session, user, scope, by=by),
        await crud_stats.ratings(session, user, scope, by=by),
    )


# --- the endpoints' figures ----------------------------------------------------------------------


async def overview(session: AsyncSession, user: User, scope: Scope, *, tz: ZoneInfo) -> StatsOverview:
    cohorts = await crud_stats.cohort(session, user, scope, dimensions=True)
    (cohort,) = cohorts  # no GROUP BY: always one row, keyed like the others by the constant g
    groups = _Groups(
        cohorts, await crud_stats.durations(session, user, scope), await crud_stats.ratings(session, user, scope)
    )
    categories = await crud_stats.by_category(session, user, scope)
    figures = groups.figures(cohort.g)
    return StatsOverview(
        range=_range(scope, tz),
        filters=_filters(scope),
        created=figures.created,
        resolved=figures.resolved,
        by_status={s: int(getattr(cohort, f"status_{s.value}")) for s in TicketStatus},
        by_priority={p: int(getattr(cohort, f"priority_{p.value}")) for p in Priority},
        by_channel={c: int(getattr(cohort, f"channel_{c.value}")) for c in Channel},
        by_category=[CategoryCount(category_id=row.category_id, count=int(row.n)) for row in categories],
        first_response=figures.first_response,
        resolution=figures.resolution,
        sla=figures.sla,
        csat=figures.csat,
    )


async def timeseries(session: AsyncSession, user: User, scope: Scope, *, tz: ZoneInfo) -> StatsTimeseries:
    bounds = days(scope.start, scope.end, tz)
    rows = await crud_stats.per_day(session, user, scope, [(lo, hi) for _, lo, hi in bounds])
    points = [
        DayPoint(date=day, created=int(row.created), resolved=int(row.resolved))
        for (day, _, _), row in zip(bounds, rows, strict=True)
    ]
    return StatsTimeseries(range=_range(scope, tz), filters=_filters(scope), points=points)


async def agents(session: AsyncSession, user: User, scope: Scope, *, tz: ZoneInfo) -> StatsAgents:
    """Per current assignee and per team. Listed: every active agent and admin and every team
    (zeros included), anyone else with figures, then the unassigned / no-team row when it has
    figures. Tickets count for whoever holds them now: there is no assignment history."""
    by_agent = await _groups(session, user, scope, "assignee_id")
    by_team = await _groups(session, user, scope, "team_id")
    agent_keys = by_agent.keys()
    people = await crud_stats.agents(session, sorted(k for k in agent_keys if k is not None))
    agent_rows = [
        AgentStats(agent_id=p.id, display_name=p.display_name, is_active=p.is_active, **dict(by_agent.figures(p.id)))
        for p in people
        if p.is_active or p.id in agent_keys
    ]
    if None in agent_keys:
        agent_rows.append(AgentStats(agent_id=None, display_name=None, is_active=None, **dict(by_agent.figures(None))))
    team_rows = [
        TeamStats(team_id=t.id, name=t.name, **dict(by_team.figures(t.id))) for t in await crud_stats.teams(session)
    ]
    if None in by_team.keys():  # noqa: SIM118  # _Groups.keys(), not a dict's
        team_rows.append(TeamStats(team_id=None, name=None, **dict(by_team.figures(None))))
    return StatsAgents(range=_range(scope, tz), filters=_filters(scope), agents=agent_rows, teams=team_rows)


def scope(
    from_raw: str | None,
    to_raw: str | None,
    *,
    tz: ZoneInfo,
    now: datetime,
    team_id: int | None = None,
    category_id: int | None = None,
    channel: Channel | None = None,
    priority: Priority | None = None,
) -> Scope:
    start, end = window(parse_bound(from_raw, "from"), parse_bound(to_raw, "to"), tz=tz, now=now)
    return Scope(
        start=start, end=end, now=now, team_id=team_id, category_id=category_id, channel=channel, priority=priority
    )
