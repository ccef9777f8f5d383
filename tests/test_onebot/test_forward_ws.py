"""Forward WebSocket: the token, learning the bot's self_id, reconnecting, the heartbeat watchdog."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from app.onebot.events import HeartbeatMetaEvent
from tests.onebot_sim import Implementation, Quirks, forward_ws_server
from tests.test_onebot.conftest import SELF_ID, collect, forward_pair, running_hub, wait_until


async def test_the_token_goes_in_the_header_and_the_query() -> None:
    impl = Implementation(self_id=SELF_ID, token="s3cret")
    async with forward_pair(impl, access_token="s3cret") as (_, server, _):
        handshake = server.handshakes[-1]
    assert handshake.headers["authorization"] == "Bearer s3cret"
    assert parse_qs(urlsplit(handshake.path).query)["access_token"] == ["s3cret"]


async def test_self_id_comes_from_lifecycle_connect(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _, connection):
        assert connection.self_id == SELF_ID
        assert hub.registry.self_ids() == {SELF_ID}
    assert not any(call["action"] == "get_login_info" for call in impl.calls)


async def test_without_lifecycle_self_id_comes_from_get_login_info() -> None:
    impl = Implementation(self_id=SELF_ID, quirks=Quirks.gocq(lifecycle=False))
    async with forward_pair(impl) as (_hub, _, connection):
        assert connection.self_id == SELF_ID
    assert [call["action"] for call in impl.calls] == ["get_login_info"]


async def test_ids_sent_as_strings_are_understood() -> None:
    impl = Implementation(self_id=SELF_ID, quirks=Quirks.napcat(ids_as_strings=True))
    async with forward_pair(impl) as (_hub, _, connection):
        assert connection.self_id == SELF_ID


async def test_a_dropped_link_reconnects_and_serves_again(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, server, first):
        await server.stop()  # the implementation crashes...
        await wait_until(lambda: first.closed)
        assert hub.registry.action_connection(SELF_ID) is None
        await server.start()  # ...and comes back on the same port
        await wait_until(lambda: hub.registry.action_connection(SELF_ID) not in (None, first))
        second = hub.registry.action_connection(SELF_ID)
        assert second is not None
        response = await hub.requests.send_request(second, "get_status")
        assert response.ok
        assert hub.metrics.get("reconnects") >= 1


async def test_silent_heartbeats_make_the_link_reconnect(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _server, first):
        heartbeats = collect(hub, "meta_event.heartbeat")
        impl.quirks.heartbeat_interval = 0.05  # one heartbeat announcing 50 ms, then silence
        await impl.emit(impl.heartbeat())
        await wait_until(lambda: first.closed)
        assert hub.metrics.get("heartbeat_timeouts", SELF_ID) == 1
        await wait_until(lambda: hub.registry.action_connection(SELF_ID) not in (None, first))
    assert isinstance(heartbeats[0], HeartbeatMetaEvent)


async def test_no_heartbeats_at_all_is_not_a_dead_link(impl: Implementation) -> None:
    async with forward_pair(impl) as (hub, _, connection):
        # The watchdog waits for a first heartbeat before it expects any: this link never sends one.
        response = await hub.requests.send_request(connection, "get_status")
        assert response.ok
        assert not connection.closed
        assert hub.metrics.get("heartbeat_timeouts") == 0


async def test_a_refused_token_is_retried_with_backoff_and_never_registered() -> None:
    impl = Implementation(self_id=SELF_ID, token="right", quirks=Quirks.napcat(auth_rejection="frame"))
    async with forward_ws_server(impl) as server, running_hub(forward_urls=[server.url], access_token="wrong") as hub:
        await wait_until(lambda: len(server.handshakes) >= 3)
        assert hub.registry.self_ids() == set()
        assert hub.metrics.get("reconnects") >= 2
