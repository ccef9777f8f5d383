"""Categories: who may do what, the one-level tree, unique names per parent, and inactive
categories hidden from customers and refused for new tickets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import bearer

CATEGORIES = "/api/v1/categories"
TICKETS = "/api/v1/tickets"
ROLES = ("anonymous", "customer", "agent", "admin")

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int]] = {
    #  route                        anonymous customer agent admin
    "GET /categories":             (401,      200,     200,  200),
    "GET /categories/{id}":        (401,      200,     200,  200),
    "POST /categories":            (401,      403,     403,  201),
    "PATCH /categories/{id}":      (401,      403,     403,  200),
}
# fmt: on
BODIES: dict[str, dict[str, Any]] = {
    "POST /categories": {"name": "账号问题"},
    "PATCH /categories/{id}": {"description": "登录、密码"},
}


@pytest.fixture
def callers(customer, agent, admin) -> dict[str, dict[str, str]]:
    return {"anonymous": {}, "customer": bearer(customer), "agent": bearer(agent), "admin": bearer(admin)}


async def new_category(client, admin, **fields) -> dict[str, Any]:
    response = await client.post(CATEGORIES, json={"name": "硬件", **fields}, headers=bearer(admin))
    assert response.status_code == 201, response.text
    return response.json()


async def patch(client, admin, category_id: int, **fields):
    return await client.patch(f"{CATEGORIES}/{category_id}", json=fields, headers=bearer(admin))


def field_error(response) -> tuple[str, str]:
    error = response.json()["errors"][0]
    return error["field"], error["code"]


@pytest.mark.parametrize(
    ("route", "role", "expected"),
    [
        pytest.param(route, role, expected, id=f"{route} as {role}")
        for route, codes in MATRIX.items()
        for role, expected in zip(ROLES, codes, strict=True)
    ],
)
async def test_permission_matrix(client, admin, callers, route, role, expected):
    category = await new_category(client, admin)
    method, path = route.split(" ")
    url = "/api/v1" + path.replace("{id}", str(category["id"]))
    response = await client.request(method, url, json=BODIES.get(route), headers=callers[role])
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert response.json()["code"] == {401: "not_authenticated", 403: "forbidden"}[expected]


@pytest.mark.parametrize(("method", "body"), [("GET", None), ("PATCH", {"name": "x"})])
async def test_missing_category_is_category_not_found(client, admin, method, body):
    response = await client.request(method, f"{CATEGORIES}/999", json=body, headers=bearer(admin))
    assert response.status_code == 404
    assert response.json()["code"] == "category_not_found"


async def test_not_found_text_follows_accept_language(client, admin):
    headers = {**bearer(admin), "Accept-Language": "en"}
    response = await client.get(f"{CATEGORIES}/999", headers=headers)
    assert response.json()["detail"] == "Category not found"
    response = await client.get(f"{CATEGORIES}/999", headers=bearer(admin))
    assert response.json()["detail"] == "分类不存在"


async def test_admin_creates_a_category_with_a_child(client, admin, customer):
    parent = await new_category(client, admin, name="  硬件\n设备 ", description="电脑、打印机")
    assert parent["name"] == "硬件 设备"
    assert parent["parent_id"] is None
    assert parent["description"] == "电脑、打印机"
    assert parent["is_active"] is True
    assert parent["created_at"].endswith("Z")
    child = await new_category(client, admin, name="打印机", parent_id=parent["id"])
    assert child["parent_id"] == parent["id"]
    assert child["description"] is None

    listed = (await client.get(CATEGORIES, headers=bearer(customer))).json()
    assert [(c["id"], c["parent_id"]) for c in listed["items"]] == [(parent["id"], None), (child["id"], parent["id"])]
    assert listed["next_cursor"] is None
    read = await client.get(f"{CATEGORIES}/{child['id']}", headers=bearer(customer))
    assert read.json() == child


async def test_admin_renames_and_describes_a_category(client, admin):
    category = await new_category(client, admin, description="旧描述")
    response = await patch(client, admin, category["id"], name="硬件设备")
    assert response.status_code == 200
    assert response.json()["name"] == "硬件设备"
    assert response.json()["description"] == "旧描述"
    response = await patch(client, admin, category["id"], description=None)
    assert response.json()["description"] is None
    assert response.json()["name"] == "硬件设备"


async def test_patch_through_method_override(client, admin):
    category = await new_category(client, admin)
    response = await client.post(
        f"{CATEGORIES}/{category['id']}",
        json={"name": "网络"},
        headers={**bearer(admin), "X-HTTP-Method-Override": "PATCH"},
    )
    assert response.status_code == 200
    assert response.json()["name"] == "网络"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"name": ""}, "name", "too_short"),
        ({"name": "   "}, "name", "blank"),
        ({"name": "x" * 65}, "name", "too_long"),
        ({"name": "ok", "description": "d" * 256}, "description", "too_long"),
        ({"name": "ok", "is_active": False}, "is_active", "unknown_field"),
        ({}, "name", "required"),
    ],
)
async def test_invalid_input_is_refused(client, admin, body, field, code):
    response = await client.post(CATEGORIES, json=body, headers=bearer(admin))
    assert response.status_code == 422
    assert field_error(response) == (field, code)


async def test_name_of_64_characters_is_accepted(client, admin):
    assert (await new_category(client, admin, name="类" * 64))["name"] == "类" * 64


async def test_names_are_unique_per_parent(client, admin):
    hardware = await new_category(client, admin, name="硬件")
    software = await new_category(client, admin, name="软件")
    response = await client.post(CATEGORIES, json={"name": "硬件"}, headers=bearer(admin))
    assert response.status_code == 409
    assert response.json()["code"] == "category_exists"

    await new_category(client, admin, name="其他", parent_id=hardware["id"])
    await new_category(client, admin, name="其他", parent_id=software["id"])  # another parent: fine
    await new_category(client, admin, name="其他")  # top level: fine
    response = await client.post(CATEGORIES, json={"name": "其他", "parent_id": hardware["id"]}, headers=bearer(admin))
    assert response.status_code == 409
    assert response.json()["code"] == "category_exists"


async def test_rename_or_move_onto_a_taken_name_conflicts(client, admin):
    hardware = await new_category(client, admin, name="硬件")
    network = await new_category(client, admin, name="网络")
    response = await patch(client, admin, network["id"], name="硬件")
    assert response.status_code == 409
    assert response.json()["code"] == "category_exists"

    await new_category(client, admin, name="网络", parent_id=hardware["id"])
    response = await patch(client, admin, network["id"], parent_id=hardware["id"])
    assert response.status_code == 409
    # Renaming to its own name is no conflict.
    assert (await patch(client, admin, network["id"], name="网络")).status_code == 200


async def test_a_parent_must_be_a_top_level_category(client, admin):
    top = await new_category(client, admin, name="硬件")
    child = await new_category(client, admin, name="打印机", parent_id=top["id"])
    response = await client.post(CATEGORIES, json={"name": "卡纸", "parent_id": child["id"]}, headers=bearer(admin))
    assert response.status_code == 422
    assert field_error(response) == ("parent_id", "nesting_too_deep")

    other = await new_category(client, admin, name="网络")
    response = await patch(client, admin, other["id"], parent_id=child["id"])
    assert response.status_code == 422
    assert field_error(response) == ("parent_id", "nesting_too_deep")


async def test_a_category_with_children_cannot_get_a_parent(client, admin):
    top = await new_category(client, admin, name="硬件")
    await new_category(client, admin, name="打印机", parent_id=top["id"])
    other = await new_category(client, admin, name="网络")
    response = await patch(client, admin, top["id"], parent_id=other["id"])
    assert response.status_code == 422
    assert field_error(response) == ("parent_id", "nesting_too_deep")


async def test_a_category_cannot_be_its_own_parent(client, admin):
    category = await new_category(client, admin)
    response = await patch(client, admin, category["id"], parent_id=category["id"])
    assert response.status_code == 422
    assert field_error(response) == ("parent_id", "invalid_value")


async def test_a_missing_parent_is_refused(client, admin):
    response = await client.post(CATEGORIES, json={"name": "x", "parent_id": 999}, headers=bearer(admin))
    assert response.status_code == 422
    assert field_error(response) == ("parent_id", "invalid_value")


async def test_a_child_moves_to_another_parent_and_to_the_top(client, admin):
    hardware = await new_category(client, admin, name="硬件")
    software = await new_category(client, admin, name="软件")
    child = await new_category(client, admin, name="驱动", parent_id=hardware["id"])
    response = await patch(client, admin, child["id"], parent_id=software["id"])
    assert response.json()["parent_id"] == software["id"]
    response = await patch(client, admin, child["id"], parent_id=None)
    assert response.json()["parent_id"] is None
    # A former parent with no children left may now become a child.
    response = await patch(client, admin, hardware["id"], parent_id=software["id"])
    assert response.status_code == 200


async def test_inactive_categories_are_hidden_from_customers(client, admin, agent, customer):
    active = await new_category(client, admin, name="硬件")
    retired = await new_category(client, admin, name="旧系统")
    assert (await patch(client, admin, retired["id"], is_active=False)).json()["is_active"] is False

    listed = (await client.get(CATEGORIES, headers=bearer(customer))).json()
    assert [c["id"] for c in listed["items"]] == [active["id"]]
    response = await client.get(f"{CATEGORIES}/{retired['id']}", headers=bearer(customer))
    assert response.status_code == 404
    assert response.json()["code"] == "category_not_found"

    # Staff see active ones by default and every one when they ask.
    listed = (await client.get(CATEGORIES, headers=bearer(agent))).json()
    assert [c["id"] for c in listed["items"]] == [active["id"]]
    listed = (await client.get(CATEGORIES, params={"include_inactive": "true"}, headers=bearer(agent))).json()
    assert [c["id"] for c in listed["items"]] == [active["id"], retired["id"]]
    assert (await client.get(f"{CATEGORIES}/{retired['id']}", headers=bearer(agent))).status_code == 200


async def test_customers_may_not_ask_for_inactive_categories(client, customer):
    response = await client.get(CATEGORIES, params={"include_inactive": "true"}, headers=bearer(customer))
    assert response.status_code == 422
    assert field_error(response) == ("include_inactive", "field_not_allowed")


async def test_an_inactive_category_is_refused_for_a_new_ticket(client, admin, customer):
    category = await new_category(client, admin)
    ok = await client.post(
        TICKETS, json={"title": "t", "body": "b", "category_id": category["id"]}, headers=bearer(customer)
    )
    assert ok.status_code == 201
    assert ok.json()["category"] == {"id": category["id"], "name": "硬件"}

    await patch(client, admin, category["id"], is_active=False)
    response = await client.post(
        TICKETS, json={"title": "t", "body": "b", "category_id": category["id"]}, headers=bearer(customer)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "category_id"
    # The ticket filed earlier keeps its category.
    kept = await client.get(f"{TICKETS}/{ok.json()['id']}", headers=bearer(customer))
    assert kept.json()["category"] == {"id": category["id"], "name": "硬件"}


async def test_deactivating_a_parent_deactivates_its_children(client, admin, customer):
    parent = await new_category(client, admin, name="硬件")
    child = await new_category(client, admin, name="打印机", parent_id=parent["id"])
    await patch(client, admin, parent["id"], is_active=False)
    read = await client.get(f"{CATEGORIES}/{child['id']}", headers=bearer(admin))
    assert read.json()["is_active"] is False
    assert (await client.get(CATEGORIES, headers=bearer(customer))).json()["items"] == []

    # An active category never sits under an inactive parent.
    response = await patch(client, admin, child["id"], is_active=True)
    assert response.status_code == 422
    assert field_error(response) == ("is_active", "parent_inactive")
    response = await client.post(CATEGORIES, json={"name": "扫描仪", "parent_id": parent["id"]}, headers=bearer(admin))
    assert response.status_code == 422
    assert field_error(response) == ("parent_id", "parent_inactive")

    # Reactivating the parent leaves the children as they are, until the admin decides.
    assert (await patch(client, admin, parent["id"], is_active=True)).json()["is_active"] is True
    assert (await client.get(f"{CATEGORIES}/{child['id']}", headers=bearer(admin))).json()["is_active"] is False
    assert (await patch(client, admin, child["id"], is_active=True)).json()["is_active"] is True


async def test_moving_an_active_category_under_an_inactive_parent_is_refused(client, admin):
    parent = await new_category(client, admin, name="硬件")
    await patch(client, admin, parent["id"], is_active=False)
    other = await new_category(client, admin, name="网络")
    response = await patch(client, admin, other["id"], parent_id=parent["id"])
    assert response.status_code == 422
    assert field_error(response) == ("parent_id", "parent_inactive")
    # Inactive itself, it may move there.
    response = await patch(client, admin, other["id"], parent_id=parent["id"], is_active=False)
    assert response.status_code == 200


async def test_walking_the_cursors_returns_every_category_once(client, admin, customer):
    created = [(await new_category(client, admin, name=f"分类{i}"))["id"] for i in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(CATEGORIES, params=params, headers=bearer(customer))).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created


async def test_a_bad_cursor_is_400(client, customer):
    response = await client.get(CATEGORIES, params={"cursor": "bm90LWpzb24"}, headers=bearer(customer))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


async def test_create_is_idempotent_with_a_key(client, admin):
    headers = {**bearer(admin), "Idempotency-Key": "cat-1"}
    first = await client.post(CATEGORIES, json={"name": "硬件"}, headers=headers)
    again = await client.post(CATEGORIES, json={"name": "硬件"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    listed = (await client.get(CATEGORIES, headers=bearer(admin))).json()
    assert len(listed["items"]) == 1
