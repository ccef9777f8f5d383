"""Canned responses: staff read and render them, admins write them; rendering fills known
{{variables}} from the ticket as plain text and leaves everything else alone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import bearer

CANNED = "/api/v1/canned-responses"
TICKETS = "/api/v1/tickets"
TEAMS = "/api/v1/teams"
ROLES = ("anonymous", "customer", "agent", "admin")

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int]] = {
    #  route                                anonymous customer agent admin
    "GET /canned-responses":               (401,      403,     200,  200),
    "GET /canned-responses/{id}":          (401,      403,     200,  200),
    "POST /canned-responses":              (401,      403,     403,  201),
    "PATCH /canned-responses/{id}":        (401,      403,     403,  200),
    "DELETE /canned-responses/{id}":       (401,      403,     403,  204),
    "POST /canned-responses/{id}/render":  (401,      403,     200,  200),
}
# fmt: on


@pytest.fixture
def callers(customer, agent, admin) -> dict[str, dict[str, str]]:
    return {"anonymous": {}, "customer": bearer(customer), "agent": bearer(agent), "admin": bearer(admin)}


async def new_canned(client, admin, **fields) -> dict[str, Any]:
    body = {"title": "已收到", "body": "您好，工单 {{ticket.number}} 已收到。", **fields}
    response = await client.post(CANNED, json=body, headers=bearer(admin))
    assert response.status_code == 201, response.text
    return response.json()


async def new_ticket(client, headers, **fields) -> dict[str, Any]:
    response = await client.post(TICKETS, json={"title": "打印机卡纸", "body": "三楼", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def new_team(client, admin, name: str) -> int:
    response = await client.post(TEAMS, json={"name": name}, headers=bearer(admin))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def render(client, headers, canned_id: int, ticket_id: int):
    return await client.post(f"{CANNED}/{canned_id}/render", json={"ticket_id": ticket_id}, headers=headers)


async def rendered(client, admin, agent, template: str, ticket_id: int) -> str:
    canned = await new_canned(client, admin, body=template)
    response = await render(client, bearer(agent), canned["id"], ticket_id)
    assert response.status_code == 200, response.text
    return str(response.json()["body"])


@pytest.mark.parametrize(
    ("route", "role", "expected"),
    [
        pytest.param(route, role, expected, id=f"{route} as {role}")
        for route, codes in MATRIX.items()
        for role, expected in zip(ROLES, codes, strict=True)
    ],
)
async def test_permission_matrix(client, admin, customer, callers, route, role, expected):
    canned = await new_canned(client, admin)
    # The customer's own ticket: even then the render route is staff only.
    ticket = await new_ticket(client, bearer(customer))
    bodies: dict[str, Any] = {
        "POST /canned-responses": {"title": "结束", "body": "感谢"},
        "PATCH /canned-responses/{id}": {"title": "已受理"},
        "POST /canned-responses/{id}/render": {"ticket_id": ticket["id"]},
    }
    method, path = route.split(" ")
    url = "/api/v1" + path.replace("{id}", str(canned["id"]))
    response = await client.request(method, url, json=bodies.get(route), headers=callers[role])
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert response.json()["code"] == {401: "not_authenticated", 403: "forbidden"}[expected]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "", None), ("PATCH", "", {"title": "x"}), ("DELETE", "", None), ("POST", "/render", {"ticket_id": 1})],
)
async def test_missing_canned_response_is_canned_response_not_found(client, admin, method, path, body):
    response = await client.request(method, f"{CANNED}/999{path}", json=body, headers=bearer(admin))
    assert response.status_code == 404
    assert response.json()["code"] == "canned_response_not_found"


async def test_admin_writes_and_agents_read(client, admin, agent):
    team_id = await new_team(client, admin, "一线支持")
    canned = await new_canned(client, admin, title=" 已收到\n", team_id=team_id)
    assert canned["title"] == "已收到"
    assert canned["body"] == "您好，工单 {{ticket.number}} 已收到。"
    assert canned["team_id"] == team_id
    assert canned["created_by_id"] == admin["id"]
    assert (await client.get(f"{CANNED}/{canned['id']}", headers=bearer(agent))).json() == canned

    response = await client.patch(
        f"{CANNED}/{canned['id']}", json={"body": "新内容", "team_id": None}, headers=bearer(admin)
    )
    assert response.status_code == 200
    assert response.json()["body"] == "新内容"
    assert response.json()["title"] == "已收到"
    assert response.json()["team_id"] is None

    assert (await client.delete(f"{CANNED}/{canned['id']}", headers=bearer(admin))).status_code == 204
    response = await client.get(f"{CANNED}/{canned['id']}", headers=bearer(agent))
    assert response.status_code == 404
    assert response.json()["code"] == "canned_response_not_found"


async def test_list_filters_by_team(client, admin, agent):
    first, second = await new_team(client, admin, "一线"), await new_team(client, admin, "二线")
    a = await new_canned(client, admin, title="a", team_id=first)
    b = await new_canned(client, admin, title="b", team_id=second)
    shared = await new_canned(client, admin, title="shared")
    everything = (await client.get(CANNED, headers=bearer(agent))).json()
    assert [c["id"] for c in everything["items"]] == [a["id"], b["id"], shared["id"]]
    only_first = (await client.get(CANNED, params={"team_id": first}, headers=bearer(agent))).json()
    assert [c["id"] for c in only_first["items"]] == [a["id"]]


async def test_walking_the_cursors_returns_every_canned_response_once(client, admin, agent):
    created = [(await new_canned(client, admin, title=f"模板{i}"))["id"] for i in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(CANNED, params=params, headers=bearer(agent))).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created


async def test_an_unknown_team_is_refused(client, admin):
    response = await client.post(CANNED, json={"title": "t", "body": "b", "team_id": 999}, headers=bearer(admin))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "team_id"
    canned = await new_canned(client, admin)
    response = await client.patch(f"{CANNED}/{canned['id']}", json={"team_id": 999}, headers=bearer(admin))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "team_id"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"title": "t", "body": "x" * 10_001}, "body", "too_long"),
        ({"title": "t", "body": "  "}, "body", "blank"),
        ({"title": "x" * 101, "body": "b"}, "title", "too_long"),
        ({"title": "t", "body": "b", "created_by_id": 1}, "created_by_id", "unknown_field"),
    ],
)
async def test_invalid_input_is_refused(client, admin, body, field, code):
    response = await client.post(CANNED, json=body, headers=bearer(admin))
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)


async def test_a_body_of_ten_thousand_characters_is_accepted(client, admin):
    assert len((await new_canned(client, admin, body="好" * 10_000))["body"]) == 10_000


# --- rendering -----------------------------------------------------------------------------


async def test_render_fills_every_variable(client, admin, agent, customer):
    team_id = await new_team(client, admin, "一线支持")
    category = (await client.post("/api/v1/categories", json={"name": "硬件"}, headers=bearer(admin))).json()
    ticket = await new_ticket(
        client,
        bearer(agent),
        requester_id=customer["id"],
        assignee_id=admin["id"],
        team_id=team_id,
        category_id=category["id"],
        priority="high",
    )
    template = (
        "{{ticket.number}}|{{ticket.title}}|{{ticket.status}}|{{ticket.priority}}|{{ticket.category}}|"
        "{{requester.display_name}}|{{assignee.display_name}}|{{team.name}}|{{agent.display_name}}|{{ticket.id}}"
    )
    body = await rendered(client, admin, agent, template, ticket["id"])
    expected = [ticket["number"], "打印机卡纸", "new", "high", "硬件", "Customer1", "Admin1", "一线支持", "Agent1"]
    assert body.split("|") == [*expected, str(ticket["id"])]


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("ticket.title", "打印机卡纸"),
        ("ticket.status", "new"),
        ("requester.display_name", "Customer1"),
        ("agent.display_name", "Agent1"),
    ],
)
async def test_render_fills_each_variable(client, admin, agent, customer, variable, expected):
    ticket = await new_ticket(client, bearer(customer))
    assert await rendered(client, admin, agent, f"« {{{{{variable}}}}} »", ticket["id"]) == f"« {expected} »"


async def test_render_fills_the_ticket_number(client, admin, agent, customer):
    ticket = await new_ticket(client, bearer(customer))
    body = await rendered(client, admin, agent, "您好，工单 {{ticket.number}} 已收到。", ticket["id"])
    assert body == f"您好，工单 {ticket['number']} 已收到。"


async def test_the_agent_is_whoever_renders(client, admin, agent, customer):
    ticket = await new_ticket(client, bearer(customer))
    canned = await new_canned(client, admin, body="{{agent.display_name}}")
    assert (await render(client, bearer(agent), canned["id"], ticket["id"])).json() == {"body": "Agent1"}
    assert (await render(client, bearer(admin), canned["id"], ticket["id"])).json() == {"body": "Admin1"}


async def test_whitespace_inside_braces_is_allowed(client, admin, agent, customer):
    ticket = await new_ticket(client, bearer(customer))
    body = await rendered(client, admin, agent, "{{ ticket.number }}/{{\tticket.number  }}", ticket["id"])
    assert body == f"{ticket['number']}/{ticket['number']}"


async def test_unknown_variables_are_left_as_they_are(client, admin, agent, customer):
    ticket = await new_ticket(client, bearer(customer))
    template = "{{ticket.secret}} {{ requester.password_hash }} {{ticket.__class__}} {{unknown}} {{ticket.number"
    assert await rendered(client, admin, agent, template, ticket["id"]) == template


async def test_unset_values_render_empty(client, admin, agent, customer):
    ticket = await new_ticket(client, bearer(customer))
    body = await rendered(client, admin, agent, "[{{assignee.display_name}}][{{team.name}}]", ticket["id"])
    assert body == "[][]"


async def test_values_are_inserted_as_plain_text(client, admin, agent, customer):
    title = "{{agent.display_name}} {% raw %} ${x} <b>&amp;</b> \\1 \\g<0>"
    ticket = await new_ticket(client, bearer(customer), title=title)
    body = await rendered(client, admin, agent, "[{{ticket.title}}]", ticket["id"])
    assert body == f"[{title}]"  # not expanded again, no escaping, no backreferences


async def test_render_does_not_change_the_canned_response(client, admin, agent, customer):
    ticket = await new_ticket(client, bearer(customer))
    canned = await new_canned(client, admin)
    await render(client, bearer(agent), canned["id"], ticket["id"])
    assert (await client.get(f"{CANNED}/{canned['id']}", headers=bearer(agent))).json() == canned


async def test_render_for_a_missing_ticket_is_ticket_not_found(client, admin, agent):
    canned = await new_canned(client, admin)
    response = await render(client, bearer(agent), canned["id"], 999)
    assert response.status_code == 404
    assert response.json()["code"] == "ticket_not_found"


async def test_customers_cannot_render_even_for_their_own_ticket(client, admin, customer):
    canned = await new_canned(client, admin)
    ticket = await new_ticket(client, bearer(customer))
    response = await render(client, bearer(customer), canned["id"], ticket["id"])
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


async def test_render_refuses_unknown_fields(client, admin, agent, customer):
    canned = await new_canned(client, admin)
    ticket = await new_ticket(client, bearer(customer))
    response = await client.post(
        f"{CANNED}/{canned['id']}/render", json={"ticket_id": ticket["id"], "extra": {}}, headers=bearer(agent)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "unknown_field"
