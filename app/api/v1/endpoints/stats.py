"""Statistics for agents and admins: overview, created vs resolved per day, per agent and team."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.v1.dependencies import Context, SessionDep, StaffUser
from app.core.errors import FieldProblem, Forbidden, problem_responses
from app.crud.crud_stats import Scope
from app.db.base import utcnow
from app.models.ticket import Channel, Priority
from app.schemas.stats import StatsAgents, StatsOverview, StatsTimeseries
from app.services import stats

router = APIRouter(prefix="/stats", tags=["stats"])

_BOUND = (
    "a day in the business timezone (`2026-11-24`), or an RFC 3339 datetime with its offset; "
    "`to` as a day includes that whole day, as a datetime it is exclusive"
)


async def get_scope(
    ctx: Context,
    from_: Annotated[str | None, Query(alias="from", max_length=64, description=_BOUND)] = None,
    to: Annotated[str | None, Query(max_length=64, description=_BOUND)] = None,
    team_id: int | None = None,
    category_id: int | None = None,
    channel: Channel | None = None,
    priority: Priority | None = None,
) -> Scope:
    """Default: the last 30 business days, today included; at most 366 (422 `range_too_long`
    on `to`)."""
    return stats.scope(
        from_,
        to,
        tz=ctx.settings.tz,
        now=utcnow(),
        team_id=team_id,
        category_id=category_id,
        channel=channel,
        priority=priority,
    )


ScopeDep = Annotated[Scope, Depends(get_scope)]
_ERRORS = problem_responses(Forbidden, FieldProblem)


@router.get("/overview", response_model=StatsOverview, responses=_ERRORS)
async def read_overview(staff: StaffUser, session: SessionDep, ctx: Context, scope: ScopeDep) -> StatsOverview:
    return await stats.overview(session, staff, scope, tz=ctx.settings.tz)


@router.get("/timeseries", response_model=StatsTimeseries, responses=_ERRORS)
async def read_timeseries(staff: StaffUser, session: SessionDep, ctx: Context, scope: ScopeDep) -> StatsTimeseries:
    return await stats.timeseries(session, staff, scope, tz=ctx.settings.tz)


@router.get("/agents", response_model=StatsAgents, responses=_ERRORS)
async def read_agents(staff: StaffUser, session: SessionDep, ctx: Context, scope: ScopeDep) -> StatsAgents:
    return await stats.agents(session, staff, scope, tz=ctx.settings.tz)
