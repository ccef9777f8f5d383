"""Realtime across processes: Redis fans frames out; a broken subscription closes streams so
clients resume from the timeline instead of missing events."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest
from redis.asyncio import ConnectionPool, Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.main import create_app
from app.models.user import Role, User
from app.realtime.bus import EventBus, Frame
from app.realtime.redis_bridge import RedisBridge
from tests.conftest import PASSWORD, PG_URL, REDIS_URL, TEST_SECRET, bearer, create_user, empty_tables
from tests.fakes.server import serving

ROOT = str(Path(__file__).resolve().parents[2])
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="HELPDESK_TEST_REDIS_URL is not set (CI sets it)")
needs_pg_and_redis = pytest.mark.skipif(
    PG_URL is None or REDIS_URL is None, reason="two API processes need PostgreSQL and Redis (CI sets both)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_api(database_url: str, data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    await asyncio.to_thread(data_dir.mkdir, parents=True)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "HELPDESK_DATABASE_URL": database_url,
        "HELPDESK_REDIS_URL": REDIS_URL or "",
        "HELPDESK_SECRET_KEY": TEST_SECRET,
        "HELPDESK_DATA_DIR": str(data_dir),
        "HELPDESK_WORKER__ENABLED": "false",
        "HELPDESK_AUTH__ARGON2_TIME_COST": "1",
        "HELPDESK_AUTH__ARGON2_MEMORY_KIB": "64",
        "HELPDESK_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        f"{ROOT}/main.py",
        "serve",
        "--port",
        str(port),
        env=env,
        cwd=str(data_dir),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as http, asyncio.timeout(30):
        while True:
            try:
                if (await http.get("/api/v1/health")).status_code == 200:
                    return process, base
            except httpx.TransportError:
                await asyncio.sleep(0.1)


@needs_pg_and_redis
async def test_websocket_client_on_one_process_sees_a_ticket_created_through_another(app, database_url, tmp_path):
    if app.state.ctx.db.dialect != "postgresql":
        pytest.skip("several API processes share PostgreSQL")
    await create_user(app, "walker")
    processes = []
    try:
        (proc_a, base_a), (proc_b, base_b) = [await start_api(database_url, tmp_path / name) for name in ("a", "b")]
        processes = [proc_a, proc_b]
        async with httpx.AsyncClient(base_url=base_b) as via_b:
            tokens = (await via_b.post("/api/v1/auth/login", json={"username": "walker", "password": PASSWORD})).json()
            ws_url = base_a.replace("http://", "ws://") + "/api/v1/ws"
            async with connect(ws_url, additional_headers=bearer(tokens)) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
                created = await via_b.post(
                    "/api/v1/tickets", json={"title": "跨进程", "body": "从 B 创建"}, headers=bearer(tokens)
                )
                assert created.status_code == 201
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                # Process A shuts down: its clients hear "going away" at once.
                proc_a.terminate()
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 15)
        assert (frame["type"], frame["ticket_id"]) == ("ticket.created", created.json()["id"])
        assert closed.value.rcvd.code == 1001
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 20)


@needs_redis
async def test_a_broken_redis_subscription_closes_streams_for_a_resume(settings, admin_engine, customer_tokens_factory):
    await empty_tables(admin_engine)
    configured = settings.model_copy(update={"redis_url": REDIS_URL})
    app = create_app(configured)
    async with app.router.lifespan_context(app):
        tokens = await customer_tokens_factory(app)
        async with (
            serving(app) as base_url,
            httpx.AsyncClient(base_url=base_url) as http,
            http.stream("GET", "/api/v1/events/stream", headers=bearer(tokens)) as stream,
        ):
            lines = stream.aiter_lines()
            # Cut every pub/sub connection on the Redis server: our listener's among them.
            redis = Redis.from_url(REDIS_URL)
            try:
                async with asyncio.timeout(10):
                    # the listener may not have subscribed yet: retry until a connection is cut
                    while not await kill_pubsub_clients(redis):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            finally:
                await redis.aclose()
            closing = None
            async with asyncio.timeout(10):
                async for line in lines:
                    if line.startswith("data: ") and "code" in line:
                        closing = json.loads(line[6:])
                        break
        assert closing == {"code": 1012}


async def kill_pubsub_clients(redis: Redis) -> int:
    """Cuts the pub/sub connections on `redis`'s database only: a test run in another database of
    the same server (a parallel worker) keeps its own."""
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    killed = 0
    for client in await redis.client_list():
        if int(client["db"]) == db and (int(client["sub"]) or int(client["psub"])):
            killed += int(await redis.execute_command("CLIENT", "KILL", "ID", client["id"], "SKIPME", "yes"))
    return killed


@needs_redis
async def test_the_bridge_hears_its_own_redis_database_only():
    """Pub/sub channels span the server: deployments on two database numbers of one Redis must not
    hear each other's ticket events (frames carry the requester and ticket ids)."""
    assert REDIS_URL is not None
    ours = Redis.from_url(REDIS_URL)
    db = ours.connection_pool.connection_kwargs.get("db", 0)
    theirs = Redis(connection_pool=ConnectionPool(**{**ours.connection_pool.connection_kwargs, "db": (db + 1) % 16}))
    listener = User(id=1, role=Role.agent)
    senders = {name: RedisBridge(redis, EventBus()) for name, redis in (("ours", ours), ("theirs", theirs))}
    receivers = {name: RedisBridge(redis, EventBus()) for name, redis in (("ours", ours), ("theirs", theirs))}
    queues = {name: bridge.bus.subscribe(listener).queue for name, bridge in receivers.items()}
    tasks = [asyncio.create_task(bridge.run()) for bridge in receivers.values()]
    try:
        async with asyncio.timeout(5):
            await asyncio.gather(*(bridge.subscribed.wait() for bridge in receivers.values()))
        senders["ours"].publish([frame(1)])
        async with asyncio.timeout(5):
            assert (await queues["ours"].get()) == frame(1)
        # Delivered to every subscriber of its channel before the next publish: a frame 1 that
        # crossed over would come first.
        senders["theirs"].publish([frame(2)])
        async with asyncio.timeout(5):
            assert (await queues["theirs"].get()) == frame(2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bridge in senders.values():
            await bridge.aclose()
        await ours.aclose()
        await theirs.aclose()


def frame(event_id: int) -> Frame:
    return Frame(event_id, "ticket.created", 7, {}, "2026-11-25T00:00:00Z", internal=False, requester_id=3)


@pytest.fixture
def customer_tokens_factory():
    async def make(app):
        from tests.conftest import login, make_client

        await create_user(app, "listener")
        async with make_client(app) as client:
            return await login(client, "listener")

    return make
