"""Teams: staff read them with their members, admins create, rename and staff them; only
active agents and admins may be members."""

from __future__ import annotations

from typing import Any

import pytest

from app.models.user import Role
from tests.conftest import bearer, create_user

TEAMS = "/api/v1/teams"
ROLES = ("anonymous", "customer", "agent", "admin")

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int]] = {
    #  route                        anonymous customer agent admin
    "GET /teams":                  (401,      403,     200,  200),
    "GET /teams/{id}":             (401,      403,     200,  200),
    "POST /teams":                 (401,      403,     403,  201),
    "PATCH /teams/{id}":           (401,      403,     403,  200),
    "PUT /teams/{id}/members":     (401,      403,     403,  200),
}
# fmt: on
BODIES: dict[str, dict[str, Any]] = {
    "POST /teams": {"name": "二线支持"},
    "PATCH /teams/{id}": {"description": "疑难问题"},
    "PUT /teams/{id}/members": {"user_ids": []},
}


@pytest.fixture
def callers(customer, agent, admin) -> dict[str, dict[str, str]]:
    return {"anonymous": {}, "customer": bearer(customer), "agent": bearer(agent), "admin": bearer(admin)}


async def new_team(client, admin, **fields) -> dict[str, Any]:
    response = await client.post(TEAMS, json={"name": "一线支持", **fields}, headers=bearer(admin))
    assert response.status_code == 201, response.text
    return response.json()


async def put_members(client, admin, team_id: int, user_ids: list[int]):
    return await client.put(f"{TEAMS}/{team_id}/members", json={"user_ids": user_ids}, headers=bearer(admin))


@pytest.mark.parametrize(
    ("route", "role", "expected"),
    [
        pytest.param(route, role, expected, id=f"{route} as {role}")
        for route, codes in MATRIX.items()
        for role, expected in zip(ROLES, codes, strict=True)
    ],
)
async def test_permission_matrix(client, admin, callers, route, role, expected):
    team = await new_team(client, admin)
    method, path = route.split(" ")
    url = "/api/v1" + path.replace("{id}", str(team["id"]))
    response = await client.request(method, url, json=BODIES.get(route), headers=callers[role])
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert response.json()["code"] == {401: "not_authenticated", 403: "forbidden"}[expected]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "", None), ("PATCH", "", {"name": "x"}), ("PUT", "/members", {"user_ids": []})],
)
async def test_missing_team_is_team_not_found(client, admin, method, path, body):
    response = await client.request(method, f"{TEAMS}/999{path}", json=body, headers=bearer(admin))
    assert response.status_code == 404
    assert response.json()["code"] == "team_not_found"


async def test_admin_creates_and_renames_a_team(client, admin, agent):
    team = await new_team(client, admin, name=" 一线\t支持 ", description="白天值班")
    assert team["name"] == "一线 支持"
    assert team["description"] == "白天值班"
    assert team["members"] == []
    response = await client.patch(f"{TEAMS}/{team['id']}", json={"name": "前台"}, headers=bearer(admin))
    assert response.status_code == 200
    assert response.json()["name"] == "前台"
    assert response.json()["description"] == "白天值班"
    response = await client.patch(f"{TEAMS}/{team['id']}", json={"description": None}, headers=bearer(admin))
    assert response.json()["description"] is None
    read = await client.get(f"{TEAMS}/{team['id']}", headers=bearer(agent))
    assert read.json() == response.json()


async def test_team_names_are_unique(client, admin):
    await new_team(client, admin, name="一线支持")
    other = await new_team(client, admin, name="二线支持")
    response = await client.post(TEAMS, json={"name": "一线支持"}, headers=bearer(admin))
    assert response.status_code == 409
    assert response.json()["code"] == "team_exists"
    response = await client.patch(f"{TEAMS}/{other['id']}", json={"name": "一线支持"}, headers=bearer(admin))
    assert response.status_code == 409
    assert response.json()["code"] == "team_exists"


@pytest.mark.parametrize(
    ("body", "code"),
    [({"name": ""}, "too_short"), ({"name": "x" * 65}, "too_long"), ({"name": "\n"}, "blank"), ({}, "required")],
)
async def test_invalid_names_are_refused(client, admin, body, code):
    response = await client.post(TEAMS, json=body, headers=bearer(admin))
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "name",
        "code": code,
        "message": response.json()["errors"][0]["message"],
    }


async def test_admin_sets_and_replaces_the_members(app, client, admin, agent):
    team = await new_team(client, admin)
    agent2 = await create_user(app, "agent2", Role.agent)
    response = await put_members(client, admin, team["id"], [agent2, admin["id"], agent["id"], agent2])
    assert response.status_code == 200
    members = sorted([(admin["id"], "Admin1"), (agent["id"], "Agent1"), (agent2, "Agent2")])
    assert response.json()["members"] == [{"id": i, "display_name": n} for i, n in members]

    # The agents see the members, in the list and alone.
    listed = (await client.get(TEAMS, headers=bearer(agent))).json()
    assert listed["items"][0]["members"] == response.json()["members"]
    read = (await client.get(f"{TEAMS}/{team['id']}", headers=bearer(agent))).json()
    assert read["members"] == response.json()["members"]

    response = await put_members(client, admin, team["id"], [agent2])
    assert response.json()["members"] == [{"id": agent2, "display_name": "Agent2"}]
    response = await put_members(client, admin, team["id"], [])
    assert response.json()["members"] == []


async def test_an_agent_may_belong_to_several_teams(client, admin, agent):
    first, second = await new_team(client, admin, name="A"), await new_team(client, admin, name="B")
    for team in (first, second):
        assert (await put_members(client, admin, team["id"], [agent["id"]])).status_code == 200
    listed = (await client.get(TEAMS, headers=bearer(agent))).json()
    assert [[m["id"] for m in t["members"]] for t in listed["items"]] == [[agent["id"]], [agent["id"]]]


async def test_customers_cannot_be_members(client, admin, agent, customer):
    team = await new_team(client, admin)
    await put_members(client, admin, team["id"], [agent["id"]])
    response = await put_members(client, admin, team["id"], [agent["id"], customer["id"]])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "user_ids"
    # Nothing changed.
    read = (await client.get(f"{TEAMS}/{team['id']}", headers=bearer(admin))).json()
    assert [m["id"] for m in read["members"]] == [agent["id"]]


async def test_inactive_agents_cannot_be_members(app, client, admin):
    team = await new_team(client, admin)
    retired = await create_user(app, "retired", Role.agent)
    response = await client.patch(f"/api/v1/users/{retired}", json={"is_active": False}, headers=bearer(admin))
    assert response.status_code == 200
    response = await put_members(client, admin, team["id"], [retired])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "user_ids"


async def test_unknown_users_cannot_be_members(client, admin):
    team = await new_team(client, admin)
    response = await put_members(client, admin, team["id"], [999])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "user_ids"


async def test_members_body_refuses_unknown_fields(client, admin):
    team = await new_team(client, admin)
    response = await client.put(
        f"{TEAMS}/{team['id']}/members", json={"user_ids": [], "add": [1]}, headers=bearer(admin)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "unknown_field"


async def test_walking_the_cursors_returns_every_team_once(client, admin, agent):
    created = [(await new_team(client, admin, name=f"团队{i}"))["id"] for i in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(TEAMS, params=params, headers=bearer(agent))).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created


async def test_a_ticket_can_be_routed_to_a_new_team(client, admin, agent, customer):
    team = await new_team(client, admin)
    response = await client.post(
        "/api/v1/tickets",
        json={"title": "t", "body": "b", "requester_id": customer["id"], "team_id": team["id"]},
        headers=bearer(agent),
    )
    assert response.status_code == 201
    assert response.json()["team"] == {"id": team["id"], "name": "一线支持"}
