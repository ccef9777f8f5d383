"""Statistics: counts, created vs resolved per business day, first-response and resolution
percentiles, SLA compliance, CSAT, per agent and per team. Every test runs on SQLite and on
PostgreSQL with the same expected figures, so both databases give identical numbers.

Tickets are inserted with controlled timestamps (the API would stamp "now")."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.main import create_app
from app.models.category import Category
from app.models.team import Team
from app.models.ticket import Channel, Priority, Rating, Ticket, TicketStatus
from app.models.user import Role
from tests.conftest import bearer, create_user, empty_tables, login, make_client

STATS = "/api/v1/stats"
SHANGHAI = ZoneInfo("Asia/Shanghai")
_numbers = itertools.count(1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def percentile_cont(values: list[float], p: float) -> float:
    """PostgreSQL's definition: linear interpolation between the two nearest ranks."""
    xs = sorted(values)
    pos = p * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def seconds(microseconds: list[int], p: float) -> float:
    return round(percentile_cont([float(x) for x in microseconds], p) / 1_000_000, 3)


async def put_ticket(
    app: Any,
    requester_id: int,
    created: datetime,
    *,
    status: TicketStatus = TicketStatus.open,
    priority: Priority = Priority.normal,
    channel: Channel = Channel.web,
    responded: timedelta | None = None,
    resolved: timedelta | None = None,
    closed: timedelta | None = None,
    fr_due: timedelta | datetime | None = None,
    res_due: timedelta | datetime | None = None,
    rating: tuple[int, datetime] | None = None,
    **fields: Any,
) -> int:
    def at(delta: timedelta | datetime | None) -> datetime | None:
        return None if delta is None else delta if isinstance(delta, datetime) else created + delta

    async with app.state.ctx.db.transaction() as session:
        ticket = Ticket(
            number=f"T{next(_numbers):06d}",
            title="宿舍连不上网",
            status=status,
            priority=priority,
            priority_rank=priority.rank,
            channel=channel,
            requester_id=requester_id,
            created_at=created,
            updated_at=created,
            first_responded_at=at(responded),
            resolved_at=at(resolved),
            closed_at=at(closed),
            first_response_due_at=at(fr_due),
            resolution_due_at=at(res_due),
            **fields,
        )
        session.add(ticket)
        await session.flush()
        if rating is not None:
            score, given = rating
            session.add(Rating(ticket_id=ticket.id, score=score, created_at=given, updated_at=given))
        return int(ticket.id)


async def put_named(app: Any, model: type[Category] | type[Team], name: str) -> int:
    async with app.state.ctx.db.transaction() as session:
        row = model(name=name)
        session.add(row)
        await session.flush()
        return int(row.id)


async def get(client: httpx.AsyncClient, tokens: dict[str, Any], path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"{STATS}/{path}", params=params, headers=bearer(tokens))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


MARCH = {"from": "2026-03-01", "to": "2026-03-10"}  # Shanghai days: [02-28T16:00Z, 03-10T16:00Z)


@pytest.fixture
async def dataset(app: Any, customer: dict[str, Any], agent: dict[str, Any]) -> dict[str, Any]:
    """Seven tickets created in MARCH (T1-T6, T8), one before it but resolved in it (T7), one
    just after it (T9). Durations carry fractions of a second, down to the microsecond."""
    agent2 = await create_user(app, "agent2", Role.agent)
    cat_a, cat_b = await put_named(app, Category, "网络"), await put_named(app, Category, "打印机")
    team_x, team_y = await put_named(app, Team, "一线"), await put_named(app, Team, "二线")
    c = customer["id"]
    s = timedelta(seconds=1)
    ids = {
        "T1": await put_ticket(
            app, c, utc("2026-03-02 02:00:00"), status=TicketStatus.resolved, priority=Priority.high,
            responded=60.5 * s, resolved=3600.25 * s, fr_due=300 * s, res_due=7200 * s,
            category_id=cat_a, team_id=team_x, assignee_id=agent["id"], rating=(5, utc("2026-03-03 00:00:00")),
        ),
        "T2": await put_ticket(
            app, c, utc("2026-03-03 02:00:00"), status=TicketStatus.closed, channel=Channel.qq,
            responded=timedelta(seconds=120, microseconds=1), resolved=7200 * s, closed=8000 * s,
            fr_due=100 * s, res_due=7000 * s,
            category_id=cat_a, team_id=team_x, assignee_id=agent["id"], rating=(3, utc("2026-03-04 00:00:00")),
        ),
        "T3": await put_ticket(
            app, c, utc("2026-03-04 02:00:00"), priority=Priority.urgent, channel=Channel.android,
            responded=30 * s, fr_due=60 * s, res_due=3600 * s,  # still open, long past due
            category_id=cat_b, team_id=team_y, assignee_id=agent2,
        ),
        "T4": await put_ticket(
            app, c, utc("2026-03-05 02:00:00"), status=TicketStatus.new, priority=Priority.low,
            fr_due=60 * s,  # never answered, past due; no resolution due date
        ),
        "T5": await put_ticket(
            app, c, utc("2026-03-06 02:00:00"), status=TicketStatus.pending, channel=Channel.api,
            responded=90 * s, res_due=utc("2099-01-01 00:00:00"),  # running, not yet due
        ),
        "T6": await put_ticket(
            app, c, utc("2026-03-06 03:00:00"), status=TicketStatus.resolved,
            resolved=600 * s, fr_due=900 * s, res_due=500 * s,  # resolved unanswered, before the reply was due
            team_id=team_y, assignee_id=agent2, rating=(4, utc("2026-03-07 00:00:00")),
        ),
        "T7": await put_ticket(
            app, c, utc("2026-02-20 02:00:00"), status=TicketStatus.resolved,
            responded=60 * s, resolved=timedelta(days=10), rating=(1, utc("2026-03-08 00:00:00")),
        ),
        "T8": await put_ticket(
            app, c, utc("2026-03-09 18:00:00"), status=TicketStatus.resolved, channel=Channel.miniprogram,
            responded=timedelta(days=1), resolved=timedelta(days=2), rating=(2, utc("2026-03-12 00:00:00")),
        ),
        "T9": await put_ticket(app, c, utc("2026-03-10 16:30:00")),  # 03-11 00:30 in Shanghai
    }  # fmt: skip
    return {"agent2": agent2, "cat_a": cat_a, "cat_b": cat_b, "team_x": team_x, "team_y": team_y, **ids}


# --- access --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["overview", "timeseries", "agents"])
async def test_customers_get_403_like_other_staff_routes(client, customer, path):
    response = await client.get(f"{STATS}/{path}", headers=bearer(customer))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "forbidden"
    assert (await client.get("/api/v1/teams", headers=bearer(customer))).status_code == 403  # the same answer


@pytest.mark.parametrize("path", ["overview", "timeseries", "agents"])
async def test_anonymous_callers_get_401(client, path):
    response = await client.get(f"{STATS}/{path}")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_admins_may_read_statistics(client, admin):
    assert (await client.get(f"{STATS}/overview", headers=bearer(admin))).status_code == 200


# --- overview ------------------------------------------------------------------------------------


async def test_overview_counts_the_tickets_created_in_the_range(client, agent, dataset):
    body = await get(client, agent, "overview", **MARCH)
    assert body["range"] == {"from": "2026-02-28T16:00:00Z", "to": "2026-03-10T16:00:00Z", "timezone": "Asia/Shanghai"}
    assert body["created"] == 7  # T1-T6 and T8 (03-10 02:00 in Shanghai); not T7, not T9
    assert body["by_status"] == {"new": 1, "open": 1, "pending": 1, "resolved": 3, "closed": 1}
    assert body["by_priority"] == {"low": 1, "normal": 4, "high": 1, "urgent": 1}
    assert body["by_channel"] == {"web": 3, "android": 1, "miniprogram": 1, "qq": 1, "api": 1}
    assert body["by_category"] == [
        {"category_id": None, "count": 4},
        {"category_id": dataset["cat_a"], "count": 2},
        {"category_id": dataset["cat_b"], "count": 1},
    ]


async def test_overview_percentiles_interpolate_like_percentile_cont(client, agent, dataset):
    body = await get(client, agent, "overview", **MARCH)
    first = [30_000_000, 60_500_000, 90_000_000, 120_000_001]  # T3, T1, T5, T2: answered in the range
    assert body["first_response"] == {
        "count": 4,
        "median_seconds": seconds(first, 0.5),
        "p90_seconds": seconds(first, 0.9),
    }
    assert body["first_response"]["median_seconds"] == 75.25
    resolution = [600_000_000, 3_600_250_000, 7_200_000_000, 864_000_000_000]  # T6, T1, T2, T7
    assert body["resolved"] == 4
    assert body["resolution"] == {"count": 4, "median_seconds": 5400.125, "p90_seconds": 606960.0}
    assert body["resolution"]["p90_seconds"] == seconds(resolution, 0.9)


async def test_sla_compliance_counts_open_tickets_past_due_as_breached(client, agent, dataset):
    body = await get(client, agent, "overview", **MARCH)
    # first response: met T1, T3, T6 (resolved before a reply was due); breached T2 (late),
    # T4 (unanswered, past due); T5 and T8 have no due date
    assert body["sla"]["first_response"] == {"met": 3, "breached": 2, "compliance": 0.6}
    # resolution: met T1; breached T2 (late), T3 (open, past due), T6 (late); T5 not yet due
    assert body["sla"]["resolution"] == {"met": 1, "breached": 3, "compliance": 0.25}


async def test_csat_counts_the_ratings_given_in_the_range(client, agent, dataset):
    body = await get(client, agent, "overview", **MARCH)
    assert body["csat"] == {
        "count": 4,  # T1 5, T2 3, T6 4, T7 1 (ticket older, rating in range); not T8's (03-12)
        "average": 3.25,
        "distribution": {"1": 1, "2": 0, "3": 1, "4": 1, "5": 1},
    }


async def test_an_empty_range_has_zeros_and_nulls(client, agent, dataset):
    body = await get(client, agent, "overview", **{"from": "2025-01-01", "to": "2025-01-31"})
    assert body["created"] == body["resolved"] == 0
    assert set(body["by_status"].values()) == {0}
    assert body["by_category"] == []
    assert body["first_response"] == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert body["sla"]["resolution"] == {"met": 0, "breached": 0, "compliance": None}
    assert body["csat"] == {"count": 0, "average": None, "distribution": {str(i): 0 for i in range(1, 6)}}


async def test_filters_narrow_every_figure(client, agent, dataset):
    body = await get(client, agent, "overview", **MARCH, team_id=dataset["team_x"])
    assert body["filters"]["team_id"] == dataset["team_x"]
    assert body["created"] == 2
    assert body["first_response"]["count"] == 2
    assert body["csat"]["count"] == 2
    body = await get(client, agent, "overview", **MARCH, channel="qq")
    assert (body["created"], body["resolved"]) == (1, 1)
    body = await get(client, agent, "overview", **MARCH, category_id=dataset["cat_b"], priority="urgent")
    assert body["by_priority"]["urgent"] == body["created"] == 1


async def test_datetime_bounds_are_instants_and_to_is_exclusive(client, agent, dataset):
    body = await get(client, agent, "overview", **{"from": "2026-03-02T02:00:00Z", "to": "2026-03-04T10:00:00+08:00"})
    assert body["range"]["from"] == "2026-03-02T02:00:00Z"
    assert body["range"]["to"] == "2026-03-04T02:00:00Z"
    assert body["created"] == 2  # T1 (at `from`), T2; T3 is created exactly at `to`


# --- timeseries ----------------------------------------------------------------------------------


async def test_timeseries_has_every_business_day_zeros_included(client, agent, dataset):
    body = await get(client, agent, "timeseries", **MARCH)
    points = {p["date"]: (p["created"], p["resolved"]) for p in body["points"]}
    assert list(points) == [f"2026-03-{d:02d}" for d in range(1, 11)]
    assert points == {
        "2026-03-01": (0, 0),
        "2026-03-02": (1, 2),  # T1 created and resolved, T7 resolved
        "2026-03-03": (1, 1),
        "2026-03-04": (1, 0),
        "2026-03-05": (1, 0),
        "2026-03-06": (2, 1),
        "2026-03-07": (0, 0),
        "2026-03-08": (0, 0),
        "2026-03-09": (0, 0),
        "2026-03-10": (1, 0),  # T8: 03-09 18:00 UTC is 03-10 02:00 in Shanghai
    }
    overview = await get(client, agent, "overview", **MARCH)
    assert sum(p["created"] for p in body["points"]) == overview["created"]
    assert sum(p["resolved"] for p in body["points"]) == overview["resolved"]


async def test_days_are_cut_at_midnight_in_the_business_timezone(app, client, agent, customer):
    for moment in ("2026-03-01 15:59:59.999999", "2026-03-01 16:00:00", "2026-03-02 15:59:59"):
        await put_ticket(app, customer["id"], utc(moment))
    body = await get(client, agent, "timeseries", **{"from": "2026-03-01", "to": "2026-03-02"})
    assert [(p["date"], p["created"]) for p in body["points"]] == [("2026-03-01", 1), ("2026-03-02", 2)]


async def test_default_range_is_the_last_30_business_days(client, agent):
    body = await get(client, agent, "timeseries")
    today = datetime.now(SHANGHAI).date()
    assert len(body["points"]) == 30
    assert body["points"][-1]["date"] == today.isoformat()
    assert body["points"][0]["date"] == (today - timedelta(days=29)).isoformat()


@pytest.fixture
async def new_york(settings: Settings, admin_engine: AsyncEngine) -> AsyncIterator[Any]:
    await empty_tables(admin_engine)
    application = create_app(settings.model_copy(update={"timezone": "America/New_York"}))
    async with application.router.lifespan_context(application):
        yield application


async def test_days_follow_daylight_saving_time(new_york):
    async with make_client(new_york) as client:
        await create_user(new_york, "ny_agent", Role.agent)
        requester = await create_user(new_york, "ny_customer")
        tokens = await login(client, "ny_agent")
        # 2026-03-08 has 23 hours in New York; midnight of 03-09 is 04:00 UTC (EDT), not 05:00
        for moment in ("2026-03-08 04:59:59", "2026-03-08 05:00:00", "2026-03-09 03:59:59", "2026-03-09 04:00:00"):
            await put_ticket(new_york, requester, utc(moment))
        body = await get(client, tokens, "timeseries", **{"from": "2026-03-07", "to": "2026-03-09"})
    assert body["range"] == {
        "from": "2026-03-07T05:00:00Z",
        "to": "2026-03-10T04:00:00Z",
        "timezone": "America/New_York",
    }
    assert [(p["date"], p["created"]) for p in body["points"]] == [
        ("2026-03-07", 1),
        ("2026-03-08", 2),
        ("2026-03-09", 1),
    ]


# --- per agent and per team ----------------------------------------------------------------------


async def test_agents_and_teams_have_their_own_figures(client, agent, admin, dataset):
    body = await get(client, agent, "agents", **MARCH)
    rows = {row["agent_id"]: row for row in body["agents"]}
    assert list(rows) == [*sorted((agent["id"], dataset["agent2"], admin["id"])), None]  # by id, unassigned last
    one = rows[agent["id"]]
    assert (one["display_name"], one["created"], one["resolved"]) == ("Agent1", 2, 2)
    assert one["first_response"] == {
        "count": 2,
        "median_seconds": seconds([60_500_000, 120_000_001], 0.5),
        "p90_seconds": seconds([60_500_000, 120_000_001], 0.9),
    }
    assert one["sla"]["first_response"] == {"met": 1, "breached": 1, "compliance": 0.5}
    assert one["csat"]["average"] == 4.0
    two = rows[dataset["agent2"]]
    assert (two["created"], two["resolved"], two["resolution"]["median_seconds"]) == (2, 1, 600.0)
    assert two["sla"]["resolution"] == {"met": 0, "breached": 2, "compliance": 0.0}
    assert rows[admin["id"]]["created"] == 0
    assert rows[admin["id"]]["first_response"]["median_seconds"] is None
    nobody = rows[None]
    assert (nobody["created"], nobody["resolved"], nobody["csat"]["count"]) == (3, 1, 1)  # T4 T5 T8; T7

    teams = {row["team_id"]: row for row in body["teams"]}
    assert list(teams) == [dataset["team_x"], dataset["team_y"], None]
    assert (teams[dataset["team_x"]]["name"], teams[dataset["team_x"]]["created"]) == ("一线", 2)
    assert teams[dataset["team_y"]]["sla"]["first_response"]["met"] == 2
    assert sum(t["created"] for t in teams.values()) == sum(a["created"] for a in rows.values()) == 7


# --- input ---------------------------------------------------------------------------------------


async def test_a_range_of_366_days_is_the_limit(client, agent):
    await get(client, agent, "timeseries", **{"from": "2025-01-01", "to": "2026-01-01"})  # 366 days
    response = await client.get(
        f"{STATS}/timeseries", params={"from": "2025-01-01", "to": "2026-01-02"}, headers=bearer(agent)
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("to", "range_too_long")]


async def test_a_range_too_long_is_explained_in_chinese_and_english(client, agent):
    params = {"from": "2025-01-01", "to": "2026-01-02"}
    response = await client.get(f"{STATS}/overview", params=params, headers=bearer(agent))  # Chinese by default
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"] == "日期范围不能超过 366 天"
    headers = {**bearer(agent), "Accept-Language": "en"}
    response = await client.get(f"{STATS}/overview", params=params, headers=headers)
    assert response.json()["errors"][0]["message"] == "The range may span at most 366 days"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-10", "to": "2026-03-01"}, "from"),
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        ({"from": "2026-02-30"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-03-01T08:00:00"}, "to"),  # no offset: which zone?
        ({"from": "2026-03-01", "to": "x" * 65}, "to"),
    ],
)
async def test_bad_ranges_are_422(client, agent, params, field):
    response = await client.get(f"{STATS}/overview", params=params, headers=bearer(agent))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["field"] == field


async def test_an_unknown_channel_is_422(client, agent):
    response = await client.get(f"{STATS}/overview", params={"channel": "fax"}, headers=bearer(agent))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "channel"


# --- cost ----------------------------------------------------------------------------------------


async def test_a_fixed_number_of_statements_whatever_the_number_of_tickets(app, client, agent, customer):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement != "BEGIN":  # SQLite's explicit BEGIN (app/db/session.py)
            statements.append(statement)

    engine = app.state.ctx.db.engine.sync_engine
    counts: dict[str, list[int]] = {"overview": [], "timeseries": [], "agents": []}
    await get(client, agent, "overview", **MARCH)  # the agent's login session is checked once, then cached
    start = utc("2026-03-02 00:00:00")
    for batch in (1, 20):
        for i in range(batch):
            await put_ticket(
                app, customer["id"], start + timedelta(hours=i), responded=timedelta(minutes=i + 1),
                resolved=timedelta(hours=1), assignee_id=agent["id"], rating=(1 + i % 5, start + timedelta(days=1)),
            )  # fmt: skip
        event.listen(engine, "before_cursor_execute", count)
        try:
            for path in counts:
                statements.clear()
                await get(client, agent, path, **MARCH)
                counts[path].append(len(statements))
        finally:
            event.remove(engine, "before_cursor_execute", count)
    # cohort, durations, ratings, categories / the day list / both groupings, users, teams
    assert counts == {"overview": [4, 4], "timeseries": [1, 1], "agents": [8, 8]}, counts


async def test_the_same_figures_as_a_reference_computed_in_python(app, client, agent, customer):
    """Many durations with odd microseconds: the SQL percentiles equal percentile_cont's."""
    start = utc("2026-03-02 00:00:00")
    firsts, resolutions = [], []
    for i in range(37):
        first = timedelta(seconds=(i * 7919) % 5003, microseconds=(i * 104729) % 1_000_000)
        resolution = first + timedelta(hours=(i * 31) % 50, microseconds=(i * 15485863) % 1_000_000)
        await put_ticket(app, customer["id"], start + timedelta(minutes=i), responded=first, resolved=resolution)
        firsts.append(first // timedelta(microseconds=1))
        resolutions.append(resolution // timedelta(microseconds=1))
    body = await get(client, agent, "overview", **MARCH)
    for key, values in (("first_response", firsts), ("resolution", resolutions)):
        assert body[key] == {
            "count": 37,
            "median_seconds": seconds(values, 0.5),
            "p90_seconds": seconds(values, 0.9),
        }, key


async def test_an_offset_whose_plus_was_not_encoded_still_counts(client, agent):
    # "+" in a raw query string decodes to a space; the offset is still meant
    response = await client.get(f"{STATS}/overview?from=2026-03-02T10:00:00+08:00&to=2026-03-03", headers=bearer(agent))
    assert response.status_code == 200, response.text
    assert response.json()["range"]["from"] == "2026-03-02T02:00:00Z"
