"""Authentication without a query per request (app/services/auth.py PrincipalCache): the login
session and user are read once and trusted for a few seconds; every change to them takes effect
at once, in this process and, through Redis, in the others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

from app.core.security import AccessClaims, TokenSigner
from app.models import Role
from app.services.auth import PrincipalCache, VerifiedTokens
from tests.conftest import REDIS_URL, bearer, create_user, login, two_processes

ME = "/api/v1/users/me"
TICKETS = "/api/v1/tickets"


class Queries:
    """The SQL the app's engine runs while the block does (SQLite's BEGIN is not counted)."""

    def __init__(self, app: Any) -> None:
        self.engine = app.state.ctx.db.engine.sync_engine
        self.statements: list[str] = []

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith("BEGIN"):
            self.statements.append(statement)

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self.statements

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


async def test_an_authenticated_request_costs_no_query_once_the_session_was_checked(app, client, customer):
    with Queries(app) as first:
        assert (await client.get(ME, headers=bearer(customer))).status_code == 200
    with Queries(app) as later:
        assert (await client.get(ME, headers=bearer(customer))).status_code == 200
    assert any("auth_sessions" in q for q in first)
    assert later == []


async def test_a_ticket_is_read_in_one_statement(app, client, customer):
    created = await client.post(TICKETS, json={"title": "打印机卡纸", "body": "三楼"}, headers=bearer(customer))
    ticket_id = created.json()["id"]
    with Queries(app) as queries:
        response = await client.get(f"{TICKETS}/{ticket_id}", headers=bearer(customer))
    assert response.status_code == 200
    assert len(queries) == 1, queries


async def test_logout_stops_a_cached_access_token_at_once(client, customer):
    assert (await client.get(ME, headers=bearer(customer))).status_code == 200  # now cached
    await client.post("/api/v1/auth/logout", json={"refresh_token": customer["refresh_token"]})
    assert (await client.get(ME, headers=bearer(customer))).status_code == 401


async def test_deactivation_stops_a_cached_access_token_at_once(client, admin, customer):
    assert (await client.get(ME, headers=bearer(customer))).status_code == 200
    disabled = await client.patch(f"/api/v1/users/{customer['id']}", json={"is_active": False}, headers=bearer(admin))
    assert disabled.status_code == 200
    assert (await client.get(ME, headers=bearer(customer))).status_code == 401


async def test_a_role_change_applies_to_the_next_request(app, client, admin):
    agent_id = await create_user(app, "demoted", Role.agent)
    tokens = await login(client, "demoted")
    assert (await client.get("/api/v1/users", headers=bearer(tokens))).status_code == 403  # agents: not admins
    assert (await client.get(TICKETS, headers=bearer(tokens))).status_code == 200
    changed = await client.patch(f"/api/v1/users/{agent_id}", json={"role": "admin"}, headers=bearer(admin))
    assert changed.status_code == 200
    assert (await client.get("/api/v1/users", headers=bearer(tokens))).status_code == 200


async def test_a_profile_change_is_seen_by_the_next_request(client, customer):
    await client.patch(ME, json={"display_name": "小明"}, headers=bearer(customer))
    assert (await client.get(ME, headers=bearer(customer))).json()["display_name"] == "小明"
    created = await client.post(TICKETS, json={"title": "t", "body": "b"}, headers=bearer(customer))
    assert created.json()["requester"]["display_name"] == "小明"


async def test_a_password_change_ends_the_other_cached_sessions(client, customer):
    other = await login(client, "customer1")
    assert (await client.get(ME, headers=bearer(other))).status_code == 200
    body = {"current_password": "correct horse battery", "password": "a brand new passphrase"}
    assert (await client.patch(ME, json=body, headers=bearer(customer))).status_code == 200
    assert (await client.get(ME, headers=bearer(other))).status_code == 401


async def test_with_no_cache_every_request_reads_the_session(app, client, customer):
    app.state.ctx.auth.principals.ttl_seconds = 0
    app.state.ctx.auth.principals.forget()
    for _ in range(2):
        with Queries(app) as queries:
            assert (await client.get(ME, headers=bearer(customer))).status_code == 200
        assert any("auth_sessions" in q for q in queries)


def test_entries_expire_and_the_cache_stays_bounded():
    now = [100.0]
    cache = PrincipalCache(10, max_entries=3, clock=lambda: now[0])
    cache.put(1, 1, {"id": 1}, read_in=cache.generation)
    assert cache.get(1, 1) == {"id": 1}
    now[0] += 10
    assert cache.get(1, 1) is None
    for session_id in range(5):
        cache.put(1, session_id, {"id": 1}, read_in=cache.generation)
    assert len(cache._entries) <= 3


def test_what_was_read_before_a_clear_is_not_kept_after_it():
    """A request reads the session; a logout commits (clear); the request's read is stale."""
    cache = PrincipalCache(10)
    read_in = cache.generation
    cache.clear()
    cache.put(1, 1, {"id": 1}, read_in=read_in)
    assert cache.get(1, 1) is None


async def test_an_access_token_is_verified_once(app, client, customer, monkeypatch):
    signer = app.state.ctx.auth.signer
    verified: list[str] = []

    def counted(token: str) -> AccessClaims:
        verified.append(token)
        return TokenSigner.verify(signer, token)

    monkeypatch.setattr(signer, "verify", counted)
    for _ in range(3):
        assert (await client.get(ME, headers=bearer(customer))).status_code == 200
    assert verified == [customer["access_token"]]


async def test_an_altered_token_is_verified_and_refused_after_the_genuine_one(client, customer):
    assert (await client.get(ME, headers=bearer(customer))).status_code == 200
    token = customer["access_token"]
    head, claims, signature = token.split(".")
    altered = {"Authorization": f"Bearer {head}.{claims}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"}
    response = await client.get(ME, headers=altered)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_a_verified_token_is_trusted_until_it_expires_and_no_longer():
    now = [1_000.0]
    tokens = VerifiedTokens(max_entries=3, clock=lambda: now[0])
    claims = AccessClaims(user_id=1, session_id=2, role="customer", expires_at=datetime.fromtimestamp(1_010, UTC))
    tokens.put("a.b.c", claims)
    assert tokens.get("a.b.c") == claims
    assert tokens.get("a.b.d") is None
    now[0] = 1_010.0
    assert tokens.get("a.b.c") is None
    for n in range(5):
        tokens.put(f"a.b.{n}", claims)
    assert len(tokens._entries) <= 3


@pytest.mark.skipif(not REDIS_URL, reason="HELPDESK_TEST_REDIS_URL is not set (CI sets it)")
async def test_a_logout_in_one_process_reaches_the_others_cache_through_redis(app, settings, customer):
    """Two apps on one database and one Redis: what a second API process would be."""
    settings.redis_url = REDIS_URL
    settings.auth.principal_cache_seconds = 300  # longer than the wait: only Redis can clear it
    async with two_processes(settings) as (_, one, second, two):
        assert (await two.get(ME, headers=bearer(customer))).status_code == 200  # cached in `second`
        await _until_listening(second)
        await one.post("/api/v1/auth/logout", json={"refresh_token": customer["refresh_token"]})
        async with asyncio.timeout(10):
            # The message crosses Redis: poll what a client of the other process would see.
            while (await two.get(ME, headers=bearer(customer))).status_code != 401:  # noqa: ASYNC110
                await asyncio.sleep(0.02)


async def _until_listening(application: Any) -> None:
    """The Redis subscription is made in the background at start-up."""
    async with asyncio.timeout(10):
        await application.state.auth_signal.subscribed.wait()
