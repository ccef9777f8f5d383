"""RequestManager against the simulator: echo matching, typed errors, timeouts, pending calls
failing with their connection, late and repeated responses, NapCat stream frames."""

from __future__ import annotations

import asyncio

import pytest

from app.onebot.errors import ActionFailed, ActionTimeout, ConnectionLost
from tests.onebot_sim import Implementation, Quirks
from tests.test_onebot.conftest import FRIEND, SELF_ID, forward_pair, wait_until


async def test_a_call_returns_the_data_of_its_response(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _, connection):
        response = await hub.requests.send_request(connection, "get_login_info")
    assert response.data == {"user_id": SELF_ID, "nickname": "工单助手"}
    call = impl.calls[-1]
    assert call["action"] == "get_login_info"
    assert isinstance(call["echo"], str)  # always a string: implementations mangle other types


async def test_a_failed_action_raises_action_failed_with_the_wording(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _, connection):
        with pytest.raises(ActionFailed) as failed:
            await hub.requests.send_request(connection, "send_private_msg", {"user_id": 999, "message": "hi"})
    assert failed.value.action == "send_private_msg"
    assert failed.value.retcode == 1200
    assert "请先添加对方为好友" in failed.value.wording
    assert hub.metrics.get("actions_failed") == 1


@pytest.mark.parametrize("quirks", [Quirks.napcat(), Quirks.gocq()], ids=["napcat", "gocq"])
async def test_an_unknown_action_fails_whatever_the_retcode(quirks: Quirks) -> None:
    impl = Implementation(self_id=SELF_ID, quirks=quirks)
    async with forward_pair(impl) as (hub, _, connection):
        with pytest.raises(ActionFailed) as failed:
            await hub.requests.send_request(connection, "no_such_action")
    assert failed.value.retcode in (1404, 404)


async def test_a_call_without_an_answer_times_out(impl: Implementation) -> None:
    impl.silence("get_status")
    async with forward_pair(impl) as (hub, _, connection):
        with pytest.raises(ActionTimeout) as timeout:
            await hub.requests.send_request(connection, "get_status", timeout=0.1)
        assert timeout.value.action == "get_status"
        assert hub.requests.pending_count == 0


async def test_closing_the_socket_fails_every_pending_call_at_once(impl: Implementation) -> None:
    impl.silence("get_status")
    async with forward_pair(impl, timeout=30.0) as (hub, server, connection):
        calls = [asyncio.create_task(hub.requests.send_request(connection, "get_status")) for _ in range(100)]
        await impl.wait_for_call("get_status", count=100)
        assert hub.requests.pending_count == 100
        await server.drop_all()
        # Far sooner than the 30 s timeout: the close fails them all together.
        async with asyncio.timeout(5):
            results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, ConnectionLost) for result in results)
    assert hub.requests.pending_count == 0
    assert hub.metrics.get("actions_lost") == 100


async def test_a_late_response_is_ignored_and_the_link_keeps_working(impl: Implementation) -> None:
    impl.delay_next("get_status", 0.3)
    async with forward_pair(impl) as (hub, _, connection):
        with pytest.raises(ActionTimeout):
            await hub.requests.send_request(connection, "get_status", timeout=0.05)
        await wait_until(lambda: hub.metrics.get("responses_unmatched") == 1)
        response = await hub.requests.send_request(connection, "get_status")
    assert response.ok


async def test_a_repeated_response_resolves_the_call_once() -> None:
    impl = Implementation(self_id=SELF_ID, friends={FRIEND}, quirks=Quirks.napcat(reply_twice=True))
    async with forward_pair(impl) as (hub, _, connection):
        first = await hub.requests.send_request(connection, "send_private_msg", {"user_id": FRIEND, "message": "a"})
        second = await hub.requests.send_request(connection, "send_private_msg", {"user_id": FRIEND, "message": "b"})
        await wait_until(lambda: hub.metrics.get("responses_unmatched") >= 2)
    assert first.data["message_id"] != second.data["message_id"]


@pytest.mark.parametrize("quirks", [Quirks.napcat(stringify_echo=True), Quirks.gocq()], ids=["stringified", "gocq"])
async def test_echoes_match_whatever_the_implementation_does_to_them(quirks: Quirks) -> None:
    impl = Implementation(self_id=SELF_ID, quirks=quirks)
    async with forward_pair(impl) as (hub, _, connection):
        results = await asyncio.gather(*(hub.requests.send_request(connection, "get_status") for _ in range(20)))
    assert all(result.ok for result in results)


async def test_stream_frames_are_gathered_until_the_last(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _, connection):
        response = await hub.requests.send_request(connection, "test_download_stream", {"chunks": 4})
    assert [chunk["index"] for chunk in response.chunks] == [0, 1, 2, 3]
    assert response.data["type"] == "response"


async def test_a_frame_that_is_not_json_is_skipped_and_the_link_lives(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, server, connection):
        await server.connections[0].send("this is not json {")
        await server.connections[0].send("[1, 2, 3]")
        await wait_until(lambda: hub.metrics.get("frames_invalid") == 2)
        response = await hub.requests.send_request(connection, "get_status")
        assert not connection.closed
    assert response.ok


async def test_calls_on_a_closed_connection_fail_at_once(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, server, connection):
        await server.drop_all()
        await wait_until(lambda: connection.closed)
        with pytest.raises(ConnectionLost):
            await hub.requests.send_request(connection, "get_status")
