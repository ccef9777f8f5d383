"""The caller's profile, password change, and admin management of accounts."""

from __future__ import annotations

from app.models import Role
from tests.conftest import PASSWORD, bearer, create_user, login

ME = "/api/v1/users/me"


async def test_update_profile_and_notification_preferences(client, customer):
    response = await client.patch(
        ME,
        json={"display_name": "  小红  ", "email": "XH@Example.com", "notification_preferences": {"qq": False}},
        headers=bearer(customer),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["display_name"] == "小红"
    assert body["email"] == "XH@example.com"
    assert body["notification_preferences"] == {"qq": False, "email": True}
    assert (await client.get(ME, headers=bearer(customer))).json()["display_name"] == "小红"


async def test_email_can_be_cleared(client, customer):
    await client.patch(ME, json={"email": "a@example.com"}, headers=bearer(customer))
    response = await client.patch(ME, json={"email": None}, headers=bearer(customer))
    assert response.json()["email"] is None


async def test_customer_cannot_change_own_role(client, customer):
    response = await client.patch(ME, json={"role": "admin"}, headers=bearer(customer))
    assert response.status_code == 422
    assert (await client.get(ME, headers=bearer(customer))).json()["role"] == "customer"


async def test_password_change_needs_the_current_password(client, customer):
    response = await client.patch(ME, json={"password": "brand-new-pass"}, headers=bearer(customer))
    assert response.status_code == 422
    assert response.json()["code"] == "wrong_password"
    assert response.json()["errors"][0]["field"] == "current_password"
    response = await client.patch(
        ME, json={"password": "brand-new-pass", "current_password": "wrong guess"}, headers=bearer(customer)
    )
    assert response.status_code == 422
    await login(client, "customer1", PASSWORD)  # unchanged


async def test_password_change_revokes_every_other_session(client, customer):
    phone = await login(client, "customer1")
    response = await client.patch(
        ME, json={"password": "brand-new-pass", "current_password": PASSWORD}, headers=bearer(customer)
    )
    assert response.status_code == 200
    # This session lives on; the phone's is gone, access and refresh alike.
    assert (await client.get(ME, headers=bearer(customer))).status_code == 200
    assert (await client.get(ME, headers=bearer(phone))).status_code == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert refresh.status_code == 401
    await login(client, "customer1", "brand-new-pass")
    old = await client.post("/api/v1/auth/login", json={"username": "customer1", "password": PASSWORD})
    assert old.status_code == 401


async def test_method_override_lets_the_mini_program_patch(client, customer):
    response = await client.post(
        ME, json={"display_name": "小程序"}, headers={**bearer(customer), "X-HTTP-Method-Override": "PATCH"}
    )
    assert response.status_code == 200
    assert response.json()["display_name"] == "小程序"


async def test_method_override_only_turns_post_into_patch(client, customer):
    response = await client.post(ME, json={}, headers={**bearer(customer), "X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 405
    response = await client.get(ME, headers={**bearer(customer), "X-HTTP-Method-Override": "PATCH"})
    assert response.status_code == 200  # a GET stays a GET


# --- admin management ----------------------------------------------------------------------


async def test_admin_creates_agent_and_lists_users(client, admin):
    response = await client.post(
        "/api/v1/users",
        json={"username": "agent7", "password": "password123", "display_name": "客服七号", "role": "agent"},
        headers=bearer(admin),
    )
    assert response.status_code == 201
    assert response.json()["role"] == "agent"
    listing = await client.get("/api/v1/users", headers=bearer(admin))
    assert listing.status_code == 200
    items = listing.json()["items"]
    assert {u["username"] for u in items} == {"admin1", "agent7"}
    assert set(items[0]) == {"id", "username", "display_name", "email", "role", "is_active", "qq_bound", "created_at"}


async def test_user_list_pages_with_a_cursor(app, client, admin):
    for i in range(5):
        await create_user(app, f"member{i}")
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/users", params=params, headers=bearer(admin))).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6
    assert seen == sorted(set(seen))


async def test_bad_cursor_is_400(client, admin):
    response = await client.get("/api/v1/users", params={"cursor": "%%%"}, headers=bearer(admin))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


async def test_agent_lists_agents_with_id_and_name_only(app, client, agent):
    await create_user(app, "agent2", Role.agent)
    await create_user(app, "somecustomer")
    response = await client.get("/api/v1/users", params={"role": "agent"}, headers=bearer(agent))
    assert response.status_code == 200
    items = response.json()["items"]
    assert [set(u) for u in items] == [{"id", "display_name"}] * 2
    assert (await client.get("/api/v1/users", headers=bearer(agent))).status_code == 403


async def test_customer_cannot_manage_users(client, customer):
    assert (await client.get("/api/v1/users", params={"role": "agent"}, headers=bearer(customer))).status_code == 403
    response = await client.post(
        "/api/v1/users", json={"username": "x1x", "password": "password123"}, headers=bearer(customer)
    )
    assert response.status_code == 403
    assert (await client.get(f"/api/v1/users/{customer['id']}", headers=bearer(customer))).status_code == 403
    response = await client.patch(f"/api/v1/users/{customer['id']}", json={"role": "admin"}, headers=bearer(customer))
    assert response.status_code == 403


async def test_agent_cannot_manage_users(client, agent, customer):
    response = await client.patch(f"/api/v1/users/{customer['id']}", json={"is_active": False}, headers=bearer(agent))
    assert response.status_code == 403


async def test_anonymous_is_401_everywhere(client):
    for method, path in [
        ("GET", ME),
        ("PATCH", ME),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/1"),
        ("PATCH", "/api/v1/users/1"),
    ]:
        response = await client.request(method, path, json={} if method != "GET" else None)
        assert response.status_code == 401, (method, path)


async def test_unknown_user_is_404(client, admin):
    response = await client.get("/api/v1/users/999999", headers=bearer(admin))
    assert response.status_code == 404
    assert response.json()["code"] == "user_not_found"


async def test_admin_password_reset_ends_the_users_sessions(client, admin, customer):
    response = await client.patch(
        f"/api/v1/users/{customer['id']}", json={"password": "reset-by-admin"}, headers=bearer(admin)
    )
    assert response.status_code == 200
    assert (await client.get(ME, headers=bearer(customer))).status_code == 401
    await login(client, "customer1", "reset-by-admin")


async def test_disabling_a_user_revokes_their_sessions(client, admin, customer):
    response = await client.patch(f"/api/v1/users/{customer['id']}", json={"is_active": False}, headers=bearer(admin))
    assert response.json()["is_active"] is False
    assert (await client.get(ME, headers=bearer(customer))).status_code == 401
    # Re-enabling does not resurrect old sessions.
    await client.patch(f"/api/v1/users/{customer['id']}", json={"is_active": True}, headers=bearer(admin))
    assert (await client.get(ME, headers=bearer(customer))).status_code == 401
    await login(client, "customer1")


async def test_last_admin_cannot_be_disabled_or_demoted(app, client, admin):
    for change in ({"is_active": False}, {"role": "agent"}):
        response = await client.patch(f"/api/v1/users/{admin['id']}", json=change, headers=bearer(admin))
        assert response.status_code == 409
        assert response.json()["code"] == "last_admin"
    second = await create_user(app, "admin2", Role.admin)
    response = await client.patch(f"/api/v1/users/{second}", json={"role": "agent"}, headers=bearer(admin))
    assert response.status_code == 200


async def test_bootstrap_admin_is_created_once_at_start_up(app, settings):
    from pydantic import SecretStr

    from app.main import create_app
    from tests.conftest import make_client

    configured = settings.model_copy(
        update={"admin_username": "Root", "admin_password": SecretStr("bootstrap-password")}
    )
    for _ in range(2):  # a second start finds the admin and changes nothing
        started = create_app(configured)
        async with started.router.lifespan_context(started), make_client(started) as client:
            tokens = await login(client, "root", "bootstrap-password")
            assert (await client.get(ME, headers=bearer(tokens))).json()["role"] == "admin"
