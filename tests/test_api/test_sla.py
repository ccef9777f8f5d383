"""SLA administration (/sla-policies, /business-calendar: admins only) and the due dates every
ticket change keeps in step: policy choice, first response, pending, reopen, bookkeeping that
leaves `version` alone."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, event, select, update

from app.core.config import SlaSettings
from app.models import SlaPolicy, TicketSla
from app.models.ticket import Priority
from app.services.sla import PolicyTable, PolicyTargets, SlaService
from tests.conftest import REDIS_URL, bearer, two_processes
from tests.test_api.test_auth_cache import Queries

POLICIES = "/api/v1/sla-policies"
CALENDAR = "/api/v1/business-calendar"
TICKETS = "/api/v1/tickets"
CATEGORIES = "/api/v1/categories"
ALWAYS_OPEN = {"week": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
ROLES = ("anonymous", "customer", "agent", "admin")

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int]] = {
    #  route                              anonymous customer agent admin
    "GET /sla-policies":                 (401,      403,     403,  200),
    "POST /sla-policies":                (401,      403,     403,  201),
    "GET /sla-policies/{id}":            (401,      403,     403,  200),
    "PATCH /sla-policies/{id}":          (401,      403,     403,  200),
    "DELETE /sla-policies/{id}":         (401,      403,     403,  204),
    "GET /business-calendar":            (401,      403,     403,  200),
    "PUT /business-calendar":            (401,      403,     403,  200),
    "DELETE /business-calendar":         (401,      403,     403,  200),
}
# fmt: on
BODIES: dict[str, dict[str, Any]] = {
    "POST /sla-policies": {"name": "紧急", "priority": "urgent", "first_response_minutes": 30},
    "PATCH /sla-policies/{id}": {"resolution_minutes": 240},
    "PUT /business-calendar": ALWAYS_OPEN,
}


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def callers(customer, agent, admin) -> dict[str, dict[str, str]]:
    return {"anonymous": {}, "customer": bearer(customer), "agent": bearer(agent), "admin": bearer(admin)}


async def new_policy(client, admin, **fields) -> dict[str, Any]:
    body = {"name": "普通", "priority": "normal", "first_response_minutes": 60, "resolution_minutes": 480, **fields}
    response = await client.post(POLICIES, json=body, headers=bearer(admin))
    assert response.status_code == 201, response.text
    return response.json()


async def always_open(client, admin) -> None:
    """Every second counts: due dates are created_at + the target, easy to check."""
    response = await client.put(CALENDAR, json=ALWAYS_OPEN, headers=bearer(admin))
    assert response.status_code == 200, response.text


async def new_ticket(client, tokens, **fields) -> dict[str, Any]:
    response = await client.post(
        TICKETS, json={"title": "打印机卡纸", "body": "三楼", **fields}, headers=bearer(tokens)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def patch_ticket(client, tokens, ticket_id: int, **fields) -> dict[str, Any]:
    response = await client.patch(f"{TICKETS}/{ticket_id}", json=fields, headers=bearer(tokens))
    assert response.status_code == 200, response.text
    return response.json()


# --- who may do what -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "role", "expected"),
    [
        pytest.param(route, role, expected, id=f"{route} as {role}")
        for route, codes in MATRIX.items()
        for role, expected in zip(ROLES, codes, strict=True)
    ],
)
async def test_permission_matrix(client, admin, callers, route, role, expected):
    policy = await new_policy(client, admin)
    method, path = route.split(" ", 1)
    response = await client.request(
        method, "/api/v1" + path.replace("{id}", str(policy["id"])), json=BODIES.get(route), headers=callers[role]
    )
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"


# --- policies ------------------------------------------------------------------------------------


async def test_admin_manages_policies(client, admin):
    created = await new_policy(client, admin)
    assert created["category_id"] is None
    changed = (
        await client.patch(
            f"{POLICIES}/{created['id']}",
            json={"name": "普通优先级", "resolution_minutes": None},
            headers=bearer(admin),
        )
    ).json()
    assert (changed["name"], changed["first_response_minutes"], changed["resolution_minutes"]) == (
        "普通优先级",
        60,
        None,
    )
    listed = (await client.get(POLICIES, headers=bearer(admin))).json()
    assert [p["id"] for p in listed["items"]] == [created["id"]]
    assert (await client.delete(f"{POLICIES}/{created['id']}", headers=bearer(admin))).status_code == 204
    missing = await client.get(f"{POLICIES}/{created['id']}", headers=bearer(admin))
    assert missing.status_code == 404
    assert missing.json()["code"] == "sla_policy_not_found"
    assert missing.json()["detail"] == "SLA 策略不存在"


async def test_one_policy_per_priority_and_category(client, admin):
    category = (await client.post(CATEGORIES, json={"name": "网络"}, headers=bearer(admin))).json()
    await new_policy(client, admin)
    await new_policy(client, admin, category_id=category["id"])
    for extra in ({}, {"category_id": category["id"]}):
        response = await client.post(
            POLICIES, json={"name": "重复", "priority": "normal", **extra}, headers=bearer(admin)
        )
        assert response.status_code == 409
        assert response.json()["code"] == "sla_policy_exists"
        assert response.json()["detail"] == "该优先级和分类已有 SLA 策略"


async def test_policy_input_is_checked(client, admin):
    bad = [
        ({"name": "x", "priority": "critical"}, "priority"),
        ({"name": "x", "priority": "low", "first_response_minutes": 0}, "first_response_minutes"),
        ({"name": "x", "priority": "low", "category_id": 999}, "category_id"),
        ({"name": "", "priority": "low"}, "name"),
    ]
    for body, field in bad:
        response = await client.post(POLICIES, json=body, headers=bearer(admin))
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field


# --- the calendar --------------------------------------------------------------------------------


async def test_calendar_defaults_then_saved_copy_then_reset(client, admin):
    default = (await client.get(CALENDAR, headers=bearer(admin))).json()
    assert default["source"] == "default"
    assert default["timezone"] == "Asia/Shanghai"
    assert default["week"]["mon"] == ["09:00-18:00"]
    assert default["week"]["sat"] == []

    body = {
        "week": {"mon": ["09:00-12:00", "13:30-18:00"], "fri": ["09:00-17:00"]},
        "holidays": ["2026-10-01/2026-10-03"],
        "workdays": ["2026-10-10"],
    }
    saved = await client.put(CALENDAR, json=body, headers=bearer(admin))
    assert saved.status_code == 200, saved.text
    assert saved.json()["source"] == "database"
    assert saved.json()["holidays"] == ["2026-10-01", "2026-10-02", "2026-10-03"]
    assert saved.json()["week"]["tue"] == []
    assert (await client.get(CALENDAR, headers=bearer(admin))).json()["revision"] == saved.json()["revision"]

    reset = (await client.delete(CALENDAR, headers=bearer(admin))).json()
    assert reset["source"] == "default"


@pytest.mark.parametrize(
    "body",
    [
        {"week": {}},
        {"week": {"mon": ["09:00-12:00", "11:00-18:00"]}},
        {"week": {"mon": ["9点-18点"]}},
        {"week": {"holiday": ["09:00-18:00"]}},
        {"week": {"mon": ["09:00-18:00"]}, "holidays": ["2026-10-01"], "workdays": ["2026-10-01"]},
        {"week": {"mon": ["09:00-18:00"]}, "holidays": ["2026/10/01"]},
    ],
)
async def test_bad_calendars_are_422(client, admin, body):
    response = await client.put(CALENDAR, json=body, headers=bearer(admin))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"


async def test_calendar_file_applies_until_an_admin_saves_one(app, client, admin, tmp_path):
    path = tmp_path / "calendar.toml"
    path.write_text(
        'holidays = ["2026-10-01/2026-10-07"]\nworkdays = ["2026-09-27"]\n[week]\nmon = ["08:30-17:30"]\n',
        encoding="utf-8",
    )
    ctx = app.state.ctx
    ctx.sla.settings.calendar_file = path
    ctx.sla.load_file()
    from_file = (await client.get(CALENDAR, headers=bearer(admin))).json()
    assert (from_file["source"], from_file["week"]["mon"], from_file["workdays"]) == (
        "file",
        ["08:30-17:30"],
        ["2026-09-27"],
    )
    await always_open(client, admin)
    assert (await client.get(CALENDAR, headers=bearer(admin))).json()["source"] == "database"
    await client.delete(CALENDAR, headers=bearer(admin))
    assert (await client.get(CALENDAR, headers=bearer(admin))).json()["source"] == "file"


def test_json_calendar_file_and_broken_file(tmp_path):
    good = tmp_path / "calendar.json"
    good.write_text(json.dumps(ALWAYS_OPEN), encoding="utf-8")
    service = SlaService(SlaSettings(calendar_file=good), timezone=ZoneInfo("Asia/Shanghai"))
    service.load_file()
    broken = tmp_path / "broken.toml"
    broken.write_text('[week]\nmon = ["18:00-09:00"]\n', encoding="utf-8")
    service.settings.calendar_file = broken
    with pytest.raises(ValueError, match="HELPDESK_SLA__CALENDAR_FILE"):
        service.load_file()


# --- due dates on tickets ------------------------------------------------------------------------


async def test_new_ticket_gets_due_dates_without_a_version_bump(client, admin, customer):
    await always_open(client, admin)
    await new_policy(client, admin)
    ticket = await new_ticket(client, customer)
    created = at(ticket["created_at"])
    assert at(ticket["first_response_due_at"]) == created + timedelta(minutes=60)
    assert at(ticket["resolution_due_at"]) == created + timedelta(minutes=480)
    assert ticket["version"] == 1
    assert ticket["first_response_due_at"].endswith("Z")


async def test_due_dates_follow_business_hours(client, admin, customer):
    # Monday to Friday 09:00-18:00 Shanghai: whatever the time now, the due date is in it.
    # Seconds count: a ticket opened at 17:30:45 is due at 09:00:45 the next working day.
    await new_policy(client, admin, first_response_minutes=30)
    ticket = await new_ticket(client, customer)
    local = at(ticket["first_response_due_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
    assert local.weekday() < 5
    assert time(9, 0) < local.time() <= time(18, 0)


async def test_no_policy_no_due_dates(client, customer):
    ticket = await new_ticket(client, customer)
    assert (ticket["first_response_due_at"], ticket["resolution_due_at"]) == (None, None)


async def test_most_specific_policy_wins(client, admin, agent):
    await always_open(client, admin)
    parent = (await client.post(CATEGORIES, json={"name": "网络"}, headers=bearer(admin))).json()
    child = (
        await client.post(CATEGORIES, json={"name": "宿舍网络", "parent_id": parent["id"]}, headers=bearer(admin))
    ).json()
    other = (await client.post(CATEGORIES, json={"name": "打印"}, headers=bearer(admin))).json()
    await new_policy(client, admin, first_response_minutes=60)
    await new_policy(client, admin, category_id=parent["id"], first_response_minutes=30)
    await new_policy(client, admin, category_id=child["id"], first_response_minutes=10)

    def minutes(ticket):
        return (at(ticket["first_response_due_at"]) - at(ticket["created_at"])) / timedelta(minutes=1)

    assert minutes(await new_ticket(client, agent, category_id=child["id"])) == 10
    assert minutes(await new_ticket(client, agent, category_id=parent["id"])) == 30
    assert minutes(await new_ticket(client, agent, category_id=other["id"])) == 60
    assert minutes(await new_ticket(client, agent)) == 60
    assert (await new_ticket(client, agent, priority="high"))["first_response_due_at"] is None


async def test_policy_and_category_changes_apply_to_the_next_ticket(app, client, admin, agent):
    """Each process keeps the policies (app/services/sla.py PolicyCache): a commit that changes
    a policy, or the category tree policies are chosen by, clears it at once."""
    await always_open(client, admin)
    network = (await client.post(CATEGORIES, json={"name": "网络"}, headers=bearer(admin))).json()
    printing = (await client.post(CATEGORIES, json={"name": "打印"}, headers=bearer(admin))).json()
    body = {"name": "宿舍网络", "parent_id": network["id"]}
    dorm = (await client.post(CATEGORIES, json=body, headers=bearer(admin))).json()
    policy = await new_policy(client, admin, first_response_minutes=60)
    await new_policy(client, admin, category_id=printing["id"], first_response_minutes=15)

    def minutes(ticket):
        return (at(ticket["first_response_due_at"]) - at(ticket["created_at"])) / timedelta(minutes=1)

    assert minutes(await new_ticket(client, agent, category_id=dorm["id"])) == 60
    response = await client.patch(
        f"{POLICIES}/{policy['id']}", json={"first_response_minutes": 20}, headers=bearer(admin)
    )
    assert response.status_code == 200, response.text
    assert minutes(await new_ticket(client, agent, category_id=dorm["id"])) == 20
    moved = await client.patch(f"{CATEGORIES}/{dorm['id']}", json={"parent_id": printing["id"]}, headers=bearer(admin))
    assert moved.status_code == 200, moved.text
    assert minutes(await new_ticket(client, agent, category_id=dorm["id"])) == 15
    assert (await client.delete(f"{POLICIES}/{policy['id']}", headers=bearer(admin))).status_code == 204
    assert (await new_ticket(client, agent))["first_response_due_at"] is None
    # Nothing changed since: the policies are not read again.
    with Queries(app) as queries:
        await new_ticket(client, agent)
    assert not [q for q in queries if "sla_policies" in q or "FROM categories" in q], queries


async def test_a_policy_table_read_while_a_change_commits_is_not_kept(app):
    policies = app.state.ctx.sla.policies
    engine = app.state.ctx.db.engine.sync_engine

    def a_change_commits(*_args: Any) -> None:
        policies.clear()

    async with app.state.ctx.db.transaction() as session:
        event.listen(engine, "before_cursor_execute", a_change_commits, once=True)
        await policies.table(session)
        with Queries(app) as queries:
            await policies.table(session)
        assert any("sla_policies" in q for q in queries), queries  # read again
        with Queries(app) as queries:
            await policies.table(session)
        assert queries == []  # kept


@pytest.mark.skipif(not REDIS_URL, reason="HELPDESK_TEST_REDIS_URL is not set (CI sets it)")
async def test_a_policy_change_in_one_process_reaches_the_others_through_redis(app, settings, admin, agent):
    """Two apps on one database and one Redis: what a second API process would be."""
    settings.redis_url = REDIS_URL
    async with two_processes(settings) as (_, one, second, two):
        second.state.ctx.sla.policies.ttl_seconds = 300  # longer than the wait: only Redis can clear it
        await always_open(one, admin)
        policy = await new_policy(one, admin, first_response_minutes=60)
        assert (await new_ticket(two, agent))["first_response_due_at"] is not None  # `second` keeps it
        async with asyncio.timeout(10):
            await second.state.sla_signal.subscribed.wait()
        assert (await one.delete(f"{POLICIES}/{policy['id']}", headers=bearer(admin))).status_code == 204
        async with asyncio.timeout(10):
            # The message crosses Redis: poll what a client of the other process would see.
            while (await new_ticket(two, agent))["first_response_due_at"] is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)


HALF_AN_HOUR_ON_MONDAYS = {"week": {"mon": ["09:00-09:30"]}}


def first_response_minutes(ticket: dict[str, Any]) -> float:
    created, due = (at(ticket[key]) for key in ("created_at", "first_response_due_at"))
    return (due - created).total_seconds() / 60


async def test_a_calendar_saved_applies_to_the_next_ticket_at_once(client, admin, agent):
    """Due dates use a kept calendar (no query per ticket); saving one drops it."""
    await always_open(client, admin)
    await new_policy(client, admin, first_response_minutes=60)
    assert first_response_minutes(await new_ticket(client, agent)) == 60  # and the calendar is kept
    saved = await client.put(CALENDAR, json=HALF_AN_HOUR_ON_MONDAYS, headers=bearer(admin))
    assert saved.status_code == 200, saved.text
    assert first_response_minutes(await new_ticket(client, agent)) > 7 * 24 * 60  # two Mondays away


@pytest.mark.skipif(not REDIS_URL, reason="HELPDESK_TEST_REDIS_URL is not set (CI sets it)")
async def test_a_calendar_saved_in_one_process_reaches_the_others_through_redis(app, settings, admin, agent):
    settings.redis_url = REDIS_URL
    async with two_processes(settings) as (_, one, second, two):
        second.state.ctx.sla.policies.ttl_seconds = 300  # longer than the wait: only Redis can clear it
        await always_open(one, admin)
        await new_policy(one, admin, first_response_minutes=60)
        async with asyncio.timeout(10):
            await second.state.sla_signal.subscribed.wait()
            while first_response_minutes(await new_ticket(two, agent)) != 60:  # noqa: ASYNC110  # `second` keeps it
                await asyncio.sleep(0.02)
        saved = await one.put(CALENDAR, json=HALF_AN_HOUR_ON_MONDAYS, headers=bearer(admin))
        assert saved.status_code == 200, saved.text
        async with asyncio.timeout(10):
            while first_response_minutes(await new_ticket(two, agent)) == 60:  # noqa: ASYNC110
                await asyncio.sleep(0.02)


async def test_a_policy_deleted_elsewhere_a_moment_ago_does_not_fail_a_ticket(app, client, admin, agent):
    """Another process deleted the policy; this one has not heard yet (its cache still names
    it): the ticket is created all the same, its SLA row naming no policy."""
    await always_open(client, admin)
    policy = await new_policy(client, admin)
    await new_ticket(client, agent)  # this process keeps the policy
    async with app.state.ctx.db.engine.begin() as conn:  # not through the app: no cache cleared
        await conn.execute(delete(SlaPolicy).where(SlaPolicy.id == policy["id"]))
    ticket = await new_ticket(client, agent)
    assert ticket["first_response_due_at"] is not None  # by the policy as it was a moment ago
    async with app.state.ctx.db.transaction() as session:
        row = await session.get(TicketSla, ticket["id"])
        assert row is not None
        assert row.policy_id is None


def test_the_policy_table_chooses_category_then_parent_then_priority():
    targets = {name: PolicyTargets(i, i, None) for i, name in enumerate(["any", "network", "dorm"])}
    table = PolicyTable(
        {
            (Priority.normal, None): targets["any"],
            (Priority.normal, 1): targets["network"],
            (Priority.normal, 2): targets["dorm"],
        },
        parents={2: 1, 3: 1, 5: 4},
    )
    assert table.choose(Priority.normal, 2) == targets["dorm"]
    assert table.choose(Priority.normal, 3) == targets["network"]  # through its parent
    assert table.choose(Priority.normal, 5) == targets["any"]  # a parent without a policy
    assert table.choose(Priority.normal, None) == targets["any"]
    assert table.choose(Priority.high, 2) is None


async def test_priority_change_recomputes_from_created_at(client, admin, agent):
    await always_open(client, admin)
    await new_policy(client, admin)
    await new_policy(client, admin, name="紧急", priority="urgent", first_response_minutes=15, resolution_minutes=120)
    ticket = await new_ticket(client, agent)
    urgent = await patch_ticket(client, agent, ticket["id"], priority="urgent")
    created = at(ticket["created_at"])
    assert at(urgent["first_response_due_at"]) == created + timedelta(minutes=15)
    assert at(urgent["resolution_due_at"]) == created + timedelta(minutes=120)
    assert urgent["version"] == 2  # the priority change, nothing more
    low = await patch_ticket(client, agent, ticket["id"], priority="low")
    assert (low["first_response_due_at"], low["resolution_due_at"]) == (None, None)


async def test_first_response_keeps_its_due_date_and_stops_its_clock(app, client, admin, agent, customer):
    await always_open(client, admin)
    await new_policy(client, admin)
    ticket = await new_ticket(client, customer)
    reply = await client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "已收到"}, headers=bearer(agent))
    assert reply.status_code == 201
    after = (await client.get(f"{TICKETS}/{ticket['id']}", headers=bearer(agent))).json()
    assert after["first_responded_at"] is not None
    assert after["first_response_due_at"] == ticket["first_response_due_at"]
    async with app.state.ctx.db.transaction(write=False) as session:
        row = await session.get(TicketSla, ticket["id"])
        assert row is not None
        assert (row.first_response_warn_at, row.first_response_breach_at) == (None, None)
        assert row.resolution_breach_at == at(ticket["resolution_due_at"])


async def test_pending_clears_the_due_dates_and_the_paused_time_pushes_them(
    app, client, admin, agent, customer, admin_engine
):
    await always_open(client, admin)
    await new_policy(client, admin)
    ticket = await new_ticket(client, customer)
    pending = await patch_ticket(client, agent, ticket["id"], status="pending")
    assert (pending["first_response_due_at"], pending["resolution_due_at"]) == (None, None)
    # The customer took an hour to answer.
    async with admin_engine.begin() as conn:
        where = TicketSla.ticket_id == ticket["id"]
        paused_at = (await conn.execute(select(TicketSla.paused_at).where(where))).scalar_one()
        await conn.execute(update(TicketSla).where(where).values(paused_at=paused_at - timedelta(hours=1)))
    answered = await client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "补充"}, headers=bearer(customer))
    assert answered.status_code == 201
    reopened = (await client.get(f"{TICKETS}/{ticket['id']}", headers=bearer(agent))).json()
    assert reopened["status"] == "open"
    pushed = at(reopened["resolution_due_at"]) - at(ticket["resolution_due_at"])
    assert timedelta(hours=1) <= pushed < timedelta(hours=1, seconds=30)
    assert at(reopened["first_response_due_at"]) - at(ticket["first_response_due_at"]) == pushed


async def test_resolved_keeps_its_due_dates_and_reopen_resumes(client, admin, agent, customer):
    await always_open(client, admin)
    await new_policy(client, admin)
    ticket = await new_ticket(client, customer)
    resolved = await patch_ticket(client, agent, ticket["id"], status="resolved")
    assert resolved["resolution_due_at"] == ticket["resolution_due_at"]
    reopened = await patch_ticket(client, agent, ticket["id"], status="open")
    # Resolved for a moment: the clock stood still for it (here, less than a few seconds).
    pushed = at(reopened["resolution_due_at"]) - at(ticket["resolution_due_at"])
    assert timedelta(0) <= pushed < timedelta(seconds=30)


async def test_due_sort_uses_the_computed_dates(client, admin, agent):
    await always_open(client, admin)
    await new_policy(client, admin, priority="urgent", resolution_minutes=30)
    await new_policy(client, admin, priority="normal", resolution_minutes=600)
    slow = await new_ticket(client, agent)
    fast = await new_ticket(client, agent, priority="urgent")
    none = await new_ticket(client, agent, priority="low")
    listed = (await client.get(TICKETS, params={"sort": "due"}, headers=bearer(agent))).json()["items"]
    assert [t["id"] for t in listed] == [fast["id"], slow["id"], none["id"]]
