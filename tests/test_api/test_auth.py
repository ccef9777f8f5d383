"""Registration, login, token rotation, logout, and every way a token can be wrong."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import select

from app.core.security import JWT_AUDIENCE, JWT_ISSUER, TokenSigner
from app.models import AuthSession, Role
from tests.conftest import PASSWORD, TEST_SECRET, bearer, create_user, login, make_client

ME = "/api/v1/users/me"


async def test_newcomer_registers_logs_in_and_reads_their_profile(client):
    response = await client.post(
        "/api/v1/auth/register",
        json={"username": "Xiao_Ming", "password": "s3cret-pass", "display_name": "小明", "email": "xm@example.com"},
    )
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["username"] == "xiao_ming"  # usernames are case-insensitive
    assert user["role"] == "customer"
    assert user["qq_bound"] is False
    assert user["created_at"].endswith("Z")
    assert "password" not in json.dumps(user)

    tokens = await login(client, "XIAO_MING", "s3cret-pass")
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    me = await client.get(ME, headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["display_name"] == "小明"


async def test_register_cannot_choose_a_role(client):
    response = await client.post(
        "/api/v1/auth/register", json={"username": "sneaky", "password": "password123", "role": "admin"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0] == {"field": "role", "code": "unknown_field", "message": "不支持的字段"}


async def test_register_taken_username_is_conflict(client):
    body = {"username": "dup", "password": "password123"}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    response = await client.post("/api/v1/auth/register", json={**body, "username": "DUP"})
    assert response.status_code == 409
    assert response.json()["code"] == "username_taken"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"username": "ab", "password": "password123"}, "username", "too_short"),
        ({"username": "has space", "password": "password123"}, "username", "invalid_username"),
        ({"username": "okname", "password": "short"}, "password", "too_short"),
        ({"username": "okname", "password": "password123", "email": "nope"}, "email", "invalid_email"),
        ({"username": "okname", "password": "password123", "display_name": " \u0000 "}, "display_name", "blank"),
        ({"password": "password123"}, "username", "required"),
    ],
)
async def test_register_rejects_bad_fields_with_field_errors(client, body, field, code):
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert {"field": field, "code": code} in [{"field": e["field"], "code": e["code"]} for e in problem["errors"]]


async def test_registration_can_be_closed(app, settings):
    settings.auth.registration_open = False
    async with make_client(app) as client:
        response = await client.post("/api/v1/auth/register", json={"username": "late", "password": "password123"})
    assert response.status_code == 403
    assert response.json()["code"] == "registration_closed"


async def test_chinese_username_is_allowed(client):
    response = await client.post("/api/v1/auth/register", json={"username": "张三丰", "password": "password123"})
    assert response.status_code == 201
    assert (await login(client, "张三丰", "password123"))["access_token"]


async def test_wrong_password_and_unknown_user_look_the_same(app, client):
    await create_user(app, "alice")
    wrong = await client.post("/api/v1/auth/login", json={"username": "alice", "password": "not it at all"})
    unknown = await client.post("/api/v1/auth/login", json={"username": "nobody", "password": "not it at all"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_disabled_user_cannot_log_in(app, client, admin):
    user_id = await create_user(app, "leaver")
    response = await client.patch(f"/api/v1/users/{user_id}", json={"is_active": False}, headers=bearer(admin))
    assert response.status_code == 200
    response = await client.post("/api/v1/auth/login", json={"username": "leaver", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json()["code"] == "user_disabled"


async def test_oauth2_form_login_for_swagger(app, client):
    await create_user(app, "swagger")
    response = await client.post("/api/v1/auth/token", data={"username": "swagger", "password": PASSWORD})
    assert response.status_code == 200
    assert (await client.get(ME, headers=bearer(response.json()))).status_code == 200


# --- access tokens -------------------------------------------------------------------------


def _claims(user_id: int, session_id: int, **overrides):
    now = int(time.time())
    claims = {
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "sub": str(user_id),
        "sid": session_id,
        "role": "admin",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


def _signing_key() -> bytes:
    return TokenSigner(TEST_SECRET, 900)._key


async def _session_id(app, user_id: int) -> int:
    async with app.state.ctx.db.transaction(write=False) as session:
        return (await session.execute(select(AuthSession.id).where(AuthSession.user_id == user_id))).scalars().first()


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda c: jwt.encode(c, "some-other-key-of-enough-length-0123456789", "HS256"), id="wrong-key"),
        pytest.param(lambda c: jwt.encode(c, TEST_SECRET, "HS256"), id="raw-secret-not-derived-key"),
        pytest.param(lambda c: jwt.encode({**c, "aud": "someone-else"}, _signing_key(), "HS256"), id="wrong-audience"),
        pytest.param(lambda c: jwt.encode({**c, "iss": "evil"}, _signing_key(), "HS256"), id="wrong-issuer"),
        pytest.param(
            lambda c: jwt.encode({**c, "iat": c["iat"] - 7200, "exp": c["iat"] - 3600}, _signing_key(), "HS256"),
            id="expired",
        ),
        pytest.param(
            lambda c: jwt.encode({k: v for k, v in c.items() if k != "exp"}, _signing_key(), "HS256"), id="no-expiry"
        ),
        pytest.param(
            lambda c: jwt.encode({k: v for k, v in c.items() if k != "sid"}, _signing_key(), "HS256"), id="no-session"
        ),
        pytest.param(lambda c: _alg_none(c), id="alg-none"),
        pytest.param(lambda c: _tampered(jwt.encode(c, _signing_key(), "HS256")), id="tampered-payload"),
        pytest.param(lambda c: "not.a.jwt", id="garbage"),
    ],
)
async def test_forged_or_broken_access_tokens_are_refused(app, client, customer, forge):
    session_id = await _session_id(app, customer["id"])
    token = forge(_claims(customer["id"], session_id))
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert response.headers["www-authenticate"] == "Bearer"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none(claims: dict) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "999999"
    return f"{header}.{_b64(claims)}.{signature}"


async def test_correctly_signed_token_is_accepted(app, client, customer):
    """The control for the forgery tests: the same construction with the right key works."""
    session_id = await _session_id(app, customer["id"])
    token = jwt.encode(_claims(customer["id"], session_id), _signing_key(), "HS256")
    assert (await client.get(ME, headers={"Authorization": f"Bearer {token}"})).status_code == 200


async def test_role_claim_is_not_trusted(app, client, customer):
    """A token's role claim says admin, but the account is a customer: the database decides."""
    session_id = await _session_id(app, customer["id"])
    token = jwt.encode(_claims(customer["id"], session_id, role="admin"), _signing_key(), "HS256")
    response = await client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


async def test_missing_token_is_401(client):
    response = await client.get(ME)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_access_token_of_a_revoked_session_stops_working(client, customer):
    assert (
        await client.post("/api/v1/auth/logout", json={"refresh_token": customer["refresh_token"]})
    ).status_code == 204
    response = await client.get(ME, headers=bearer(customer))
    assert response.status_code == 401


# --- refresh rotation ----------------------------------------------------------------------


async def _refresh(client, token: str):
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_the_token(client, customer):
    response = await _refresh(client, customer["refresh_token"])
    assert response.status_code == 200
    pair = response.json()
    assert pair["refresh_token"] != customer["refresh_token"]
    assert (await client.get(ME, headers=bearer(pair))).status_code == 200
    second = await _refresh(client, pair["refresh_token"])
    assert second.status_code == 200


async def test_parallel_refresh_within_grace_gets_the_same_successor(client, customer):
    first = await _refresh(client, customer["refresh_token"])
    again = await _refresh(client, customer["refresh_token"])
    assert first.status_code == again.status_code == 200
    assert first.json()["refresh_token"] == again.json()["refresh_token"]
    # And the successor is a real, working refresh token.
    assert (await _refresh(client, again.json()["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_all_get_the_same_successor(client, customer):
    import asyncio

    results = await asyncio.gather(*[_refresh(client, customer["refresh_token"]) for _ in range(5)])
    assert [r.status_code for r in results] == [200] * 5
    assert len({r.json()["refresh_token"] for r in results}) == 1


async def test_reuse_after_grace_revokes_the_whole_family(app, client, customer):
    app.state.ctx.auth.settings.refresh_reuse_grace_seconds = 0
    successor = (await _refresh(client, customer["refresh_token"])).json()
    await _spend_time()
    stolen = await _refresh(client, customer["refresh_token"])
    assert stolen.status_code == 401
    assert stolen.json()["code"] == "refresh_token_reused"
    # Every token of that login is dead now: the successor and its access token.
    assert (await _refresh(client, successor["refresh_token"])).status_code == 401
    assert (await client.get(ME, headers=bearer(successor))).status_code == 401
    assert (await client.get(ME, headers=bearer(customer))).status_code == 401


async def test_reuse_revokes_only_that_family(app, client, customer):
    app.state.ctx.auth.settings.refresh_reuse_grace_seconds = 0
    other_device = await login(client, "customer1")
    await _refresh(client, customer["refresh_token"])
    await _spend_time()
    assert (await _refresh(client, customer["refresh_token"])).status_code == 401
    assert (await client.get(ME, headers=bearer(other_device))).status_code == 200


async def _spend_time() -> None:
    import asyncio

    await asyncio.sleep(0.01)  # past a zero-second grace; refresh compares timestamps


async def test_unknown_and_expired_refresh_tokens_are_refused(app, client, customer):
    assert (await _refresh(client, "made-up-token")).json()["code"] == "invalid_refresh_token"
    app.state.ctx.auth.settings.refresh_token_ttl_seconds = 60
    pair = (await _refresh(client, customer["refresh_token"])).json()
    from sqlalchemy import update

    from app.core.security import token_digest
    from app.models import RefreshToken

    async with app.state.ctx.db.transaction() as session:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == token_digest(pair["refresh_token"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = await _refresh(client, pair["refresh_token"])
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_refresh_token"


async def test_logout_ends_the_session(client, customer):
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": customer["refresh_token"]})
    assert response.status_code == 204
    assert (await _refresh(client, customer["refresh_token"])).status_code == 401


async def test_logout_with_unknown_token_is_quietly_accepted(client):
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": "whatever"})
    assert response.status_code == 204


async def test_disabled_user_cannot_refresh(app, client, admin, customer):
    await client.patch(f"/api/v1/users/{customer['id']}", json={"is_active": False}, headers=bearer(admin))
    assert (await _refresh(client, customer["refresh_token"])).status_code == 401
    assert (await client.get(ME, headers=bearer(customer))).status_code == 401


# --- throttling ----------------------------------------------------------------------------


async def _bad_login(client, username: str = "victim", headers: dict | None = None):
    return await client.post(
        "/api/v1/auth/login", json={"username": username, "password": "guess-guess"}, headers=headers or {}
    )


async def test_repeated_failures_for_one_username_are_throttled(app, client):
    await create_user(app, "victim")
    limit = app.state.ctx.auth.settings.login_failures_per_username
    for _ in range(limit):
        assert (await _bad_login(client)).status_code == 401
    blocked = await _bad_login(client)
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "too_many_requests"
    assert 1 <= int(blocked.headers["retry-after"]) <= app.state.ctx.auth.settings.login_failure_window_seconds
    # Even the right password waits: the point is to stop guessing.
    right = await client.post("/api/v1/auth/login", json={"username": "victim", "password": PASSWORD})
    assert right.status_code == 429


async def test_parallel_guesses_for_one_username_stay_under_the_limit(app, client):
    """Guesses in flight at once: each is counted before its password is checked, so no more
    than the limit get a verdict (checked first and counted after, all of them would)."""
    await create_user(app, "victim")
    limit = app.state.ctx.auth.settings.login_failures_per_username
    guesses = [_bad_login(client) for _ in range(limit + 3)]
    statuses = sorted(response.status_code for response in await asyncio.gather(*guesses))
    assert statuses == [401] * limit + [429] * 3


async def test_successful_login_resets_the_failure_count(app, client):
    await create_user(app, "forgetful")
    limit = app.state.ctx.auth.settings.login_failures_per_username
    for _ in range(limit - 1):
        await _bad_login(client, "forgetful")
    await login(client, "forgetful")
    for _ in range(limit - 1):
        assert (await _bad_login(client, "forgetful")).status_code == 401


async def test_attempts_per_ip_are_throttled_whatever_the_username(app, client):
    app.state.ctx.auth.settings.login_attempts_per_ip = 3
    statuses = [(await _bad_login(client, f"user{i}")).status_code for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(app, client):
    app.state.ctx.auth.settings.login_attempts_per_ip = 3
    statuses = [
        (await _bad_login(client, f"user{i}", {"X-Forwarded-For": f"198.51.100.{i}"})).status_code for i in range(5)
    ]
    assert statuses[-1] == 429  # a fresh XFF per request did not buy a fresh budget


async def test_forwarded_for_from_trusted_proxy_identifies_the_client(app, settings):
    from app.core.net import TrustedProxies

    app.state.ctx.proxies = TrustedProxies(["10.0.0.0/8"])
    app.state.ctx.auth.settings.login_attempts_per_ip = 2
    async with make_client(app, client_ip="10.1.2.3") as proxied:
        a = [(await _bad_login(proxied, "u", {"X-Forwarded-For": "198.51.100.7"})).status_code for _ in range(3)]
        b = await _bad_login(proxied, "u2", {"X-Forwarded-For": "198.51.100.8"})
    assert a == [401, 401, 429]
    assert b.status_code == 401  # another client behind the same proxy has its own budget


async def test_login_records_client_and_device(app, client):
    user_id = await create_user(app, "traveller", Role.customer)
    await client.post(
        "/api/v1/auth/login",
        json={"username": "traveller", "password": PASSWORD},
        headers={"User-Agent": "HelpdeskAndroid/1.0"},
    )
    async with app.state.ctx.db.transaction(write=False) as session:
        row = (await session.execute(select(AuthSession).where(AuthSession.user_id == user_id))).scalar_one()
    assert row.user_agent == "HelpdeskAndroid/1.0"
    assert row.client_ip == "203.0.113.9"
