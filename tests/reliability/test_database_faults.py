"""Fault: the database connection is cut during traffic (PostgreSQL only).

A TCP proxy inside the test (tests/reliability/_tcp_proxy.py) sits between the app and
PostgreSQL. Clients keep reading and creating tickets (with `Idempotency-Key`s) through the ASGI
app while the proxy, again and again, resets every connection and refuses new ones for a
while, then accepts again. What must hold:

- while the database is unreachable, `/api/v1/ready` answers 503 `not_ready` and every other
  request a clean problem+json 503 `database_unavailable`: never a 500, never a stack trace;
- once it is back, the same app object (no restart, same engine) serves every endpoint again
  within a bounded time: pooled connections killed by the cut are replaced, not handed out;
- nothing is lost or half-written: every create answered 201 is there, and a create answered
  with an error either left nothing or left the whole ticket (a commit whose answer was lost in
  the cut) — the client's retry with the same key then gets exactly one ticket either way;
- the app's own job worker, cut off in the middle of jobs too, carries on by itself: every
  ticket's follow-up job ends done (a job whose outcome could not be written is taken over when
  its lease lapses, 3 s here instead of 300 s).

SQLite has no connection to cut: the scenario is skipped there.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings, WorkerSettings
from app.db.session import is_sqlite
from app.models import Role
from tests.conftest import bearer, create_user, login
from tests.reliability._tcp_proxy import TcpProxy, running_proxy
from tests.reliability.conftest import scaled

TICKETS = "/api/v1/tickets"
TITLE = "断网测试"  # every ticket of the traffic, and only those, starts with it
READY = "/api/v1/ready"
PROBLEM_JSON = "application/problem+json"
OUTAGES = scaled(3, 20)
CLIENTS = 4
# Calls that must be seen entirely inside each phase before the test moves on.
CALLS_PER_PHASE = scaled(12, 60)
PHASE_TIMEOUT = 20.0  # seconds: a bound on each wait, so a service that never recovers fails
LEASE_SECONDS = 3.0


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    if is_sqlite(database_url):
        pytest.skip("SQLite is a file, not a connection: there is nothing to cut (PostgreSQL only)")
    url = make_url(database_url)
    async with running_proxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture
def settings(settings: Settings, proxy: TcpProxy) -> Settings:
    """The app reaches the same database through the proxy."""
    url = make_url(settings.database_url or "").set(host="127.0.0.1", port=proxy.port)
    worker = WorkerSettings(enabled=True, poll_seconds=0.1, lease_seconds=LEASE_SECONDS)
    return settings.model_copy(update={"database_url": url.render_as_string(hide_password=False), "worker": worker})


@dataclass(frozen=True)
class Call:
    kind: str
    started: str  # the phase when the request was sent
    ended: str  # the phase when its answer came
    status: int
    content_type: str
    code: str | None
    key: str | None = None
    body: dict[str, Any] | None = None
    answer: dict[str, Any] | None = None

    @property
    def phase(self) -> str:
        """up / down when the whole call happened in that phase, else mixed."""
        return self.started if self.started == self.ended else "mixed"


@dataclass
class Traffic:
    """CLIENTS loops of create / list / detail, recording every answer with its phase."""

    client: httpx.AsyncClient
    tokens: dict[str, Any]
    phase: str = "up"
    calls: list[Call] = field(default_factory=list)
    known_ids: list[int] = field(default_factory=list)
    stopping: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set at every answer
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    async def run(self) -> None:
        await asyncio.gather(*(self._loop(random.Random(n)) for n in range(CLIENTS)))

    async def _loop(self, rng: random.Random) -> None:
        while not self.stopping:
            await self.create()
            await self.send("list", "GET", TICKETS, params={"limit": 20})
            if self.known_ids:
                await self.send("detail", "GET", f"{TICKETS}/{rng.choice(self.known_ids)}")

    async def create(self, key: str | None = None, body: dict[str, Any] | None = None) -> Call:
        key = key or uuid.uuid4().hex
        body = body or {"title": f"{TITLE} {next(self._serial)} {key[:8]}", "body": "数据库断开期间提交的工单"}
        call = await self.send("create", "POST", TICKETS, json=body, key=key)
        if call.status == 201 and call.answer is not None:
            self.known_ids.append(int(call.answer["id"]))
        return call

    async def send(self, kind: str, method: str, url: str, *, key: str | None = None, **kwargs: Any) -> Call:
        headers = bearer(self.tokens) | ({"Idempotency-Key": key} if key else {})
        started = self.phase
        response = await self.client.request(method, url, headers=headers, **kwargs)
        content_type = response.headers.get("content-type", "")
        answer = response.json() if "json" in content_type else None
        code = answer.get("code") if isinstance(answer, dict) and response.status_code >= 400 else None
        call = Call(
            kind,
            started,
            self.phase,
            response.status_code,
            content_type,
            code,
            key,
            kwargs.get("json"),
            answer if isinstance(answer, dict) else None,
        )
        self.calls.append(call)
        self.answered.set()
        return call

    def seen(self, phase: str) -> int:
        return sum(1 for call in self.calls if call.phase == phase)


async def wait_for_calls(traffic: Traffic, phase: str, count: int) -> None:
    """Until `count` more calls have happened wholly in `phase` (the traffic is running)."""
    target = traffic.seen(phase) + count
    while traffic.seen(phase) < target:
        traffic.answered.clear()
        await traffic.answered.wait()


async def ready_status(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get(READY)


async def wait_until_ready(client: httpx.AsyncClient) -> None:
    while (await ready_status(client)).status_code != 200:  # noqa: ASYNC110  # polled, as a load balancer does
        await asyncio.sleep(0.05)


async def one_outage(traffic: Traffic, proxy: TcpProxy, client: httpx.AsyncClient) -> None:
    async with asyncio.timeout(PHASE_TIMEOUT):
        await wait_for_calls(traffic, "up", CALLS_PER_PHASE)
    traffic.phase = "down"
    proxy.go_down()  # in the middle of the traffic: requests in flight lose their connection
    async with asyncio.timeout(PHASE_TIMEOUT):
        await wait_for_calls(traffic, "down", CALLS_PER_PHASE)
        ready = await ready_status(client)
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"] == PROBLEM_JSON
        assert ready.json()["code"] == "not_ready"
    traffic.phase = "recovering"
    proxy.come_up()
    async with asyncio.timeout(PHASE_TIMEOUT):
        await wait_until_ready(client)
    traffic.phase = "up"


async def ticket_rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Per ticket of the traffic (by title): its id and how many of each row its creation writes."""
    query = text(
        """
        SELECT t.id, t.title,
          (SELECT count(*) FROM messages m WHERE m.ticket_id = t.id) AS messages,
          (SELECT count(*) FROM ticket_events e WHERE e.ticket_id = t.id AND e.type = 'ticket.created') AS created,
          (SELECT count(*) FROM jobs j JOIN ticket_events e ON j.idempotency_key = 'event:' || e.id
             WHERE e.ticket_id = t.id AND e.type = 'ticket.created') AS dispatch
        FROM tickets t WHERE t.title LIKE :title
        """
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query, {"title": f"{TITLE}%"})).mappings().all()
    return {row["title"]: dict(row) for row in rows}


async def jobs_by_status(engine: AsyncEngine) -> Counter[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT kind, status FROM jobs"))).all()
    return Counter((kind, status) for kind, status in rows)


async def wait_for_follow_up_jobs(engine: AsyncEngine) -> None:
    """Until every job is finished (the app's worker runs them); bounded by the caller."""
    while any(status in ("pending", "running") for _, status in await jobs_by_status(engine)):  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # a table has no signal to await: polled


async def idempotency_keys(engine: AsyncEngine) -> dict[str, int]:
    """Per Idempotency-Key: the ticket id its stored answer names."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT key, response_body FROM idempotency_records"))).all()
    return {key: int(body["id"]) for key, body in rows}


async def test_the_service_rides_out_database_outages_without_a_restart(app, client, proxy, admin_engine):
    engine_before = app.state.ctx.db.engine
    await create_user(app, "customer1")
    await create_user(app, "agent1", Role.agent)
    tokens = await login(client, "customer1")
    agent = await login(client, "agent1")
    traffic = Traffic(client, tokens)

    running = asyncio.create_task(traffic.run())
    try:
        for _ in range(OUTAGES):
            await one_outage(traffic, proxy, client)
        async with asyncio.timeout(PHASE_TIMEOUT):
            await wait_for_calls(traffic, "up", CALLS_PER_PHASE)
    finally:
        traffic.stopping = True
        async with asyncio.timeout(PHASE_TIMEOUT):
            await running

    # The outages were real: connections were reset and refused, while the app held some.
    assert proxy.cut_connections > 0
    assert proxy.refused > 0
    by_phase = Counter((call.phase, call.status, call.code) for call in traffic.calls)

    # Never a 500; every failure a problem+json 503 that names the cause.
    failures = [call for call in traffic.calls if call.status >= 300]
    assert all(call.status == 503 for call in failures), by_phase
    assert all(call.content_type == PROBLEM_JSON for call in failures), by_phase
    assert {call.code for call in failures} == {"database_unavailable"}, by_phase
    # Wholly inside an outage: nothing succeeds. Wholly after recovery: everything does.
    assert all(call.status == 503 for call in traffic.calls if call.phase == "down"), by_phase
    assert all(call.status < 300 for call in traffic.calls if call.phase == "up"), by_phase
    assert {call.kind for call in traffic.calls if call.phase == "down"} >= {"create", "list", "detail"}

    # No restart: the same app and engine answer every kind of request again.
    assert app.state.ctx.db.engine is engine_before
    await every_endpoint_works(client, tokens, agent)

    # Nothing lost, nothing half-written.
    creates = [call for call in traffic.calls if call.kind == "create"]
    answered = {call.key: call for call in creates if call.status == 201}
    refused = [call for call in creates if call.status != 201]
    assert refused, "no create was refused: the outages missed the traffic"
    rows_before_retry = await ticket_rows(admin_engine)
    for call in answered.values():
        assert call.body is not None
        assert call.answer is not None
        assert rows_before_retry[call.body["title"]]["id"] == call.answer["id"]
    for title, row in rows_before_retry.items():
        assert (row["messages"], row["created"], row["dispatch"]) == (1, 1, 1), (title, row)

    # The clients retry what was refused, with the same key: one ticket each, no more.
    for call in refused:
        assert call.key is not None
        assert call.body is not None
        retried = await traffic.create(call.key, call.body)
        assert retried.status == 201, retried.answer
    rows = await ticket_rows(admin_engine)
    keys = await idempotency_keys(admin_engine)
    attempted = {call.key for call in creates}
    assert set(keys) == attempted
    assert len(rows) == len(attempted)
    for title, row in rows.items():
        assert (row["messages"], row["created"], row["dispatch"]) == (1, 1, 1), (title, row)
    assert sorted(keys.values()) == sorted(row["id"] for row in rows.values())

    # The app's worker finished every job, those the cuts interrupted included.
    async with asyncio.timeout(PHASE_TIMEOUT + LEASE_SECONDS):
        await wait_for_follow_up_jobs(admin_engine)
    jobs = await jobs_by_status(admin_engine)
    assert {status for _, status in jobs} == {"done"}, jobs


async def every_endpoint_works(client: httpx.AsyncClient, customer: dict[str, Any], agent: dict[str, Any]) -> None:
    """A round of what clients do, each answered at once (no warm-up, no retry)."""
    ready = await client.get(READY)
    assert ready.status_code == 200, ready.text
    created = await client.post(TICKETS, json={"title": "恢复后", "body": "数据库恢复了吗"}, headers=bearer(customer))
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]
    for url in (TICKETS, f"{TICKETS}/{ticket_id}", f"{TICKETS}/{ticket_id}/events", f"{TICKETS}/{ticket_id}/messages"):
        response = await client.get(url, headers=bearer(customer))
        assert response.status_code == 200, (url, response.text)
    reply = await client.post(f"{TICKETS}/{ticket_id}/messages", json={"body": "已恢复"}, headers=bearer(agent))
    assert reply.status_code == 201, reply.text
    updated = await client.patch(f"{TICKETS}/{ticket_id}", json={"priority": "high"}, headers=bearer(agent))
    assert updated.status_code == 200, updated.text
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": customer["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text


async def test_a_cut_while_the_pool_is_idle_is_invisible_to_clients(app, client, proxy):
    """Connections reset while they wait in the pool (a database restart at night, a NAT that
    forgot them) are replaced when next checked out (the pool tries each one first:
    app/db/session.py): no request fails."""
    await create_user(app, "customer1")
    tokens = await login(client, "customer1")
    traffic = Traffic(client, tokens)
    # Fill the pool with several connections, all idle afterwards.
    await asyncio.gather(*(traffic.create() for _ in range(CLIENTS * 2)))
    assert proxy.open_connections > 1

    for _ in range(OUTAGES):
        assert proxy.cut() > 0  # the database is back at once: only the pooled connections die
        calls = await asyncio.gather(
            *(traffic.create() for _ in range(CLIENTS)),
            *(traffic.send("list", "GET", TICKETS) for _ in range(CLIENTS)),
        )
        assert [call.status for call in calls] == [201] * CLIENTS + [200] * CLIENTS, [c.answer for c in calls]
    assert (await client.get(READY)).status_code == 200
