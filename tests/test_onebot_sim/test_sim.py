"""The OneBot implementation simulator, checked with plain websockets/httpx clients: what it
answers, in which shape, over every transport, and the faults it can script."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WsRequest

from tests.fakes.server import serving
from tests.onebot_sim import (
    NO_ECHO,
    HttpPostSender,
    Implementation,
    Quirks,
    ReverseWsClient,
    cqcode,
    forward_ws_server,
    http_api_server,
)

TOKEN = "sim-token-123"


def ws_connect(url: str, headers: dict[str, str] | None = None) -> Any:
    return connect(url, additional_headers=headers, open_timeout=2, close_timeout=1, proxy=None, ping_interval=None)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(2):
        return json.loads(await ws.recv())


async def call(ws: ClientConnection, action: str, params: dict[str, Any] | None = None, echo: Any = "e1") -> None:
    await ws.send(json.dumps({"action": action, "params": params or {}, "echo": echo}))


async def recv_response(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that is not an event."""
    while "post_type" in (frame := await recv(ws)):
        pass
    return frame


# --- forward WebSocket -------------------------------------------------------------------------


async def test_forward_refuses_a_handshake_without_token_with_401():
    impl = Implementation(token=TOKEN)
    async with forward_ws_server(impl) as server:
        with pytest.raises(Exception, match="HTTP 401"):
            await ws_connect(server.url)
        with pytest.raises(Exception, match="HTTP 403"):
            await ws_connect(server.url, {"Authorization": "Bearer wrong"})
    assert [h.status for h in server.handshakes] == [401, 403]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("", {"Authorization": f"Bearer {TOKEN}"}),
        ("", {"Authorization": f"Token {TOKEN}"}),
        (f"?access_token={TOKEN}", {}),
    ],
    ids=["bearer", "token", "query"],
)
async def test_forward_accepts_the_token_in_every_accepted_form(path, headers):
    impl = Implementation(token=TOKEN)
    async with forward_ws_server(impl) as server, ws_connect(server.url + path, headers) as ws:
        lifecycle = await recv(ws)
        assert lifecycle["meta_event_type"] == "lifecycle"
        assert server.handshakes[-1].status == 101
        assert server.connection_count == 1


async def test_napcat_style_auth_rejection_upgrades_then_sends_1403_and_closes():
    impl = Implementation(token=TOKEN, quirks=Quirks(auth_rejection="frame"))
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        frame = await recv(ws)
        assert (frame["status"], frame["retcode"], frame["message"]) == ("failed", 1403, "token验证失败")
        with pytest.raises(ConnectionClosed):
            await recv(ws)


async def test_forward_sends_lifecycle_then_heartbeats_with_interval_in_ms():
    impl = Implementation(self_id=10001, quirks=Quirks(heartbeat_interval=0.02))
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        lifecycle, heartbeat = await recv(ws), await recv(ws)
    assert lifecycle | {"time": 0} == {
        "time": 0,
        "self_id": 10001,
        "post_type": "meta_event",
        "meta_event_type": "lifecycle",
        "sub_type": "connect",
    }
    assert heartbeat["meta_event_type"] == "heartbeat"
    assert heartbeat["interval"] == 20
    assert heartbeat["status"] == {"online": True, "good": True}


async def test_forward_without_lifecycle_quirk_sends_nothing_first():
    impl = Implementation(quirks=Quirks(lifecycle=False))
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "get_login_info")
        assert "post_type" not in await recv(ws)


async def test_forward_api_path_carries_no_events():
    impl = Implementation()
    async with forward_ws_server(impl) as server, ws_connect(server.url + "api") as ws:
        await server.wait_connected()
        assert await impl.emit(impl.private_message(5, "hi")) == 0
        await call(ws, "get_status")
        assert (await recv(ws))["data"]["online"] is True


async def test_napcat_round_trip_has_napcat_extras():
    impl = Implementation(self_id=42, nickname="助手")
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "get_login_info", echo="abc")
        response = await recv_response(ws)
    assert response == {
        "status": "ok",
        "retcode": 0,
        "data": {"user_id": 42, "nickname": "助手"},
        "message": "",
        "wording": "",
        "stream": "normal-action",
        "echo": "abc",
    }
    assert impl.calls == [{"action": "get_login_info", "params": {}, "over_http": False, "echo": "abc"}]


async def test_napcat_failures_use_1404_and_1400_over_ws():
    impl = Implementation()
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "no_such_action", echo="u")
        unknown = await recv_response(ws)
        await call(ws, "send_group_msg", {"message": "hi"}, echo="b")
        bad = await recv_response(ws)
    assert (unknown["status"], unknown["retcode"], unknown["echo"]) == ("failed", 1404, "u")
    assert "no_such_action" in unknown["wording"]
    assert (bad["retcode"], bad["data"]) == (1400, None)


async def test_gocq_shapes_and_negative_message_ids():
    impl = Implementation(quirks=Quirks.gocq())
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "send_group_msg", {"group_id": 1, "message": "hi"}, echo=7)
        ok = await recv_response(ws)
        await ws.send(json.dumps({"action": "no_such_action"}))
        unknown = await recv_response(ws)
    assert ok == {"data": {"message_id": -726405240}, "retcode": 0, "status": "ok", "message": "", "echo": 7}
    assert unknown == {
        "data": None,
        "retcode": 404,
        "msg": "API_NOT_FOUND",
        "wording": "API不存在",
        "message": "API不存在",
        "status": "failed",
    }


async def test_stream_action_sends_chunks_then_the_final_frame_with_one_echo():
    impl = Implementation()
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "test_download_stream", {"chunks": 2}, echo="s")
        frames = [await recv_response(ws) for _ in range(3)]
    assert {frame["echo"] for frame in frames} == {"s"}
    assert {frame["stream"] for frame in frames} == {"stream-action"}
    assert [frame["data"]["type"] for frame in frames] == ["stream", "stream", "response"]
    assert [frame["data"].get("index") for frame in frames[:2]] == [0, 1]
    assert frames[2]["data"]["data_type"] == "file_complete"


async def test_drop_next_aborts_the_connection_without_answering():
    impl = Implementation(quirks=Quirks(lifecycle=False))
    impl.drop_next("send_private_msg")
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "send_private_msg", {"user_id": 1, "message": "x"})
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        await server.wait_disconnected()
    assert ws.close_code == 1006
    assert impl.sent == []


async def test_drop_next_with_close_code_closes_cleanly():
    impl = Implementation(quirks=Quirks(lifecycle=False))
    impl.drop_next("get_status", close_code=1011)
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "get_status")
        with pytest.raises(ConnectionClosed):
            await recv(ws)
    assert ws.close_code == 1011


async def test_reply_twice_sends_the_same_echo_twice():
    impl = Implementation(quirks=Quirks(reply_twice=True, lifecycle=False))
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "get_status", echo="twice")
        first, second = await recv(ws), await recv(ws)
    assert first == second
    assert first["echo"] == "twice"


async def test_silence_never_answers_but_records_the_call():
    impl = Implementation(quirks=Quirks(lifecycle=False))
    impl.silence("get_status")
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "get_status", echo="1")
        await call(ws, "get_login_info", echo="2")
        assert (await recv(ws))["echo"] == "2"
        assert (await impl.wait_for_call("get_status"))["echo"] == "1"


async def test_a_delayed_answer_does_not_hold_up_other_actions():
    impl = Implementation(quirks=Quirks(lifecycle=False))
    impl.delay_next("get_status", 0.05)
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "get_status", echo="slow")
        await call(ws, "get_login_info", echo="fast")
        assert [(await recv(ws))["echo"], (await recv(ws))["echo"]] == ["fast", "slow"]


async def test_napcat_answers_a_frame_that_is_not_json_with_1400():
    impl = Implementation(quirks=Quirks(lifecycle=False))
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await ws.send("{not json")
        frame = await recv(ws)
    assert (frame["status"], frame["retcode"], frame["echo"]) == ("failed", 1400, None)
    assert impl.bad_frames == ["{not json"]


async def test_emit_reaches_every_forward_connection_in_string_format_with_escapes():
    impl = Implementation(quirks=Quirks.gocq(lifecycle=False))
    async with forward_ws_server(impl) as server, ws_connect(server.url) as one, ws_connect(server.url) as two:
        await server.wait_connected(2)
        event = impl.private_message(12345678, "打印机[三楼]坏了 & 卡纸")
        assert await impl.emit(event) == 2
        received = [await recv(one), await recv(two)]
    assert received == [event, event]
    assert event["message"] == "打印机&#91;三楼&#93;坏了 &amp; 卡纸"
    assert event["message_id"] < 0


async def test_stop_and_start_keep_the_port_for_reconnects():
    impl = Implementation(quirks=Quirks(lifecycle=False))
    async with forward_ws_server(impl) as server:
        url = server.url
        async with ws_connect(url) as ws:
            await server.stop()
            with pytest.raises(ConnectionClosed):
                await recv(ws)
        with pytest.raises(OSError, match="Connect call failed"):
            await ws_connect(url)
        await server.start()
        async with ws_connect(url):
            await server.wait_connected()
            assert server.url == url
            await server.drop_all()
            assert server.connection_count == 0


# --- reverse WebSocket ----------------------------------------------------------------------


@asynccontextmanager
async def endpoint(*, refuse: int = 0, close_code: int | None = None) -> AsyncIterator[dict[str, Any]]:
    """A stand-in for our reverse WS endpoint: records handshakes and frames; can refuse with an
    HTTP status or close every link after accepting it."""
    seen: dict[str, Any] = {"headers": [], "frames": asyncio.Queue(), "links": []}

    def check(connection: ServerConnection, request: WsRequest) -> Any:
        seen["headers"].append(request.headers)
        return connection.respond(refuse, "") if refuse else None

    async def handler(connection: ServerConnection) -> None:
        seen["links"].append(connection)
        if close_code is not None:
            await connection.close(close_code, "bad token")
            return
        async for message in connection:
            await seen["frames"].put(json.loads(message))

    async with serve(handler, "127.0.0.1", 0, process_request=check, ping_interval=None) as server:
        seen["url"] = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/onebot/v11/ws"
        yield seen


async def next_frame(seen: dict[str, Any]) -> dict[str, Any]:
    async with asyncio.timeout(2):
        return await seen["frames"].get()


async def test_reverse_client_sends_gocq_headers_and_answers_actions():
    impl = Implementation(self_id=10001, token=TOKEN, quirks=Quirks.gocq())
    async with endpoint() as seen, ReverseWsClient(impl, seen["url"]) as client:
        headers = seen["headers"][0]
        assert (headers["X-Self-ID"], headers["X-Client-Role"]) == ("10001", "Universal")
        assert headers["Authorization"] == f"Token {TOKEN}"
        assert headers["User-Agent"] == "CQHttp/4.15.0"
        assert (await next_frame(seen))["meta_event_type"] == "lifecycle"
        await seen["links"][0].send(json.dumps({"action": "get_login_info", "params": {}, "echo": "r1"}))
        assert (await next_frame(seen))["data"]["user_id"] == 10001
        assert await impl.emit(impl.friend_request(5, "f1", "想报修")) == 1
        assert (await next_frame(seen))["flag"] == "f1"
        assert client.connected


async def test_napcat_reverse_client_sends_bearer_even_without_token():
    impl = Implementation(quirks=Quirks.napcat())
    async with endpoint() as seen, ReverseWsClient(impl, seen["url"], role=None, self_id_header=False):
        headers = seen["headers"][0]
        assert "X-Client-Role" not in headers
        assert "X-Self-ID" not in headers
        assert headers["Authorization"].strip() == "Bearer"
        assert headers["User-Agent"] == "OneBot/11"


async def test_reverse_api_link_carries_no_events_and_event_link_answers_nothing():
    impl = Implementation()
    async with endpoint() as seen:
        async with ReverseWsClient(impl, seen["url"], role="API"):
            assert impl.event_links == 0
        async with ReverseWsClient(impl, seen["url"], role="Event"):
            assert (await next_frame(seen))["meta_event_type"] == "lifecycle"
            await seen["links"][1].send(json.dumps({"action": "get_status", "echo": "x"}))
            assert await impl.emit(impl.heartbeat()) == 1
            assert (await next_frame(seen))["meta_event_type"] == "heartbeat"  # and no response before it


async def test_reverse_client_reports_refusal_status_and_close_code():
    impl = Implementation(token="wrong")
    async with endpoint(refuse=401) as seen:
        client = ReverseWsClient(impl, seen["url"])
        assert await client.connect() == 401
        assert client.refused_status == 401
    async with endpoint(close_code=1008) as seen:
        client = ReverseWsClient(impl, seen["url"])
        assert await client.connect() == 101
        assert await client.wait_closed() == 1008


async def test_reverse_client_abort_drops_without_close_frame():
    impl = Implementation()
    async with endpoint() as seen:
        client = ReverseWsClient(impl, seen["url"])
        await client.connect()
        await client.abort()
        assert client.close_code == 1006
        link = seen["links"][0]
        await link.wait_closed()
        assert link.close_code == 1006


# --- HTTP API ---------------------------------------------------------------------------------


async def test_http_api_round_trip_with_json_form_and_query_params():
    impl = Implementation(token=TOKEN, friends={5})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http_api_server(impl) as base, httpx.AsyncClient(base_url=base, trust_env=False) as client:
        by_json = await client.post("/send_private_msg", json={"user_id": 5, "message": "hi"}, headers=auth)
        by_form = await client.post("/send_private_msg", data={"user_id": "5", "message": "yo"}, headers=auth)
        by_query = await client.get(f"/get_stranger_info?user_id=5&access_token={TOKEN}")
    assert by_json.status_code == by_form.status_code == by_query.status_code == 200
    assert by_json.json()["data"]["message_id"] == 3425462029
    assert by_json.json()["echo"] is None
    assert [s["text"] for s in impl.sent] == ["hi", "yo"]
    assert by_query.json()["data"]["user_id"] == 5
    assert all(c["over_http"] for c in impl.calls)


async def test_http_api_token_checks():
    impl = Implementation(token=TOKEN)
    async with http_api_server(impl) as base, httpx.AsyncClient(base_url=base, trust_env=False) as client:
        missing = await client.post("/get_status", json={})
        wrong = await client.post("/get_status", json={}, headers={"Authorization": "Token nope"})
    assert (missing.status_code, wrong.status_code) == (401, 403)
    assert impl.calls == []


async def test_http_api_unknown_action_per_flavor():
    napcat, gocq = Implementation(), Implementation(quirks=Quirks.gocq())
    async with (
        http_api_server(napcat) as napcat_base,
        http_api_server(gocq) as gocq_base,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        from_napcat = await client.post(f"{napcat_base}/no_such_action", json={})
        from_gocq = await client.post(f"{gocq_base}/no_such_action", json={})
    assert from_napcat.status_code == 200
    assert (from_napcat.json()["status"], from_napcat.json()["retcode"]) == ("failed", 200)
    assert (from_gocq.status_code, from_gocq.content) == (404, b"")


async def test_http_api_drop_next_cuts_the_response_and_silence_holds_it():
    impl = Implementation()
    impl.drop_next("get_status")
    impl.silence("get_login_info")
    async with http_api_server(impl) as base, httpx.AsyncClient(base_url=base, trust_env=False) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/get_status", json={})
        with pytest.raises(httpx.ReadTimeout):
            # A new connection (the first was cut): only the wait for the answer is short, so a
            # loaded machine's slow connect is not mistaken for the silence.
            await client.post("/get_login_info", json={}, timeout=httpx.Timeout(5.0, read=0.05))


async def test_http_api_stream_action_writes_frames_separated_by_blank_lines():
    impl = Implementation()
    async with http_api_server(impl) as base, httpx.AsyncClient(base_url=base, trust_env=False) as client:
        response = await client.post("/test_download_stream", json={"chunks": 2})
    frames = [json.loads(part) for part in response.text.split("\r\n\r\n") if part]
    assert [f["data"]["type"] for f in frames] == ["stream", "stream", "response"]


# --- HTTP POST ----------------------------------------------------------------------------------


@asynccontextmanager
async def post_receiver(status: int = 204) -> AsyncIterator[tuple[str, list[tuple[Any, bytes]]]]:
    received: list[tuple[Any, bytes]] = []

    async def receive(request: Request) -> Response:
        received.append((request.headers, await request.body()))
        return Response(status_code=status)

    async with serving(Starlette(routes=[Route("/onebot/v11/http", receive, methods=["POST"])])) as base:
        yield f"{base}/onebot/v11/http", received


async def test_http_post_signs_the_raw_body_with_hmac_sha1():
    impl = Implementation(self_id=10001, token=TOKEN, quirks=Quirks.gocq())
    async with post_receiver() as (url, received), HttpPostSender(impl, url, secret="s3cret") as sender:
        response = await sender.post(impl.private_message(5, "hi"))
    headers, body = received[0]
    expected = hmac.new(b"s3cret", body, "sha1").hexdigest()
    assert response.status_code == 204
    assert headers["x-signature"] == f"sha1={expected}"
    assert (headers["x-self-id"], headers["content-type"]) == ("10001", "application/json")
    assert headers["authorization"] == f"Token {TOKEN}"
    assert json.loads(body)["message"] == "hi"


async def test_http_post_can_forge_repeat_and_send_garbage():
    impl = Implementation()
    async with post_receiver() as (url, received), HttpPostSender(impl, url, secret="s", authorization=False) as sender:
        event = impl.heartbeat()
        await sender.post(event, repeat=2)
        await sender.post(event, signature="sha1=0000")
        await sender.post(body="not json", signature="")
    assert received[0][1] == received[1][1]
    assert received[2][0]["x-signature"] == "sha1=0000"
    assert "x-signature" not in received[3][0]
    assert received[3][1] == b"not json"
    assert "authorization" not in received[0][0]


async def test_emit_posts_to_the_http_post_target_while_it_is_open():
    impl = Implementation()
    async with post_receiver() as (url, received):
        async with HttpPostSender(impl, url):
            assert await impl.emit(impl.group_increase(1, 2)) == 1
        assert await impl.emit(impl.heartbeat()) == 0
    assert json.loads(received[0][1])["notice_type"] == "group_increase"


# --- the implementation itself ------------------------------------------------------------------


def test_cq_serializer_escapes_text_and_params_and_parses_back():
    segments = [
        {"type": "text", "data": {"text": "a&b[c]d,e"}},
        {"type": "image", "data": {"file": "x,y]&.png"}},
    ]
    text = cqcode.to_cq(segments)
    assert text == "a&amp;b&#91;c&#93;d,e[CQ:image,file=x&#44;y&#93;&amp;.png]"
    assert cqcode.from_cq(text) == segments


def test_non_friend_private_message_fails_until_the_friend_request_is_approved():
    impl = Implementation()
    [refused] = impl.handle_action("send_private_msg", {"user_id": 7, "message": "hi"}, "1")
    assert (refused["status"], refused["retcode"]) == ("failed", 1200)
    assert "请先添加对方为好友" in refused["wording"]
    event = impl.friend_request(7, comment="想报修")
    [approved] = impl.handle_action("set_friend_add_request", {"flag": event["flag"], "approve": True}, "2")
    assert approved["status"] == "ok"
    [sent] = impl.handle_action(
        "send_private_msg", {"user_id": "7", "message": [{"type": "text", "data": {"text": "hi"}}]}
    )
    assert sent["status"] == "ok"


def test_echo_quirks():
    stringify = Implementation(quirks=Quirks(stringify_echo=True))
    drop = Implementation(quirks=Quirks(drop_falsy_echo=True))
    assert stringify.handle_action("get_status", {}, 12)[0]["echo"] == "12"
    assert stringify.handle_action("get_status", {}, {"a": 1})[0]["echo"] == '{"a":1}'
    assert "echo" not in drop.handle_action("get_status", {}, 0)[0]
    assert "echo" not in Implementation(quirks=Quirks.gocq()).handle_action("get_status", {}, NO_ECHO)[0]


def test_napcat_message_event_extras_and_ids_as_strings():
    impl = Implementation(self_id=1, quirks=Quirks(ids_as_strings=True))
    event = impl.group_message(
        9, 5, [{"type": "at", "data": {"qq": "1"}}, {"type": "text", "data": {"text": " /报修"}}]
    )
    assert (event["self_id"], event["user_id"], event["group_id"]) == ("1", "5", "9")
    assert event["sender"]["user_id"] == "5"
    assert event["message_id"] == 3425462029
    assert (event["font"], event["message_format"]) == (14, "array")
    assert {"message_seq", "real_id"} <= event.keys()
    assert event["raw_message"] == "[CQ:at,qq=1] /报修"


def test_get_msg_knows_only_recent_messages_and_media_become_files():
    impl = Implementation(history_limit=2, friends={5})
    image = {"type": "image", "data": {"file": "ab.png", "url": "https://example.invalid/ab.png"}}
    first = impl.private_message(5, [image])["message_id"]
    impl.private_message(5, "two")
    impl.private_message(5, "three")
    assert impl.handle_action("get_msg", {"message_id": first})[0]["status"] == "failed"
    [image_info] = impl.handle_action("get_image", {"file": "ab.png"})
    assert image_info["data"]["url"] == "https://example.invalid/ab.png"


async def test_report_self_message_emits_message_sent_after_the_answer():
    impl = Implementation(friends={5}, quirks=Quirks(report_self_message=True, lifecycle=False))
    async with forward_ws_server(impl) as server, ws_connect(server.url) as ws:
        await call(ws, "send_private_msg", {"user_id": 5, "message": "hi"})
        response, report = await recv(ws), await recv(ws)
    assert response["status"] == "ok"
    assert (report["post_type"], report["message_id"]) == ("message_sent", response["data"]["message_id"])
    assert report["user_id"] == impl.self_id


def test_fail_next_uses_the_flavor_code_or_the_given_one():
    impl = Implementation(quirks=Quirks.gocq())
    impl.fail_next("get_status")
    impl.fail_next("get_status", retcode=1403, wording="nope")
    first, second, third = (impl.handle_action("get_status", {})[0] for _ in range(3))
    assert (first["retcode"], second["retcode"], second["wording"], third["retcode"]) == (100, 1403, "nope", 0)


def test_gocq_strips_async_suffix_and_napcat_does_not():
    assert Implementation(quirks=Quirks.gocq()).handle_action("get_status_async", {})[0]["status"] == "ok"
    assert Implementation().handle_action("get_status_async", {})[0]["retcode"] == 1404
