"""SSE and WebSocket streams over a real server on 127.0.0.1: who gets which frame, resume,
single-use tokens, 4401 when the login ends."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.models.user import User
from app.realtime.bus import EventBus, Frame
from tests.conftest import bearer, create_user, login
from tests.fakes.server import serving

TICKETS = "/api/v1/tickets"


@pytest.fixture
async def base_url(app):
    async with serving(app) as url:  # the app fixture already ran the lifespan
        yield url


async def sse_frames(lines, count: int, *, seconds: float = 10) -> list[dict]:
    """The next `count` data frames of an SSE stream."""
    frames: list[dict] = []
    async with asyncio.timeout(seconds):
        async for line in lines:
            if line.startswith("data: "):
                frames.append(json.loads(line[6:]))
                if len(frames) == count:
                    return frames
    return frames


async def new_ticket(client, tokens, title="网络问题") -> dict:
    response = await client.post(TICKETS, json={"title": title, "body": "连不上"}, headers=bearer(tokens))
    assert response.status_code == 201
    return response.json()


async def test_customer_stream_gets_the_public_reply_and_never_the_note(client, customer, agent, base_url):
    ticket = await new_ticket(client, customer)
    async with (
        httpx.AsyncClient(base_url=base_url) as http,
        http.stream("GET", "/api/v1/events/stream", headers=bearer(customer)) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        url = f"{TICKETS}/{ticket['id']}/messages"
        await client.post(url, json={"body": "内部：账号被锁", "internal": True}, headers=bearer(agent))
        await client.post(url, json={"body": "已处理"}, headers=bearer(agent))
        frames = await sse_frames(stream.aiter_lines(), 2)
    # The note came first; had it leaked, it would be the first frame.
    assert [f["type"] for f in frames] == ["ticket.message_added", "ticket.updated"]
    assert all(f["ticket_id"] == ticket["id"] for f in frames)
    assert set(frames[0]) == {"id", "type", "ticket_id", "data", "created_at"}


async def test_another_customers_stream_receives_nothing_of_it(app, client, customer, agent, base_url):
    await create_user(app, "neighbour")
    neighbour = await login(client, "neighbour")
    ticket = await new_ticket(client, customer)
    async with (
        httpx.AsyncClient(base_url=base_url) as http,
        http.stream("GET", "/api/v1/events/stream", headers=bearer(neighbour)) as stream,
    ):
        await client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "公开回复"}, headers=bearer(agent))
        await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "resolved"}, headers=bearer(agent))
        own = await new_ticket(client, neighbour, title="我自己的")  # a sentinel of their own
        (first,) = await sse_frames(stream.aiter_lines(), 1)
    assert (first["type"], first["ticket_id"]) == ("ticket.created", own["id"])


async def test_sse_resume_replays_what_was_missed(client, customer, agent, base_url):
    ticket = await new_ticket(client, customer)
    async with httpx.AsyncClient(base_url=base_url) as http:
        async with http.stream("GET", "/api/v1/events/stream", headers=bearer(customer)) as stream:
            await client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "1"}, headers=bearer(customer))
            (seen,) = await sse_frames(stream.aiter_lines(), 1)
        # Disconnected: these happen meanwhile.
        await client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "2"}, headers=bearer(agent))
        await client.post(
            f"{TICKETS}/{ticket['id']}/messages", json={"body": "内部", "internal": True}, headers=bearer(agent)
        )
        headers = {**bearer(customer), "Last-Event-ID": str(seen["id"])}
        async with http.stream("GET", "/api/v1/events/stream", headers=headers) as stream:
            # created, "1" again (the overlap), then what was missed: "2" and new -> open
            replayed = await sse_frames(stream.aiter_lines(), 4)
    fresh = [f for f in replayed if f["id"] > seen["id"]]  # the overlap repeats some: clients dedupe
    assert [f["type"] for f in fresh] == ["ticket.message_added", "ticket.updated"]
    assert all(f["type"] != "ticket.note_added" for f in replayed)


async def test_websocket_ping_live_frames_and_resume(client, customer, agent, base_url):
    ticket = await new_ticket(client, customer)
    ws_url = base_url.replace("http://", "ws://") + "/api/v1/ws"
    async with connect(ws_url, additional_headers=bearer(customer)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        await ws.send("not json at all")  # ignored, the connection stays
        await client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "回复"}, headers=bearer(agent))
        live = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
        assert [(f["type"], f["ticket_id"]) for f in live] == [
            ("ticket.message_added", ticket["id"]),
            ("ticket.updated", ticket["id"]),  # new -> open, automatic
        ]
        await ws.send(json.dumps({"type": "resume", "since": 0}))
        replayed = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(3)]
    assert [f["type"] for f in replayed] == ["ticket.created", "ticket.message_added", "ticket.updated"]


async def test_browser_token_works_once(client, customer, base_url):
    token = (await client.post("/api/v1/realtime/token", headers=bearer(customer))).json()["token"]
    async with httpx.AsyncClient(base_url=base_url) as http:
        async with http.stream("GET", "/api/v1/events/stream", params={"token": token}) as stream:
            assert stream.status_code == 200
        again = await http.get("/api/v1/events/stream", params={"token": token})
        assert again.status_code == 401
        assert again.json()["code"] == "invalid_token"
        assert (await http.get("/api/v1/events/stream")).status_code == 401
    ws_url = base_url.replace("http://", "ws://") + f"/api/v1/ws?token={token}"
    async with connect(ws_url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4401


async def test_logging_out_closes_the_websocket_with_4401(app, client, customer, base_url):
    app.state.ctx.realtime.settings.revalidate_seconds = 0.2
    ws_url = base_url.replace("http://", "ws://") + "/api/v1/ws"
    async with connect(ws_url, additional_headers=bearer(customer)) as ws:
        await client.post("/api/v1/auth/logout", json={"refresh_token": customer["refresh_token"]})
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4401


async def test_streams_per_user_are_capped(app, client, customer, base_url):
    app.state.ctx.realtime.settings.max_connections_per_user = 1
    async with httpx.AsyncClient(base_url=base_url) as http:
        async with http.stream("GET", "/api/v1/events/stream", headers=bearer(customer)) as first:
            assert first.status_code == 200
            second = await http.get("/api/v1/events/stream", headers=bearer(customer))
            assert second.status_code == 429
            assert second.json()["code"] == "too_many_streams"
            ws_url = base_url.replace("http://", "ws://") + "/api/v1/ws"
            async with connect(ws_url, additional_headers=bearer(customer)) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 4429
        # The first one closed: there is room again.
        async with http.stream("GET", "/api/v1/events/stream", headers=bearer(customer)) as again:
            assert again.status_code == 200


def test_a_client_too_slow_to_keep_up_is_marked_for_closing():
    bus = EventBus()
    user = User(id=1, role="agent", display_name="a", username="a")
    slow = bus.subscribe(user)
    frame = Frame(id=1, type="ticket.created", ticket_id=1, data={}, created_at="", internal=False, requester_id=2)
    bus.publish([frame] * 300)
    assert slow.overflowed
    assert slow.queue.qsize() == 256
