"""Auto-assignment: a ticket filed under a category that belongs to a team goes to the team and,
by the team's strategy (round robin, least open tickets), to one of its active agents or admins;
the system records it on the internal timeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event

from app.models.user import Role
from tests.conftest import bearer, create_user

TICKETS = "/api/v1/tickets"
TEAMS = "/api/v1/teams"
CATEGORIES = "/api/v1/categories"


async def new_team(client, admin, members: list[int], assignment: str = "round_robin", name: str = "一线支持") -> int:
    response = await client.post(TEAMS, json={"name": name, "assignment": assignment}, headers=bearer(admin))
    assert response.status_code == 201, response.text
    assert response.json()["assignment"] == assignment
    team_id: int = response.json()["id"]
    response = await client.put(f"{TEAMS}/{team_id}/members", json={"user_ids": members}, headers=bearer(admin))
    assert response.status_code == 200, response.text
    return team_id


async def new_category(client, admin, team_id: int | None, name: str = "网络故障", **fields: Any) -> int:
    body = {"name": name, "team_id": team_id, **fields}
    response = await client.post(CATEGORIES, json=body, headers=bearer(admin))
    assert response.status_code == 201, response.text
    assert response.json()["team_id"] == team_id
    category_id: int = response.json()["id"]
    return category_id


async def new_ticket(client, tokens, **fields: Any) -> dict[str, Any]:
    body = {"title": "宿舍连不上网", "body": "网线插好了，还是没有网络", **fields}
    response = await client.post(TICKETS, json=body, headers=bearer(tokens))
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


def assignee(ticket: dict[str, Any]) -> int | None:
    return ticket["assignee"]["id"] if ticket["assignee"] else None


async def timeline(client, tokens, ticket_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"{TICKETS}/{ticket_id}/events", headers=bearer(tokens))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()
    return events


async def agents(app, count: int, prefix: str = "agent_") -> list[int]:
    return [await create_user(app, f"{prefix}{i}", Role.agent) for i in range(count)]


# --- strategies ------------------------------------------------------------------------------


async def test_round_robin_goes_round_the_members_and_wraps(app, client, admin, customer):
    a1, a2, a3 = await agents(app, 3)
    team = await new_team(client, admin, [a3, a1, a2])
    category = await new_category(client, admin, team)
    tickets = [await new_ticket(client, customer, category_id=category) for _ in range(4)]
    assert [assignee(t) for t in tickets] == [a1, a2, a3, a1]
    assert {t["team"]["id"] for t in tickets} == {team}
    assert {t["version"] for t in tickets} == {1}  # part of the creation, not a later change


async def test_round_robin_skips_inactive_demoted_and_non_members(app, client, admin, customer):
    a1, inactive, demoted, a4, _outsider = await agents(app, 5)
    team = await new_team(client, admin, [a1, inactive, demoted, a4])
    for user_id, change in ((inactive, {"is_active": False}), (demoted, {"role": "customer"})):
        response = await client.patch(f"/api/v1/users/{user_id}", json=change, headers=bearer(admin))
        assert response.status_code == 200, response.text
    category = await new_category(client, admin, team)
    tickets = [await new_ticket(client, customer, category_id=category) for _ in range(3)]
    assert [assignee(t) for t in tickets] == [a1, a4, a1]


async def test_admins_who_are_members_take_their_turn(app, client, admin, customer):
    (a1,) = await agents(app, 1)
    team = await new_team(client, admin, [a1, admin["id"]])
    category = await new_category(client, admin, team)
    tickets = [await new_ticket(client, customer, category_id=category) for _ in range(2)]
    assert sorted(assignee(t) for t in tickets) == sorted([a1, admin["id"]])


async def test_least_open_picks_the_least_loaded_member(app, client, admin, agent, customer):
    a1, a2, a3 = await agents(app, 3)
    # a1: two open tickets; a2: one open, two closed and one resolved (not counted); a3: one pending.
    for who, status in [(a1, None), (a1, None), (a2, None), (a2, "closed"), (a2, "closed"), (a2, "resolved")]:
        ticket = await new_ticket(client, agent, assignee_id=who)
        if status is not None:
            response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": status}, headers=bearer(agent))
            assert response.status_code == 200, response.text
    pending = await new_ticket(client, agent, assignee_id=a3)
    await client.patch(f"{TICKETS}/{pending['id']}", json={"status": "pending"}, headers=bearer(agent))

    team = await new_team(client, admin, [a1, a2, a3], assignment="least_open")
    category = await new_category(client, admin, team)
    tickets = [await new_ticket(client, customer, category_id=category) for _ in range(3)]
    # a2 and a3 tie at one (the lower id wins), then a3 has fewer, then all three tie at two.
    assert [assignee(t) for t in tickets] == [a2, a3, a1]


async def test_strategy_none_routes_to_the_team_without_assigning(app, client, admin, agent, customer):
    team = await new_team(client, admin, [agent["id"]], assignment="none")
    category = await new_category(client, admin, team)
    ticket = await new_ticket(client, customer, category_id=category)
    assert ticket["assignee"] is None
    assert ticket["team"]["id"] == team
    (assigned,) = [e for e in await timeline(client, agent, ticket["id"]) if e["type"] == "ticket.assigned"]
    assert assigned["data"] == {"team_id": [None, team], "automatic": True, "strategy": "none"}


async def test_a_team_without_candidates_gets_the_ticket_unassigned(app, client, admin, agent, customer):
    (gone,) = await agents(app, 1)
    team = await new_team(client, admin, [gone], assignment="least_open")
    await client.patch(f"/api/v1/users/{gone}", json={"is_active": False}, headers=bearer(admin))
    category = await new_category(client, admin, team)
    ticket = await new_ticket(client, customer, category_id=category)
    assert ticket["assignee"] is None
    assert ticket["team"]["id"] == team


async def test_a_subcategory_without_a_team_uses_its_parents(app, client, admin, agent, customer):
    team = await new_team(client, admin, [agent["id"]])
    parent = await new_category(client, admin, team)
    child = await new_category(client, admin, None, name="无线网络", parent_id=parent)
    ticket = await new_ticket(client, customer, category_id=child)
    assert assignee(ticket) == agent["id"]
    assert ticket["team"]["id"] == team


async def test_a_category_without_a_team_assigns_nobody(client, admin, agent, customer):
    category = await new_category(client, admin, None)
    ticket = await new_ticket(client, customer, category_id=category)
    assert ticket["assignee"] is None
    assert ticket["team"] is None
    assert [e["type"] for e in await timeline(client, agent, ticket["id"])] == ["ticket.created"]


# --- when it applies ------------------------------------------------------------------------


async def test_an_explicit_assignee_is_left_alone(app, client, admin, agent):
    (a1, a2) = await agents(app, 2)
    team = await new_team(client, admin, [a1])
    category = await new_category(client, admin, team)
    ticket = await new_ticket(client, agent, category_id=category, assignee_id=a2)
    assert assignee(ticket) == a2
    assert ticket["team"] is None
    events = [e for e in await timeline(client, agent, ticket["id"]) if e["type"] == "ticket.assigned"]
    assert [e["data"] for e in events] == [{"assignee_id": [None, a2], "team_id": [None, None]}]
    # ...and the round robin did not move: the first automatic assignment still goes to a1.
    assert assignee(await new_ticket(client, agent, category_id=category)) == a1


async def test_a_ticket_sent_to_another_team_stays_there_unassigned(app, client, admin, agent):
    (a1,) = await agents(app, 1)
    team = await new_team(client, admin, [a1])
    other = await new_team(client, admin, [], name="二线支持")
    category = await new_category(client, admin, team)
    ticket = await new_ticket(client, agent, category_id=category, team_id=other)
    assert ticket["assignee"] is None
    assert ticket["team"]["id"] == other


async def test_an_unassigned_ticket_in_the_same_team_is_assigned(app, client, admin, agent):
    (a1,) = await agents(app, 1)
    team = await new_team(client, admin, [a1])
    category = await new_category(client, admin, team)
    ticket = await new_ticket(client, agent, category_id=category, team_id=team)
    assert assignee(ticket) == a1
    events = [e["data"] for e in await timeline(client, agent, ticket["id"]) if e["type"] == "ticket.assigned"]
    assert events == [
        {"assignee_id": [None, None], "team_id": [None, team]},
        {"assignee_id": [None, a1], "automatic": True, "strategy": "round_robin"},
    ]


async def test_setting_the_category_later_assigns(app, client, admin, agent, customer):
    (a1,) = await agents(app, 1)
    team = await new_team(client, admin, [a1])
    category = await new_category(client, admin, team)
    ticket = await new_ticket(client, customer)
    assert ticket["assignee"] is None
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"category_id": category}, headers=bearer(agent))
    assert response.status_code == 200, response.text
    assert assignee(response.json()) == a1
    assert response.json()["team"]["id"] == team
    assert response.json()["version"] == 2  # one change, one version
    types = [(e["type"], e["actor"]) for e in await timeline(client, agent, ticket["id"])]
    assert types == [
        ("ticket.created", {"id": customer["id"], "display_name": "Customer1"}),
        ("ticket.updated", {"id": agent["id"], "display_name": "Agent1"}),
        ("ticket.assigned", None),
    ]


async def test_an_assignee_chosen_with_the_category_wins(app, client, admin, agent):
    (a1,) = await agents(app, 1)
    team = await new_team(client, admin, [a1])
    category = await new_category(client, admin, team)
    ticket = await new_ticket(client, agent)
    body = {"category_id": category, "assignee_id": None}
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json=body, headers=bearer(agent))
    assert response.status_code == 200, response.text
    assert response.json()["assignee"] is None
    assert response.json()["team"] is None


async def test_changing_the_category_of_an_assigned_ticket_changes_no_assignment(app, client, admin, agent):
    a1, a2 = await agents(app, 2)
    first = await new_category(client, admin, await new_team(client, admin, [a1]))
    second = await new_category(client, admin, await new_team(client, admin, [a2], name="二线支持"), name="账号")
    ticket = await new_ticket(client, agent, category_id=first)
    assert assignee(ticket) == a1
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"category_id": second}, headers=bearer(agent))
    assert response.status_code == 200, response.text
    assert assignee(response.json()) == a1
    assert response.json()["team"] == ticket["team"]
    events = [e for e in await timeline(client, agent, ticket["id"]) if e["type"] == "ticket.assigned"]
    assert len(events) == 1


async def test_closed_tickets_are_not_assigned(app, client, admin, agent):
    (a1,) = await agents(app, 1)
    category = await new_category(client, admin, await new_team(client, admin, [a1]))
    ticket = await new_ticket(client, agent)
    await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "closed"}, headers=bearer(agent))
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"category_id": category}, headers=bearer(agent))
    assert response.status_code == 200, response.text
    assert response.json()["assignee"] is None


# --- the timeline ----------------------------------------------------------------------------


async def test_the_timeline_shows_the_automatic_assignment(app, client, admin, agent, customer):
    (a1,) = await agents(app, 1)
    team = await new_team(client, admin, [a1])
    ticket = await new_ticket(client, customer, category_id=await new_category(client, admin, team))
    events = await timeline(client, agent, ticket["id"])
    assert [e["type"] for e in events] == ["ticket.created", "ticket.assigned"]
    assigned = events[1]
    assert assigned["actor"] is None
    assert assigned["internal"] is True
    assert assigned["data"] == {
        "assignee_id": [None, a1],
        "team_id": [None, team],
        "automatic": True,
        "strategy": "round_robin",
    }


async def test_a_customer_never_sees_the_automatic_assignment(app, client, admin, customer):
    (a1,) = await agents(app, 1)
    team = await new_team(client, admin, [a1])
    ticket = await new_ticket(client, customer, category_id=await new_category(client, admin, team))
    assert [e["type"] for e in await timeline(client, customer, ticket["id"])] == ["ticket.created"]


# --- cost and concurrency -------------------------------------------------------------------


async def count_statements(app, coro) -> tuple[Any, list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = app.state.ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        return await coro, statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.mark.parametrize("assignment", ["round_robin", "least_open"])
async def test_the_cost_does_not_grow_with_the_team(app, client, admin, customer, assignment):
    small = await new_category(client, admin, await new_team(client, admin, await agents(app, 2), assignment))
    crowd = await agents(app, 12, prefix="crowd_")
    large = await new_category(
        client, admin, await new_team(client, admin, crowd, assignment, name="大团队"), name="大分类"
    )
    plain = await new_category(client, admin, None, name="其他")
    await new_ticket(client, customer, category_id=plain)  # warm-up: ticket numbering and the like

    _, unassigned = await count_statements(app, new_ticket(client, customer, category_id=plain))
    _, with_small = await count_statements(app, new_ticket(client, customer, category_id=small))
    ticket, with_large = await count_statements(app, new_ticket(client, customer, category_id=large))
    assert assignee(ticket) in crowd
    assert len(with_small) == len(with_large), with_large
    # lock the team, pick, (move the cursor), update the ticket, the event and its job
    assert len(with_large) - len(unassigned) <= 6, with_large


async def test_concurrent_tickets_are_shared_out_evenly(app, client, admin, agent, customer):
    members = await agents(app, 3)
    category = await new_category(client, admin, await new_team(client, admin, members))
    created = await asyncio.gather(*(new_ticket(client, customer, category_id=category) for _ in range(6)))
    # Creates also queue on the day's ticket-number counter; category changes meet only at the team.
    waiting = [await new_ticket(client, customer) for _ in range(6)]
    patches = await asyncio.gather(
        *(client.patch(f"{TICKETS}/{t['id']}", json={"category_id": category}, headers=bearer(agent)) for t in waiting)
    )
    assert {r.status_code for r in patches} == {200}
    assert sorted(assignee(t) for t in created) == sorted(members * 2)
    assert sorted(assignee(r.json()) for r in patches) == sorted(members * 2)


# --- categories and teams -------------------------------------------------------------------


async def test_category_team_is_validated_and_can_be_unmapped(client, admin, agent):
    response = await client.post(CATEGORIES, json={"name": "硬件", "team_id": 999}, headers=bearer(admin))
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("team_id", "invalid_value")]
    team = await new_team(client, admin, [agent["id"]])
    category = await new_category(client, admin, None, name="硬件")
    url = f"{CATEGORIES}/{category}"
    response = await client.patch(url, json={"team_id": 999}, headers=bearer(admin))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "team_id"
    response = await client.patch(url, json={"team_id": team}, headers=bearer(admin))
    assert response.json()["team_id"] == team
    response = await client.patch(url, json={"description": "台式机"}, headers=bearer(admin))
    assert response.json()["team_id"] == team  # not sent, not changed
    response = await client.patch(url, json={"team_id": None}, headers=bearer(admin))
    assert response.json()["team_id"] is None


async def test_team_assignment_defaults_to_none_and_changes(client, admin):
    response = await client.post(TEAMS, json={"name": "值班"}, headers=bearer(admin))
    team = response.json()
    assert team["assignment"] == "none"
    url = f"{TEAMS}/{team['id']}"
    response = await client.patch(url, json={"assignment": "least_open"}, headers=bearer(admin))
    assert response.json()["assignment"] == "least_open"
    response = await client.patch(url, json={"assignment": None}, headers=bearer(admin))
    assert response.json()["assignment"] == "least_open"
    response = await client.patch(url, json={"assignment": "random"}, headers=bearer(admin))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "assignment"
