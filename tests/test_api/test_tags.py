"""Tags: staff list them (prefix filter, sorted by name, keyset pages), admins delete them,
which takes them off every ticket."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import bearer

TAGS = "/api/v1/tags"
TICKETS = "/api/v1/tickets"
ROLES = ("anonymous", "customer", "agent", "admin")

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int]] = {
    #  route                 anonymous customer agent admin
    "GET /tags":            (401,      403,     200,  200),
    "DELETE /tags/{id}":    (401,      403,     403,  204),
}
# fmt: on


@pytest.fixture
def callers(customer, agent, admin) -> dict[str, dict[str, str]]:
    return {"anonymous": {}, "customer": bearer(customer), "agent": bearer(agent), "admin": bearer(admin)}


async def tagged_ticket(client, agent, customer, tags: list[str]) -> dict[str, Any]:
    body = {"title": "打印机卡纸", "body": "三楼", "requester_id": customer["id"], "tags": tags}
    response = await client.post(TICKETS, json=body, headers=bearer(agent))
    assert response.status_code == 201, response.text
    return response.json()


async def tag_names(client, headers, **params) -> list[str]:
    response = await client.get(TAGS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()["items"]]


async def tag_id(client, agent, name: str) -> int:
    items = (await client.get(TAGS, params={"q": name}, headers=bearer(agent))).json()["items"]
    return int(next(t["id"] for t in items if t["name"] == name))


@pytest.mark.parametrize(
    ("route", "role", "expected"),
    [
        pytest.param(route, role, expected, id=f"{route} as {role}")
        for route, codes in MATRIX.items()
        for role, expected in zip(ROLES, codes, strict=True)
    ],
)
async def test_permission_matrix(client, agent, customer, callers, route, role, expected):
    await tagged_ticket(client, agent, customer, ["printer"])
    method, path = route.split(" ")
    url = "/api/v1" + path.replace("{id}", str(await tag_id(client, agent, "printer")))
    response = await client.request(method, url, headers=callers[role])
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert response.json()["code"] == {401: "not_authenticated", 403: "forbidden"}[expected]


async def test_tags_from_tickets_are_listed_by_name(client, agent, customer):
    await tagged_ticket(client, agent, customer, ["Printer", "网络", "urgent-fix"])
    await tagged_ticket(client, agent, customer, ["printer", "VPN"])
    assert await tag_names(client, bearer(agent)) == sorted(["printer", "网络", "urgent-fix", "vpn"])
    item = (await client.get(TAGS, headers=bearer(agent))).json()["items"][0]
    assert set(item) == {"id", "name", "created_at"}


async def test_q_keeps_tags_starting_with_it(client, agent, customer):
    await tagged_ticket(client, agent, customer, ["printer", "print-queue", "paper", "打印机", "打印纸", "reprint"])
    assert await tag_names(client, bearer(agent), q="print") == ["print-queue", "printer"]
    assert await tag_names(client, bearer(agent), q=" PRINT ") == ["print-queue", "printer"]  # folded like tags
    assert await tag_names(client, bearer(agent), q="打印") == sorted(["打印机", "打印纸"])
    assert await tag_names(client, bearer(agent), q="nothing") == []


async def test_q_matches_wildcards_literally(client, agent, customer):
    await tagged_ticket(client, agent, customer, ["50%_off", "500", "a_b", "axb"])
    assert await tag_names(client, bearer(agent), q="50%") == ["50%_off"]
    assert await tag_names(client, bearer(agent), q="a_") == ["a_b"]
    assert await tag_names(client, bearer(agent), q="%") == []


async def test_walking_the_cursors_returns_every_tag_once(client, agent, customer):
    names = [f"tag{i:02d}" for i in range(7)]
    await tagged_ticket(client, agent, customer, names)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "q": "tag", **({"cursor": cursor} if cursor else {})}
        page = (await client.get(TAGS, params=params, headers=bearer(agent))).json()
        seen += [t["name"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names


async def test_a_bad_cursor_is_400(client, agent):
    response = await client.get(TAGS, params={"cursor": "eyJpZCI6MX0"}, headers=bearer(agent))  # {"id":1}
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


async def test_deleting_a_tag_removes_it_from_tickets(client, agent, admin, customer):
    ticket = await tagged_ticket(client, agent, customer, ["printer", "urgent"])
    other = await tagged_ticket(client, agent, customer, ["printer"])
    response = await client.delete(f"{TAGS}/{await tag_id(client, agent, 'printer')}", headers=bearer(admin))
    assert response.status_code == 204
    assert response.content == b""

    assert (await client.get(f"{TICKETS}/{ticket['id']}", headers=bearer(agent))).json()["tags"] == ["urgent"]
    assert (await client.get(f"{TICKETS}/{other['id']}", headers=bearer(agent))).json()["tags"] == []
    assert await tag_names(client, bearer(agent)) == ["urgent"]
    filtered = (await client.get(TICKETS, params={"tag": "printer"}, headers=bearer(agent))).json()
    assert filtered["items"] == []


async def test_a_deleted_tag_comes_back_when_a_ticket_uses_it_again(client, agent, admin, customer):
    await tagged_ticket(client, agent, customer, ["printer"])
    await client.delete(f"{TAGS}/{await tag_id(client, agent, 'printer')}", headers=bearer(admin))
    assert await tag_names(client, bearer(agent)) == []
    ticket = await tagged_ticket(client, agent, customer, ["printer"])
    assert ticket["tags"] == ["printer"]
    assert await tag_names(client, bearer(agent)) == ["printer"]


async def test_missing_tag_is_tag_not_found(client, admin):
    response = await client.delete(f"{TAGS}/999", headers=bearer(admin))
    assert response.status_code == 404
    assert response.json()["code"] == "tag_not_found"
