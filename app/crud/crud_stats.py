"""The statistics' SQL: aggregates only, never ticket rows, the same figures on both databases.

Every query starts from `crud_ticket.readable_by(user)` narrowed by the filters (team, category,
channel, priority) and adds its own time condition: the cohort is the tickets *created* in the
window, the durations the tickets *first answered* / *resolved* in it, CSAT the ratings *given*
in it.

Exactness across databases:
- Durations are integer microseconds computed in SQL from the stored values (`duration_us`): on
  PostgreSQL `extract(epoch from end - start)` (numeric), on SQLite from the text SQLAlchemy
  stores (naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`): whole seconds from `julianday` of the first
  19 characters (exact once rounded), plus the difference of the microsecond digits.
  `julianday` of the whole text would round to milliseconds and lose the exactness.
- Percentiles are `percentile_cont` on PostgreSQL. SQLite has none: window functions number
  each group's ordered durations, and the same linear interpolation `percentile_cont` does
  (`lo + (hi - lo) * (p*(n-1) - floor(p*(n-1)))` in doubles) picks between the two nearest.
- Timestamps are compared with bound instants (the window, `now`); on SQLite the stored text
  compares in time order. Day boundaries come from Python (`days` below), so days follow the
  business timezone on both databases, DST included.

Cost: every statement reads only its window, through the index on its raw column (a range on
`created_at`, `resolved_at`, `first_responded_at`, `ratings.created_at`; never an expression of
it), so the work follows the tickets in the window, not the table. Durations come from the
(`resolved_at`, `created_at`) / (`first_responded_at`, `created_at`) indexes alone; each kind is
its own aggregate (no UNION sorted by group and kind before the percentiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Row,
    Select,
    Subquery,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    values,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.crud.crud_ticket import readable_by
from app.db.base import UTCDateTime
from app.models.team import Team
from app.models.ticket import Channel, Priority, Rating, Ticket, TicketStatus
from app.models.user import Role, User

PERCENTILES = (0.5, 0.9)
STAFF_ROLES = (Role.agent, Role.admin)
FIRST_RESPONSE, RESOLUTION = 1, 2
# Aggregate rows, read by label (`row.created`); never ticket rows.
Rows = Sequence[Row[*tuple[Any, ...]]]


class duration_us(FunctionElement[int]):  # lower case: it reads as the SQL function it renders
    """`end - start` in microseconds, for two UTCDateTime columns, exact on both databases."""

    type = BigInteger()
    inherit_cache = True
    name = "duration_us"


@compiles(duration_us, "postgresql")
def _duration_us_postgresql(element: duration_us, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(arg, **kw) for arg in element.clauses)
    # timestamptz - timestamptz is an interval of whole 24-hour days and microseconds, and
    # extract() of it is numeric (exact) since PostgreSQL 14 (a double before: the cast rounds).
    return f"CAST(extract(epoch from ({end} - {start})) * 1000000 AS BIGINT)"


@compiles(duration_us, "sqlite")
def _duration_us_sqlite(element: duration_us, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(arg, **kw) for arg in element.clauses)

    # Whole seconds: julianday() of the first 19 characters is an exact count of milliseconds
    # over 86,400,000 (a double); the difference of two, times 86,400, is within 1e-4 of the
    # whole number of seconds between them, so round() makes it exact (julianday of the full
    # text would round the fraction to milliseconds, and can carry into the next second). Then
    # the microsecond digits; a value stored without a fraction reads as .000000. julianday()
    # costs a third of strftime('%s') (which formats text that CAST parses again).
    def micro(value: str) -> str:
        return f"CAST(substr({value} || '000000', 21, 6) AS INTEGER)"

    return (
        f"(CAST(round((julianday(substr({end}, 1, 19)) - julianday(substr({start}, 1, 19))) * 86400) AS INTEGER)"
        f" * 1000000 + ({micro(end)} - {micro(start)}))"
    )


@dataclass(frozen=True)
class Scope:
    """What the figures cover: the caller's readable tickets, filtered, in [start, end)."""

    start: datetime
    end: datetime
    now: datetime
    team_id: int | None = None
    category_id: int | None = None
    channel: Channel | None = None
    priority: Priority | None = None


def _readable(user: User, scope: Scope) -> Select[Any]:
    stmt = readable_by(user)
    if scope.team_id is not None:
        stmt = stmt.where(Ticket.team_id == scope.team_id)
    if scope.category_id is not None:
        stmt = stmt.where(Ticket.category_id == scope.category_id)
    if scope.channel is not None:
        stmt = stmt.where(Ticket.channel == scope.channel)
    if scope.priority is not None:
        stmt = stmt.where(Ticket.priority == scope.priority)
    return stmt


def tickets(user: User, scope: Scope) -> Subquery:
    return _readable(user, scope).subquery("t")


def _within(moment: ColumnElement[Any] | InstrumentedAttribute[Any], scope: Scope) -> ColumnElement[bool]:
    return and_(moment >= scope.start, moment < scope.end)


def _group(t: Subquery, by: str | None) -> ColumnElement[Any]:
    return t.c[by] if by is not None else literal_column("0")


# --- the cohort: counts and SLA compliance ------------------------------------------------------


def _sla_counts(
    due: ColumnElement[Any], stop: ColumnElement[Any], now: datetime, prefix: str
) -> list[ColumnElement[Any]]:
    """Met: the clock stopped at or before the due date. Breached: it stopped later, or it is
    still running and the due date has passed. Running and not yet due: neither."""
    met = and_(due.is_not(None), stop.is_not(None), stop <= due)
    breached = and_(due.is_not(None), or_(and_(stop.is_not(None), stop > due), and_(stop.is_(None), due < now)))
    return [func.count().filter(met).label(f"{prefix}_met"), func.count().filter(breached).label(f"{prefix}_breached")]


async def cohort(
    session: AsyncSession, user: User, scope: Scope, *, by: str | None = None, dimensions: bool = False
) -> Rows:
    """Per group (or one row): `created`, the SLA counts (`fr_met`, `fr_breached`, `res_met`,
    `res_breached`) and, with `dimensions`, `status_<x>`, `priority_<x>`, `channel_<x>`."""
    t = tickets(user, scope)
    g = _group(t, by)
    # The first response's clock also stops when the ticket is resolved or closed unanswered;
    # the resolution's when it is resolved, or closed without being resolved.
    fr_stop = func.coalesce(t.c.first_responded_at, t.c.resolved_at, t.c.closed_at)
    res_stop = func.coalesce(t.c.resolved_at, t.c.closed_at)
    columns: list[ColumnElement[Any]] = [
        g.label("g"),
        func.count().label("created"),
        *_sla_counts(t.c.first_response_due_at, fr_stop, scope.now, "fr"),
        *_sla_counts(t.c.resolution_due_at, res_stop, scope.now, "res"),
    ]
    if dimensions:
        for name, enum in (("status", TicketStatus), ("priority", Priority), ("channel", Channel)):
            columns += [func.count().filter(t.c[name] == v).label(f"{name}_{v.value}") for v in enum]
    stmt = select(*columns).where(_within(t.c.created_at, scope))
    if by is not None:
        stmt = stmt.group_by(g)
    return (await session.execute(stmt)).all()


async def by_category(session: AsyncSession, user: User, scope: Scope) -> Rows:
    """(category_id, n) of the cohort, largest first; NULL is "no category"."""
    t = tickets(user, scope)
    count = func.count()
    stmt = (
        select(t.c.category_id, count.label("n"))
        .where(_within(t.c.created_at, scope))
        .group_by(t.c.category_id)
        .order_by(count.desc(), t.c.category_id.asc().nulls_last())
    )
    return (await session.execute(stmt)).all()


# --- durations and their percentiles ------------------------------------------------------------


def _measured(t: Subquery) -> tuple[tuple[int, ColumnElement[Any]], ...]:
    """(kind, the moment that stops its clock): first answered, resolved."""
    return (FIRST_RESPONSE, t.c.first_responded_at), (RESOLUTION, t.c.resolved_at)


def _percentiles_postgresql(
    t: Subquery, scope: Scope, by: str | None, kind: int, moment: ColumnElement[Any]
) -> Select[Any]:
    """One kind straight from the rows in its window (the index on `moment`): no UNION to
    sort by (group, kind) first; percentile_cont sorts each group's durations itself."""
    d = cast(duration_us(moment, t.c.created_at), Float)
    stmt = select(
        _group(t, by).label("g"),
        literal_column(str(kind)).label("kind"),
        func.count().label("n"),
        *(func.percentile_cont(p).within_group(d).label(f"p{i}") for i, p in enumerate(PERCENTILES)),
    ).where(_within(moment, scope))
    # Without groups the aggregate always has its one row: drop it when nothing was measured.
    return stmt.group_by(t.c[by]) if by is not None else stmt.having(func.count() > 0)


def _percentiles_sqlite(
    t: Subquery, scope: Scope, by: str | None, kind: int, moment: ColumnElement[Any]
) -> Select[Any]:
    """One kind: its rows in its window (the index on `moment`), numbered in duration order per
    group; only the (at most four) rows at the percentiles' floor and ceiling positions reach
    the aggregate."""
    rows = (
        select(_group(t, by).label("g"), duration_us(moment, t.c.created_at).label("d"))
        .where(_within(moment, scope))
        .subquery("measured")
    )
    part = [rows.c.g] if by is not None else None
    ranked = select(
        rows.c.g,
        rows.c.d,
        (func.row_number().over(partition_by=part, order_by=rows.c.d) - 1).label("rn"),
        func.count().over(partition_by=part).label("n"),
    ).subquery("ranked")
    n = func.max(ranked.c.n)
    columns: list[ColumnElement[Any]] = []
    wanted: list[ColumnElement[Any]] = []
    for i, p in enumerate(PERCENTILES):
        # Exactly percentile_cont: position p*(n-1) (0-based), the values at its floor and
        # ceiling, linear interpolation between them; all in doubles as PostgreSQL does.
        fraction = literal(p, Float)
        pos = fraction * (ranked.c.n - 1)
        floor = cast(pos, Integer)
        ceiling = case((pos > floor, floor + 1), else_=floor)
        wanted += [floor, floor + 1]
        lo = func.max(case((ranked.c.rn == floor, ranked.c.d)))
        hi = func.max(case((ranked.c.rn == ceiling, ranked.c.d)))
        group_pos = fraction * (n - 1)
        columns.append((lo + (hi - lo) * (group_pos - cast(group_pos, Integer))).label(f"p{i}"))
    return (
        select(ranked.c.g, literal_column(str(kind)).label("kind"), n.label("n"), *columns)
        .where(ranked.c.rn.in_(wanted))
        .group_by(ranked.c.g)
    )


async def durations(session: AsyncSession, user: User, scope: Scope, *, by: str | None = None) -> Rows:
    """Per group and kind (FIRST_RESPONSE, RESOLUTION): `n`, `p0` (median), `p1` (p90), in
    microseconds as doubles; groups without any duration are absent."""
    t = tickets(user, scope)
    percentiles = _percentiles_postgresql if session.get_bind().dialect.name == "postgresql" else _percentiles_sqlite
    stmt = union_all(*(percentiles(t, scope, by, kind, moment) for kind, moment in _measured(t)))
    return (await session.execute(stmt)).all()


# --- CSAT ----------------------------------------------------------------------------------------


async def ratings(session: AsyncSession, user: User, scope: Scope, *, by: str | None = None) -> Rows:
    """(g, score, n) of the ratings given in the window. Ungrouped, with every ticket readable
    and no filter, `ratings` alone answers: no lookup of each rated ticket."""
    window = _within(Rating.created_at, scope)
    if by is None and _readable(user, scope).whereclause is None:
        zero: ColumnElement[Any] = literal_column("0")
        only = select(zero.label("g"), Rating.score, func.count().label("n")).where(window)
        return (await session.execute(only.group_by(Rating.score))).all()
    t = tickets(user, scope)
    g = _group(t, by)
    stmt = (
        select(g.label("g"), Rating.score, func.count().label("n"))
        .select_from(t)
        .join(Rating, Rating.ticket_id == t.c.id)
        .where(window)
        .group_by(*([g] if by is not None else []), Rating.score)
    )
    return (await session.execute(stmt)).all()


# --- days ----------------------------------------------------------------------------------------


async def per_day(session: AsyncSession, user: User, scope: Scope, days: Sequence[tuple[datetime, datetime]]) -> Rows:
    """(i, created, resolved) for each (start, end) in `days`, in order, zeros included. The
    bounds are a VALUES list computed in Python: SQLite has no time zones."""
    t = tickets(user, scope)
    bounds = (
        values(
            column("i", Integer),
            column("day_start", UTCDateTime),
            column("day_end", UTCDateTime),
            name="days",
        )
        .data([(i, start, end) for i, (start, end) in enumerate(days)])
        .cte("days")
    )

    def count_in(moment: ColumnElement[Any]) -> Any:
        return (
            select(func.count())
            .select_from(t)
            .where(moment >= bounds.c.day_start, moment < bounds.c.day_end)
            .correlate(bounds)
            .scalar_subquery()
        )

    stmt = select(
        bounds.c.i, count_in(t.c.created_at).label("created"), count_in(t.c.resolved_at).label("resolved")
    ).order_by(bounds.c.i)
    return (await session.execute(stmt)).all()


# --- who the groups are --------------------------------------------------------------------------


async def agents(session: AsyncSession, extra_ids: Sequence[int]) -> Rows:
    """(id, display_name, is_active) of every agent and admin, and of the other users named."""
    condition: ColumnElement[bool] = User.role.in_(STAFF_ROLES)
    if extra_ids:
        condition = or_(condition, User.id.in_(extra_ids))
    stmt = select(User.id, User.display_name, User.is_active).where(condition).order_by(User.id)
    return (await session.execute(stmt)).all()


async def teams(session: AsyncSession) -> Rows:
    return (await session.execute(select(Team.id, Team.name).order_by(Team.id))).all()
