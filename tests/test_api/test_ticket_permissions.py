"""Who may do what to a ticket: the permission matrix, internal notes kept from customers,
fields customers may not set, and lists that only ever hold a customer's own tickets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import bearer, create_user, login

TICKETS = "/api/v1/tickets"
SECRET_TITLE = "Secret printer trouble"
SECRET_BODY = "The invoice number is 4711"
NOTE = "Internal: the customer is on the watch list"

ROLES = ("anonymous", "owner", "other", "agent", "admin")

# Every ticket route against every kind of caller. "owner" is the customer who opened the
# ticket, "other" a different customer. A hidden ticket is 404 ticket_not_found, never 403.
# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #  route                               anonymous owner other agent admin
    "POST /tickets":                      (401,      201,  201,  201,  201),
    "GET /tickets":                       (401,      200,  200,  200,  200),
    "GET /tickets/{id}":                  (401,      200,  404,  200,  200),
    "PATCH /tickets/{id}":                (401,      200,  404,  200,  200),
    "POST /tickets/{id}/messages":        (401,      201,  404,  201,  201),
    "GET /tickets/{id}/messages":         (401,      200,  404,  200,  200),
    "GET /tickets/{id}/events":           (401,      200,  404,  200,  200),
    "POST /tickets/{id}/merge":           (401,      403,  404,  200,  200),
    "POST /tickets/{id}/rating":          (401,      200,  404,  403,  403),
    "GET /tickets/{id}/watchers":         (401,      404,  404,  200,  200),
    "PUT /tickets/{id}/watchers/me":      (401,      404,  404,  204,  204),
    "DELETE /tickets/{id}/watchers/me":   (401,      404,  404,  204,  204),
}
# fmt: on

# A body each caller could legitimately send (PATCH: closing is the owner's right too).
BODIES: dict[str, dict[str, Any]] = {
    "POST /tickets": {"title": "Another problem", "body": "Details"},
    "PATCH /tickets/{id}": {"status": "closed"},
    "POST /tickets/{id}/messages": {"body": "Any news?"},
    "POST /tickets/{id}/rating": {"score": 4},
}

MATRIX_CASES = [
    pytest.param(route, role, expected, id=f"{route} as {role}")
    for route, codes in MATRIX.items()
    for role, expected in zip(ROLES, codes, strict=True)
]


async def new_ticket(client, headers, **fields) -> dict[str, Any]:
    body = {"title": SECRET_TITLE, "body": SECRET_BODY, **fields}
    response = await client.post(TICKETS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def get_json(client, path: str, headers, **params) -> Any:
    response = await client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def staff_view(client, ticket_id: int, headers) -> tuple[Any, ...]:
    """Everything about a ticket as an agent sees it: unchanged means nothing happened."""
    base = f"{TICKETS}/{ticket_id}"
    return (
        await get_json(client, base, headers),
        await get_json(client, f"{base}/messages", headers),
        await get_json(client, f"{base}/events", headers),
        await get_json(client, f"{base}/watchers", headers),
    )


@pytest.fixture
async def people(app, client, customer, agent, admin) -> dict[str, Any]:
    """Ids and auth headers of everyone in the matrix; "owner" is the `customer` fixture."""
    other_id = await create_user(app, "customer2")
    other = await login(client, "customer2")
    return {
        "ids": {"owner": customer["id"], "other": other_id, "agent": agent["id"], "admin": admin["id"]},
        "anonymous": {},
        "owner": bearer(customer),
        "other": bearer(other),
        "agent": bearer(agent),
        "admin": bearer(admin),
    }


# --- the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "role", "expected"), MATRIX_CASES)
async def test_ticket_route_permissions(client, people, route, role, expected):
    ticket = await new_ticket(client, people["owner"])
    body = BODIES.get(route)
    if route == "POST /tickets/{id}/merge":
        duplicate = await new_ticket(client, people["owner"], title="Same trouble again")
        body = {"into_ticket_id": duplicate["id"]}
    if route == "POST /tickets/{id}/rating":
        resolved = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "resolved"}, headers=people["agent"])
        assert resolved.status_code == 200, resolved.text
    before = await staff_view(client, ticket["id"], people["agent"])

    method, path = route.split(" ", 1)
    url = "/api/v1" + path.replace("{id}", str(ticket["id"]))
    response = await client.request(method, url, json=body, headers=people[role])

    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.json()["code"] == "not_authenticated"
    elif expected == 403:
        assert response.json()["code"] == "forbidden"
    elif expected == 404:
        assert response.json()["code"] == "ticket_not_found"
    if expected >= 400:
        assert SECRET_TITLE not in response.text
        assert SECRET_BODY not in response.text
        assert await staff_view(client, ticket["id"], people["agent"]) == before  # refused: no effect
    if route == "GET /tickets" and response.status_code == 200:
        listed = [item["id"] for item in response.json()["items"]]
        assert (ticket["id"] in listed) == (role != "other")


async def test_hidden_ticket_looks_exactly_like_a_missing_one(client, people):
    ticket = await new_ticket(client, people["owner"])
    hidden = await client.get(f"{TICKETS}/{ticket['id']}", headers=people["other"])
    missing = await client.get(f"{TICKETS}/{ticket['id'] + 1000}", headers=people["other"])
    assert hidden.status_code == missing.status_code == 404
    strip = ("request_id",)
    assert {k: v for k, v in hidden.json().items() if k not in strip} == {
        k: v for k, v in missing.json().items() if k not in strip
    }


async def test_other_customer_cannot_post_an_internal_note_on_a_hidden_ticket(client, people):
    ticket = await new_ticket(client, people["owner"])
    response = await client.post(
        f"{TICKETS}/{ticket['id']}/messages", json={"body": "x", "internal": True}, headers=people["other"]
    )
    assert response.status_code == 404
    assert response.json()["code"] == "ticket_not_found"


# --- internal notes never reach a customer ------------------------------------------------


async def add_note(client, ticket_id: int, headers) -> dict[str, Any]:
    response = await client.post(
        f"{TICKETS}/{ticket_id}/messages", json={"body": NOTE, "internal": True}, headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["internal"] is True
    return response.json()


async def test_customer_never_receives_internal_notes_in_messages(client, people):
    ticket = await new_ticket(client, people["owner"])
    note = await add_note(client, ticket["id"], people["agent"])
    path = f"{TICKETS}/{ticket['id']}/messages"

    seen = await get_json(client, path, people["owner"])
    assert [m["body"] for m in seen] == [SECRET_BODY]
    assert note["id"] not in [m["id"] for m in seen]
    assert NOTE in [m["body"] for m in await get_json(client, path, people["agent"])]


async def test_customer_timeline_has_no_note_or_assignment_events(client, people):
    ticket = await new_ticket(client, people["agent"], requester_id=people["ids"]["owner"])
    await add_note(client, ticket["id"], people["agent"])
    assigned = await client.patch(
        f"{TICKETS}/{ticket['id']}", json={"assignee_id": people["ids"]["agent"]}, headers=people["agent"]
    )
    assert assigned.status_code == 200, assigned.text
    path = f"{TICKETS}/{ticket['id']}/events"

    staff_types = [e["type"] for e in await get_json(client, path, people["agent"])]
    assert {"ticket.note_added", "ticket.assigned"} <= set(staff_types)
    customer_events = await get_json(client, path, people["owner"])
    customer_types = [e["type"] for e in customer_events]
    assert "ticket.note_added" not in customer_types
    assert "ticket.assigned" not in customer_types
    assert not any(e["internal"] for e in customer_events)
    assert customer_types == [t for t in staff_types if t not in ("ticket.note_added", "ticket.assigned")]


async def test_assignment_at_creation_is_not_in_the_customer_timeline(client, people):
    ticket = await new_ticket(
        client, people["agent"], requester_id=people["ids"]["owner"], assignee_id=people["ids"]["agent"]
    )
    path = f"{TICKETS}/{ticket['id']}/events"
    assert "ticket.assigned" in [e["type"] for e in await get_json(client, path, people["agent"])]
    assert [e["type"] for e in await get_json(client, path, people["owner"])] == ["ticket.created"]


async def test_internal_note_leaves_the_ticket_unchanged_for_the_customer(client, people):
    ticket = await new_ticket(client, people["owner"])
    path = f"{TICKETS}/{ticket['id']}"
    before = await client.get(path, headers=people["owner"])

    await add_note(client, ticket["id"], people["agent"])

    after = await client.get(path, headers=people["owner"])
    assert after.json() == before.json()  # updated_at, version, status, first_responded_at alike
    assert after.headers["ETag"] == before.headers["ETag"]
    staff = await get_json(client, path, people["agent"])
    assert (staff["version"], staff["updated_at"]) == (ticket["version"], ticket["updated_at"])


async def test_internal_note_does_not_move_the_ticket_in_customer_lists(client, people):
    ticket = await new_ticket(client, people["owner"])
    newer = await new_ticket(client, people["owner"], title="A later ticket")
    before = await get_json(client, TICKETS, people["owner"])

    await add_note(client, ticket["id"], people["agent"])

    assert await get_json(client, TICKETS, people["owner"]) == before  # same order, same items
    assert [t["id"] for t in before["items"]] == [newer["id"], ticket["id"]]
    synced = await get_json(client, TICKETS, people["owner"], updated_after=newer["updated_at"])
    assert synced["items"] == []  # a syncing client is not told that something happened


async def test_merge_event_does_not_count_internal_notes_for_the_customer(client, people):
    source = await new_ticket(client, people["owner"])  # one public message
    target = await new_ticket(client, people["owner"], title="Same trouble again")
    await add_note(client, source["id"], people["agent"])  # and one internal note
    merged = await client.post(
        f"{TICKETS}/{source['id']}/merge", json={"into_ticket_id": target["id"]}, headers=people["agent"]
    )
    assert merged.status_code == 200, merged.text

    events = await get_json(client, f"{TICKETS}/{target['id']}/events", people["owner"])
    [event] = [e for e in events if e["type"] == "ticket.merged"]
    assert len(await get_json(client, f"{TICKETS}/{target['id']}/messages", people["owner"])) == 2
    # The customer saw one message arrive; the event must not say two (or must not count at all).
    assert event["data"].get("messages", 1) == 1


# --- fields a customer may not set --------------------------------------------------------


@pytest.mark.parametrize("field", ["priority", "tags", "requester_id", "assignee_id", "team_id"])
async def test_customer_cannot_set_staff_fields_on_create(client, people, field):
    values = {
        "priority": "high",
        "tags": ["vip"],
        "requester_id": people["ids"]["other"],
        "assignee_id": people["ids"]["agent"],
        "team_id": 1,
    }
    response = await client.post(
        TICKETS, json={"title": "t", "body": "b", field: values[field]}, headers=people["owner"]
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "field_not_allowed"
    assert [e["field"] for e in problem["errors"]] == [field]
    assert problem["errors"][0]["code"] == "field_not_allowed"
    assert (await get_json(client, TICKETS, people["owner"]))["items"] == []  # nothing created


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "Renamed"),
        ("priority", "urgent"),
        ("category_id", 1),
        ("assignee_id", "agent"),
        ("team_id", 1),
        ("tags", ["vip"]),
    ],
)
async def test_customer_can_change_nothing_but_status(client, people, field, value):
    ticket = await new_ticket(client, people["owner"])
    if value == "agent":
        value = people["ids"]["agent"]
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={field: value}, headers=people["owner"])
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "field_not_allowed"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await get_json(client, f"{TICKETS}/{ticket['id']}", people["owner"]) == ticket


async def test_customer_patch_with_a_forbidden_field_applies_nothing(client, people):
    ticket = await new_ticket(client, people["owner"])
    response = await client.patch(
        f"{TICKETS}/{ticket['id']}", json={"status": "closed", "priority": "urgent"}, headers=people["owner"]
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "priority"
    assert (await get_json(client, f"{TICKETS}/{ticket['id']}", people["owner"]))["status"] == "new"


@pytest.mark.parametrize("field", ["assignee_id", "team_id", "category_id"])
async def test_customer_cannot_clear_routing_fields_with_null(client, people, field):
    ticket = await new_ticket(
        client, people["agent"], requester_id=people["ids"]["owner"], assignee_id=people["ids"]["agent"]
    )
    response = await client.patch(f"{TICKETS}/{ticket['id']}", json={field: None}, headers=people["owner"])
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "field_not_allowed"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    after = await get_json(client, f"{TICKETS}/{ticket['id']}", people["agent"])
    assert after["assignee"] == {"id": people["ids"]["agent"], "display_name": "Agent1"}
    assert after["version"] == ticket["version"]


async def test_customer_cannot_post_internal_notes(client, people):
    ticket = await new_ticket(client, people["owner"])
    response = await client.post(
        f"{TICKETS}/{ticket['id']}/messages", json={"body": "psst", "internal": True}, headers=people["owner"]
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "field_not_allowed"
    assert [e["field"] for e in response.json()["errors"]] == ["internal"]
    messages = await get_json(client, f"{TICKETS}/{ticket['id']}/messages", people["agent"])
    assert [m["body"] for m in messages] == [SECRET_BODY]


async def test_customer_may_send_internal_false(client, people):
    ticket = await new_ticket(client, people["owner"])
    response = await client.post(
        f"{TICKETS}/{ticket['id']}/messages", json={"body": "hello", "internal": False}, headers=people["owner"]
    )
    assert response.status_code == 201, response.text
    assert response.json()["internal"] is False


# --- lists --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "finds_own"),
    [
        pytest.param({}, True, id="no filters"),
        pytest.param({"requester_id": "other"}, False, id="requester_id=other"),
        pytest.param({"requester_id": "owner"}, True, id="requester_id=self"),
        pytest.param({"number": "theirs"}, False, id="number=theirs"),
        pytest.param({"q": "Confidential"}, True, id="q"),
        pytest.param({"assignee_id": "agent"}, False, id="assignee_id"),
        pytest.param({"priority": "urgent"}, False, id="priority"),
        pytest.param({"status": ["new", "open", "pending", "resolved", "closed"]}, True, id="every status"),
        pytest.param({"sort": "-priority"}, True, id="sort=-priority"),
        pytest.param({"sort": "due"}, True, id="sort=due"),
    ],
)
async def test_customer_list_holds_only_their_own_tickets_whatever_the_filters(client, people, filters, finds_own):
    mine = await new_ticket(client, people["owner"], title="My confidential matter")
    theirs = await new_ticket(
        client,
        people["agent"],
        title="Their confidential matter",
        requester_id=people["ids"]["other"],
        assignee_id=people["ids"]["agent"],
        priority="urgent",
    )
    assert theirs["requester"]["id"] == people["ids"]["other"]
    params = dict(filters)
    if params.get("requester_id") in people["ids"]:
        params["requester_id"] = people["ids"][params["requester_id"]]
    if params.get("assignee_id") == "agent":
        params["assignee_id"] = people["ids"]["agent"]
    if params.get("number") == "theirs":
        params["number"] = theirs["number"]

    items = (await get_json(client, TICKETS, people["owner"], **params))["items"]

    assert theirs["id"] not in [t["id"] for t in items]
    assert all(t["requester"]["id"] == people["ids"]["owner"] for t in items)
    assert [t["id"] for t in items] == ([mine["id"]] if finds_own else [])


async def test_filtering_by_another_customer_as_requester_is_empty(client, people):
    await new_ticket(client, people["other"])
    page = await get_json(client, TICKETS, people["owner"], requester_id=people["ids"]["other"])
    assert page == {"items": [], "next_cursor": None}


async def test_agent_sees_every_customers_tickets(client, people):
    mine = await new_ticket(client, people["owner"])
    theirs = await new_ticket(client, people["other"])
    items = (await get_json(client, TICKETS, people["agent"]))["items"]
    assert {mine["id"], theirs["id"]} <= {t["id"] for t in items}


# --- tickets on someone's behalf ----------------------------------------------------------


@pytest.mark.parametrize("staff", ["agent", "admin"])
async def test_staff_opens_a_ticket_on_behalf_of_a_customer_who_then_sees_it(client, people, staff):
    ticket = await new_ticket(client, people[staff], title="Phoned in", requester_id=people["ids"]["owner"])
    assert ticket["requester"]["id"] == people["ids"]["owner"]

    listed = (await get_json(client, TICKETS, people["owner"]))["items"]
    assert [t["id"] for t in listed] == [ticket["id"]]
    assert (await get_json(client, f"{TICKETS}/{ticket['id']}", people["owner"]))["title"] == "Phoned in"
    reply = await client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "Thanks"}, headers=people["owner"])
    assert reply.status_code == 201
    hidden = await client.get(f"{TICKETS}/{ticket['id']}", headers=people["other"])
    assert hidden.status_code == 404
    assert (await get_json(client, TICKETS, people[staff], requester_id=people["ids"]["owner"]))["items"][0][
        "id"
    ] == ticket["id"]
