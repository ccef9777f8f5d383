"""Reverse WebSocket `/onebot/v11/ws`: who may connect, roles, and replacing a connection."""

from __future__ import annotations

import asyncio

import pytest

from app.onebot.connection import Connection, Role
from app.onebot.errors import ConnectionLost, NotConnected
from app.onebot.hub import OneBotHub
from tests.onebot_sim import Implementation, Quirks, ReverseWsClient
from tests.test_onebot.conftest import SELF_ID, collect, running_hub, serving_hub, wait_until, ws_url

POLICY_VIOLATION = 1008


async def test_a_connection_without_x_self_id_is_closed_before_any_frame(impl: Implementation) -> None:
    async with running_hub() as hub, serving_hub(hub) as base:
        client = ReverseWsClient(impl, ws_url(base), self_id_header=False)
        await client.connect()
        assert await client.wait_closed() == POLICY_VIOLATION
        assert "X-Self-ID" in (client.close_reason or "")
        assert hub.metrics.get("frames_in") == 0  # its lifecycle event was never read
        assert hub.registry.self_ids() == set()


@pytest.mark.parametrize("presented", ["wrong", ""], ids=["wrong-token", "no-token"])
async def test_a_bad_token_is_refused_before_any_frame(presented: str) -> None:
    impl = Implementation(self_id=SELF_ID, token=presented, quirks=Quirks.napcat())
    async with running_hub(access_token="s3cret") as hub, serving_hub(hub) as base:
        client = ReverseWsClient(impl, ws_url(base))
        await client.connect()
        assert await client.wait_closed() == POLICY_VIOLATION
        assert hub.metrics.get("frames_in") == 0
        assert hub.registry.self_ids() == set()


@pytest.mark.parametrize("quirks", [Quirks.napcat(), Quirks.gocq()], ids=["bearer", "token"])
async def test_bearer_and_token_schemes_are_accepted(quirks: Quirks) -> None:
    impl = Implementation(self_id=SELF_ID, token="s3cret", quirks=quirks)
    async with (
        running_hub(access_token="s3cret") as hub,
        serving_hub(hub) as base,
        ReverseWsClient(impl, ws_url(base)),
    ):
        await wait_until(lambda: hub.registry.action_connection(SELF_ID) is not None)
        assert await hub.bot(SELF_ID).get_login_info() == {"user_id": SELF_ID, "nickname": "工单助手"}


async def test_napcats_empty_bearer_counts_as_no_token_from_loopback() -> None:
    impl = Implementation(self_id=SELF_ID, quirks=Quirks.napcat(empty_bearer=True))
    async with running_hub() as hub, serving_hub(hub) as base, ReverseWsClient(impl, ws_url(base)) as client:
        assert client.headers["Authorization"] == "Bearer "
        await wait_until(lambda: hub.registry.action_connection(SELF_ID) is not None)


async def test_a_missing_role_means_universal(impl: Implementation) -> None:
    async with running_hub() as hub, serving_hub(hub) as base, ReverseWsClient(impl, ws_url(base), role=None):
        await wait_until(lambda: hub.registry.get(SELF_ID, Role.UNIVERSAL) is not None)


async def test_api_and_event_connections_of_one_bot_coexist(impl: Implementation) -> None:
    async with running_hub() as hub, serving_hub(hub) as base:
        events = collect(hub, "message.private")
        async with (
            ReverseWsClient(impl, ws_url(base), role="API"),
            ReverseWsClient(impl, ws_url(base), role="Event"),
        ):
            await wait_until(lambda: len(hub.registry.connections()) == 2)
            api = hub.registry.get(SELF_ID, Role.API)
            assert hub.registry.action_connection(SELF_ID) is api
            # Actions go over the API link; events come in over the Event link.
            assert (await hub.bot(SELF_ID).get_login_info())["user_id"] == SELF_ID
            assert await impl.emit(impl.private_message(345678901, "电脑蓝屏了")) == 1
            await wait_until(lambda: len(events) == 1)
    assert events[0].message.plain_text() == "电脑蓝屏了"  # type: ignore[attr-defined]


async def connect_twice(
    hub: OneBotHub, impl: Implementation, base: str
) -> tuple[ReverseWsClient, ReverseWsClient, Connection | None, Connection | None]:
    """Two reverse connections of one bot, one after the other; with the registered links."""
    old = ReverseWsClient(impl, ws_url(base))
    await old.connect()
    await wait_until(lambda: hub.registry.action_connection(SELF_ID) is not None)
    first = hub.registry.action_connection(SELF_ID)
    new = ReverseWsClient(impl, ws_url(base))
    await new.connect()
    await wait_until(lambda: hub.registry.action_connection(SELF_ID) not in (None, first))
    return old, new, first, hub.registry.action_connection(SELF_ID)


async def test_a_new_connection_replaces_the_old_one_safely(impl: Implementation) -> None:
    async with running_hub() as hub, serving_hub(hub) as base:
        old, new, _, second = await connect_twice(hub, impl, base)
        assert await old.wait_closed() == 1000  # we closed the replaced one
        await asyncio.sleep(0.05)  # let the old endpoint's cleanup run
        # The old link's cleanup did not unregister its successor.
        assert hub.registry.action_connection(SELF_ID) is second
        assert (await hub.bot(SELF_ID).get_login_info())["user_id"] == SELF_ID
        await new.close()


async def test_a_reconnect_before_the_old_socket_dies_keeps_the_new_registration(impl: Implementation) -> None:
    async with running_hub() as hub, serving_hub(hub) as base:
        old, new, first, second = await connect_twice(hub, impl, base)
        await old.abort()  # the old socket dies only now, without a close frame
        await wait_until(lambda: first is not None and first.closed)
        assert hub.registry.action_connection(SELF_ID) is second
        await new.close()


async def test_pending_calls_fail_when_the_implementation_drops_the_link(impl: Implementation) -> None:
    impl.silence("get_status")
    async with running_hub(timeout=30.0) as hub, serving_hub(hub) as base:
        client = ReverseWsClient(impl, ws_url(base))
        await client.connect()
        await wait_until(lambda: hub.registry.action_connection(SELF_ID) is not None)
        calls = [asyncio.create_task(hub.bot(SELF_ID).call("get_status")) for _ in range(10)]
        await impl.wait_for_call("get_status", count=10)
        await client.abort()
        async with asyncio.timeout(5):
            results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, ConnectionLost) for result in results)


async def test_actions_are_never_sent_over_an_event_connection(impl: Implementation) -> None:
    async with running_hub() as hub, serving_hub(hub) as base, ReverseWsClient(impl, ws_url(base), role="Event"):
        await wait_until(lambda: hub.registry.get(SELF_ID, Role.EVENT) is not None)
        with pytest.raises(NotConnected):
            await hub.bot(SELF_ID).get_login_info()
    assert impl.calls == []
