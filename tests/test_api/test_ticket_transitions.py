"""The ticket workflow: API.md's status table row by row and role by role, the automatic moves,
timestamps and versions that follow the status, If-Match, ratings and merging."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.db.base import utcnow
from app.models.ticket import Rating, Ticket
from tests.conftest import bearer, create_user, login

TICKETS = "/api/v1/tickets"
STATUSES = ("new", "open", "pending", "resolved", "closed")
ROLES = ("requester", "agent", "admin")
STAFF = frozenset({"agent", "admin"})
EVERYONE = frozenset(ROLES)

# API.md's status table as moves made by PATCH {"status": ...}: who may make each one. The
# requester's resolved -> open is the reopen within 7 days (the ticket here was resolved just
# now). Every pair not listed is 409 invalid_transition for everyone.
TABLE: dict[tuple[str, str], frozenset[str]] = {
    ("new", "open"): STAFF,
    ("new", "pending"): STAFF,
    ("open", "pending"): STAFF,
    ("pending", "open"): STAFF,  # the requester reopens a pending ticket only by replying
    ("new", "resolved"): STAFF,
    ("open", "resolved"): STAFF,
    ("pending", "resolved"): STAFF,
    ("resolved", "open"): EVERYONE,
    ("new", "closed"): EVERYONE,
    ("open", "closed"): EVERYONE,
    ("pending", "closed"): EVERYONE,
    ("resolved", "closed"): EVERYONE,
    ("closed", "open"): STAFF,
}

TRANSITION_CASES = [
    pytest.param(
        source,
        target,
        role,
        role in TABLE.get((source, target), frozenset()),
        id=f"{source}->{target} by {role}: {'allowed' if role in TABLE.get((source, target), ()) else 'refused'}",
    )
    for source, target in itertools.permutations(STATUSES, 2)
    for role in ROLES
]


@pytest.fixture
async def who(customer, agent, admin) -> dict[str, Any]:
    """Auth headers by role; "requester" is the `customer` fixture, who opens the tickets."""
    return {
        "ids": {"requester": customer["id"], "agent": agent["id"], "admin": admin["id"]},
        "requester": bearer(customer),
        "agent": bearer(agent),
        "admin": bearer(admin),
    }


async def new_ticket(client, headers, **fields) -> dict[str, Any]:
    body = {"title": "VPN drops every hour", "body": "Since Monday.", **fields}
    response = await client.post(TICKETS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def get_ticket(client, ticket_id: int, headers) -> dict[str, Any]:
    response = await client.get(f"{TICKETS}/{ticket_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def set_status(client, ticket_id: int, status: str, headers) -> dict[str, Any]:
    response = await client.patch(f"{TICKETS}/{ticket_id}", json={"status": status}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == status
    return response.json()


async def ticket_in(client, status: str, who) -> dict[str, Any]:
    """A ticket of the requester's, moved into `status` by an agent (every status is one move
    away from new)."""
    ticket = await new_ticket(client, who["requester"])
    if status == "new":
        return ticket
    return await set_status(client, ticket["id"], status, who["agent"])


async def reply(client, ticket_id: int, headers, *, internal: bool = False) -> Any:
    return await client.post(
        f"{TICKETS}/{ticket_id}/messages", json={"body": "Reply", "internal": internal}, headers=headers
    )


async def event_types(client, ticket_id: int, headers) -> list[str]:
    response = await client.get(f"{TICKETS}/{ticket_id}/events", headers=headers)
    assert response.status_code == 200, response.text
    return [e["type"] for e in response.json()]


async def backdate(app, model, where, **days_back: int) -> None:
    """Move timestamps into the past straight in the database (no waiting for days)."""
    values = {column: utcnow() - timedelta(days=days) for column, days in days_back.items()}
    async with app.state.ctx.db.transaction() as session:
        await session.execute(update(model).where(where).values(**values))


# --- the status table ---------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target", "role", "allowed"), TRANSITION_CASES)
async def test_status_table(client, who, source, target, role, allowed):
    ticket = await ticket_in(client, source, who)

    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": target}, headers=who[role])

    after = await get_ticket(client, ticket["id"], who["agent"])
    if allowed:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == target
        assert response.json()["version"] == ticket["version"] + 1
        assert response.headers["ETag"] == f'"{ticket["version"] + 1}"'
        assert after["status"] == target
    else:
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "invalid_transition"
        assert after == ticket  # nothing changed, version included


@pytest.mark.parametrize("source", ["new", "open", "pending", "resolved"])
async def test_customer_closes_own_ticket(client, who, source):
    ticket = await ticket_in(client, source, who)
    closed = await set_status(client, ticket["id"], "closed", who["requester"])
    assert closed["closed_at"] is not None
    events = (await client.get(f"{TICKETS}/{ticket['id']}/events", headers=who["requester"])).json()
    assert events[-1]["type"] == "ticket.updated"
    assert events[-1]["data"]["status"] == [source, "closed"]
    assert events[-1]["actor"]["id"] == who["ids"]["requester"]


async def test_customer_cannot_close_someone_elses_ticket(app, client, who):
    ticket = await ticket_in(client, "open", who)
    await create_user(app, "customer2")
    stranger = bearer(await login(client, "customer2"))
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "closed"}, headers=stranger)
    assert response.status_code == 404
    assert response.json()["code"] == "ticket_not_found"
    assert (await get_ticket(client, ticket["id"], who["agent"]))["status"] == "open"


async def test_patching_the_current_status_changes_nothing(client, who):
    ticket = await ticket_in(client, "open", who)
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "open"}, headers=who["agent"])
    assert response.status_code == 200
    assert response.json() == ticket
    assert await event_types(client, ticket["id"], who["agent"]) == ["ticket.created", "ticket.updated"]


# --- reopening a resolved ticket ----------------------------------------------------------


async def test_customer_reopens_within_the_7_day_window(app, client, who):
    ticket = await ticket_in(client, "resolved", who)
    await backdate(app, Ticket, Ticket.id == ticket["id"], resolved_at=6)
    reopened = await set_status(client, ticket["id"], "open", who["requester"])
    assert reopened["resolved_at"] is None


async def test_customer_cannot_reopen_after_7_days(app, client, who):
    ticket = await ticket_in(client, "resolved", who)
    await backdate(app, Ticket, Ticket.id == ticket["id"], resolved_at=8)
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "open"}, headers=who["requester"])
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "invalid_transition"
    assert (await get_ticket(client, ticket["id"], who["requester"]))["status"] == "resolved"


@pytest.mark.parametrize("staff", ["agent", "admin"])
async def test_staff_reopen_resolved_ticket_after_7_days(app, client, who, staff):
    ticket = await ticket_in(client, "resolved", who)
    await backdate(app, Ticket, Ticket.id == ticket["id"], resolved_at=30)
    await set_status(client, ticket["id"], "open", who[staff])


async def test_customer_reply_reopens_a_resolved_ticket_even_after_7_days(app, client, who):
    ticket = await ticket_in(client, "resolved", who)
    await backdate(app, Ticket, Ticket.id == ticket["id"], resolved_at=8)
    assert (await reply(client, ticket["id"], who["requester"])).status_code == 201
    assert (await get_ticket(client, ticket["id"], who["requester"]))["status"] == "open"


# --- closed tickets -----------------------------------------------------------------------


async def test_customer_reply_on_a_closed_ticket_is_refused(client, who):
    ticket = await ticket_in(client, "closed", who)
    response = await reply(client, ticket["id"], who["requester"])
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "ticket_closed"
    messages = (await client.get(f"{TICKETS}/{ticket['id']}/messages", headers=who["agent"])).json()
    assert len(messages) == 1
    assert await get_ticket(client, ticket["id"], who["agent"]) == ticket


@pytest.mark.parametrize("staff", ["agent", "admin"])
async def test_only_staff_reopen_a_closed_ticket(client, who, staff):
    ticket = await ticket_in(client, "closed", who)
    refused = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "open"}, headers=who["requester"])
    assert refused.status_code == 409
    assert refused.json()["code"] == "invalid_transition"
    reopened = await set_status(client, ticket["id"], "open", who[staff])
    assert reopened["closed_at"] is None
    assert (await reply(client, ticket["id"], who["requester"])).status_code == 201


# --- automatic moves ----------------------------------------------------------------------


@pytest.mark.parametrize("staff", ["agent", "admin"])
async def test_first_public_staff_reply_opens_a_new_ticket(client, who, staff):
    ticket = await new_ticket(client, who["requester"])
    assert ticket["first_responded_at"] is None

    assert (await reply(client, ticket["id"], who[staff])).status_code == 201

    after = await get_ticket(client, ticket["id"], who["requester"])
    assert after["status"] == "open"
    assert after["first_responded_at"] is not None
    events = (await client.get(f"{TICKETS}/{ticket['id']}/events", headers=who["requester"])).json()
    automatic = [e for e in events if e["type"] == "ticket.updated"]
    assert [e["data"] for e in automatic] == [{"status": ["new", "open"], "automatic": True}]
    assert automatic[0]["actor"] is None


async def test_later_replies_keep_the_first_response_time(client, who):
    ticket = await new_ticket(client, who["requester"])
    await reply(client, ticket["id"], who["agent"])
    first = (await get_ticket(client, ticket["id"], who["agent"]))["first_responded_at"]
    await reply(client, ticket["id"], who["admin"])
    assert (await get_ticket(client, ticket["id"], who["agent"]))["first_responded_at"] == first


async def test_internal_note_neither_opens_the_ticket_nor_counts_as_first_response(client, who):
    ticket = await new_ticket(client, who["requester"])
    assert (await reply(client, ticket["id"], who["agent"], internal=True)).status_code == 201
    after = await get_ticket(client, ticket["id"], who["agent"])
    assert after["status"] == "new"
    assert after["first_responded_at"] is None
    assert after["version"] == ticket["version"]


async def test_customer_reply_leaves_a_new_ticket_new(client, who):
    ticket = await new_ticket(client, who["requester"])
    assert (await reply(client, ticket["id"], who["requester"])).status_code == 201
    after = await get_ticket(client, ticket["id"], who["agent"])
    assert after["status"] == "new"
    assert after["first_responded_at"] is None


async def test_requester_reply_reopens_a_pending_ticket(client, who):
    ticket = await ticket_in(client, "pending", who)
    assert (await reply(client, ticket["id"], who["requester"])).status_code == 201
    assert (await get_ticket(client, ticket["id"], who["agent"]))["status"] == "open"


async def test_agent_reply_leaves_a_pending_ticket_pending(client, who):
    ticket = await ticket_in(client, "pending", who)
    assert (await reply(client, ticket["id"], who["agent"])).status_code == 201
    assert (await get_ticket(client, ticket["id"], who["agent"]))["status"] == "pending"


async def test_requester_reply_reopens_a_resolved_ticket(client, who):
    ticket = await ticket_in(client, "resolved", who)
    assert ticket["resolved_at"] is not None
    assert (await reply(client, ticket["id"], who["requester"])).status_code == 201
    after = await get_ticket(client, ticket["id"], who["agent"])
    assert after["status"] == "open"
    assert after["resolved_at"] is None


# --- timestamps, versions, If-Match -------------------------------------------------------


async def test_resolved_at_and_closed_at_follow_the_status(client, who):
    ticket = await new_ticket(client, who["requester"])
    assert (ticket["resolved_at"], ticket["closed_at"]) == (None, None)
    tid, agent = ticket["id"], who["agent"]

    resolved = await set_status(client, tid, "resolved", agent)
    assert resolved["resolved_at"] is not None
    assert resolved["closed_at"] is None

    closed = await set_status(client, tid, "closed", agent)
    assert closed["closed_at"] is not None
    assert closed["resolved_at"] == resolved["resolved_at"]  # closing keeps when it was resolved

    reopened = await set_status(client, tid, "open", agent)
    assert (reopened["resolved_at"], reopened["closed_at"]) == (None, None)

    resolved_again = await set_status(client, tid, "resolved", agent)
    assert resolved_again["resolved_at"] is not None
    assert (await set_status(client, tid, "open", agent))["resolved_at"] is None

    pending = await set_status(client, tid, "pending", agent)
    closed_from_pending = await set_status(client, tid, "closed", agent)
    assert pending["closed_at"] is None
    assert closed_from_pending["closed_at"] is not None
    assert closed_from_pending["resolved_at"] is None


async def test_version_bumps_on_each_change_and_etag_matches(client, who):
    ticket = await new_ticket(client, who["requester"])
    tid, agent = ticket["id"], who["agent"]
    assert ticket["version"] == 1

    async def etag_and_version() -> tuple[str, int]:
        response = await client.get(f"{TICKETS}/{tid}", headers=who["requester"])
        return response.headers["ETag"], response.json()["version"]

    assert await etag_and_version() == ('"1"', 1)
    changes = [
        {"status": "open"},
        {"priority": "high"},
        {"title": "VPN drops every 30 minutes"},
        {"tags": ["vpn"]},
        {"assignee_id": who["ids"]["agent"]},
        {"status": "pending"},
    ]
    for expected, change in enumerate(changes, start=2):
        response = await client.patch(f"{TICKETS}/{tid}", json=change, headers=agent)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == expected
        assert response.headers["ETag"] == f'"{expected}"'
        assert await etag_and_version() == (f'"{expected}"', expected)

    assert (await reply(client, tid, who["requester"])).status_code == 201  # pending -> open
    assert await etag_and_version() == ('"8"', 8)
    # A PATCH that changes nothing is no change.
    same = await client.patch(f"{TICKETS}/{tid}", json={"priority": "high", "tags": ["vpn"]}, headers=agent)
    assert same.json()["version"] == 8
    assert same.headers["ETag"] == '"8"'


async def test_stale_if_match_is_a_version_conflict(client, who):
    ticket = await new_ticket(client, who["requester"])
    await set_status(client, ticket["id"], "open", who["agent"])  # now version 2

    response = await client.patch(
        f"{TICKETS}/{ticket['id']}", json={"priority": "urgent"}, headers={**who["agent"], "If-Match": '"1"'}
    )
    assert response.status_code == 412, response.text
    assert response.json()["code"] == "version_conflict"
    after = await get_ticket(client, ticket["id"], who["agent"])
    assert (after["priority"], after["version"]) == ("normal", 2)


@pytest.mark.parametrize("if_match", ['"2"', 'W/"2"', "*"])
async def test_current_or_wildcard_if_match_is_accepted(client, who, if_match):
    ticket = await new_ticket(client, who["requester"])
    await set_status(client, ticket["id"], "open", who["agent"])
    response = await client.patch(
        f"{TICKETS}/{ticket['id']}", json={"priority": "urgent"}, headers={**who["agent"], "If-Match": if_match}
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 3
    assert response.headers["ETag"] == '"3"'


async def test_customer_if_match_is_checked_too(client, who):
    ticket = await ticket_in(client, "open", who)  # version 2
    stale = await client.patch(
        f"{TICKETS}/{ticket['id']}", json={"status": "closed"}, headers={**who["requester"], "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    current = await client.patch(
        f"{TICKETS}/{ticket['id']}", json={"status": "closed"}, headers={**who["requester"], "If-Match": '"2"'}
    )
    assert current.status_code == 200, current.text


# --- ratings ------------------------------------------------------------------------------


async def rate(client, ticket_id: int, headers, score: int, comment: str | None = None) -> Any:
    return await client.post(
        f"{TICKETS}/{ticket_id}/rating", json={"score": score, "comment": comment}, headers=headers
    )


@pytest.mark.parametrize("status", ["resolved", "closed"])
async def test_requester_rates_a_resolved_or_closed_ticket(client, who, status):
    ticket = await ticket_in(client, status, who)
    response = await rate(client, ticket["id"], who["requester"], 5, "Quick and kind")
    assert response.status_code == 200, response.text
    rated = response.json()
    assert rated["rating"]["score"] == 5
    assert rated["rating"]["comment"] == "Quick and kind"
    assert rated["status"] == status
    assert rated["version"] == ticket["version"] + 1
    assert (await get_ticket(client, ticket["id"], who["agent"]))["rating"]["score"] == 5
    events = (await client.get(f"{TICKETS}/{ticket['id']}/events", headers=who["requester"])).json()
    assert events[-1]["type"] == "ticket.rated"
    assert events[-1]["data"]["score"] == 5
    assert events[-1]["actor"]["id"] == who["ids"]["requester"]


@pytest.mark.parametrize("status", ["new", "open", "pending"])
async def test_rating_an_unfinished_ticket_is_refused(client, who, status):
    ticket = await ticket_in(client, status, who)
    response = await rate(client, ticket["id"], who["requester"], 3)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "rating_not_allowed"
    assert (await get_ticket(client, ticket["id"], who["agent"]))["rating"] is None


@pytest.mark.parametrize("staff", ["agent", "admin"])
async def test_only_the_requester_rates(client, who, staff):
    ticket = await ticket_in(client, "resolved", who)
    response = await rate(client, ticket["id"], who[staff], 1)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "forbidden"
    assert (await get_ticket(client, ticket["id"], who["agent"]))["rating"] is None


async def test_requester_changes_the_rating(client, who):
    ticket = await ticket_in(client, "resolved", who)
    first = (await rate(client, ticket["id"], who["requester"], 2, "Slow")).json()["rating"]
    response = await rate(client, ticket["id"], who["requester"], 4, "Better after all")
    assert response.status_code == 200, response.text
    second = response.json()["rating"]
    assert (second["score"], second["comment"]) == (4, "Better after all")
    assert second["created_at"] == first["created_at"]  # the same rating, changed
    assert (await get_ticket(client, ticket["id"], who["requester"]))["rating"]["score"] == 4
    types = await event_types(client, ticket["id"], who["requester"])
    assert types.count("ticket.rated") == 2


async def test_rating_cannot_be_changed_after_7_days(app, client, who):
    ticket = await ticket_in(client, "resolved", who)
    assert (await rate(client, ticket["id"], who["requester"], 2)).status_code == 200
    await backdate(app, Rating, Rating.ticket_id == ticket["id"], created_at=8)
    response = await rate(client, ticket["id"], who["requester"], 5)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "rating_not_allowed"
    assert (await get_ticket(client, ticket["id"], who["requester"]))["rating"]["score"] == 2


# --- merging ------------------------------------------------------------------------------


async def merge(client, source_id: int, target_id: int, headers) -> Any:
    return await client.post(f"{TICKETS}/{source_id}/merge", json={"into_ticket_id": target_id}, headers=headers)


async def message_ids(client, ticket_id: int, headers) -> list[int]:
    response = await client.get(f"{TICKETS}/{ticket_id}/messages", headers=headers)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()]


@pytest.mark.parametrize("staff", ["agent", "admin"])
async def test_staff_merge_a_duplicate_of_the_same_requester(client, who, staff):
    source = await new_ticket(client, who["requester"], title="VPN broken")
    target = await new_ticket(client, who["requester"], title="VPN broken again")
    await reply(client, source["id"], who["requester"])
    note = (await reply(client, source["id"], who["agent"], internal=True)).json()
    source_messages = await message_ids(client, source["id"], who["agent"])
    target_messages = await message_ids(client, target["id"], who["agent"])

    response = await merge(client, source["id"], target["id"], who[staff])

    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["id"] == source["id"]
    assert merged["status"] == "closed"
    assert merged["closed_at"] is not None
    assert merged["merged_into"] == {"id": target["id"], "number": target["number"]}
    assert await get_ticket(client, source["id"], who["requester"]) == merged
    # A's messages now live under B; B's own come first (ordered by id).
    assert await message_ids(client, source["id"], who["agent"]) == []
    assert sorted(await message_ids(client, target["id"], who["agent"])) == sorted(target_messages + source_messages)
    customer_view = await message_ids(client, target["id"], who["requester"])
    assert note["id"] not in customer_view
    assert set(customer_view) == set(target_messages + source_messages) - {note["id"]}
    for ticket in (source, target):
        assert "ticket.merged" in await event_types(client, ticket["id"], who["requester"])
    assert (await get_ticket(client, target["id"], who["agent"]))["status"] == "new"


async def test_merged_ticket_takes_no_more_replies(client, who):
    source = await new_ticket(client, who["requester"])
    target = await new_ticket(client, who["requester"])
    assert (await merge(client, source["id"], target["id"], who["agent"])).status_code == 200
    response = await reply(client, source["id"], who["requester"])
    assert response.status_code == 409
    assert response.json()["code"] == "ticket_closed"


async def test_merging_tickets_of_different_requesters_is_refused(app, client, who):
    source = await new_ticket(client, who["requester"])
    await create_user(app, "customer2")
    stranger = await login(client, "customer2")
    target = await new_ticket(client, bearer(stranger))

    response = await merge(client, source["id"], target["id"], who["agent"])

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "merge_not_allowed"
    assert (await get_ticket(client, source["id"], who["agent"]))["status"] == "new"
    assert len(await message_ids(client, source["id"], who["agent"])) == 1
    assert len(await message_ids(client, target["id"], bearer(stranger))) == 1


async def test_merging_a_ticket_into_itself_is_refused(client, who):
    ticket = await new_ticket(client, who["requester"])
    response = await merge(client, ticket["id"], ticket["id"], who["agent"])
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "merge_not_allowed"
    assert await get_ticket(client, ticket["id"], who["agent"]) == ticket


async def test_customer_may_not_merge_own_tickets(client, who):
    source = await new_ticket(client, who["requester"])
    target = await new_ticket(client, who["requester"])
    response = await merge(client, source["id"], target["id"], who["requester"])
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "forbidden"
    assert await get_ticket(client, source["id"], who["requester"]) == source


async def test_customer_merging_someone_elses_ticket_sees_not_found(app, client, who):
    theirs = await new_ticket(client, who["requester"])
    mine_too = await new_ticket(client, who["requester"])
    await create_user(app, "customer2")
    stranger = bearer(await login(client, "customer2"))
    own = await new_ticket(client, stranger)

    response = await merge(client, theirs["id"], mine_too["id"], stranger)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "ticket_not_found"
    # Naming someone else's ticket as the target of one's own is refused before it is looked at.
    assert (await merge(client, own["id"], theirs["id"], stranger)).status_code == 403
    assert await get_ticket(client, theirs["id"], who["agent"]) == theirs
