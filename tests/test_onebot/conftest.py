"""Fixtures for the OneBot library: a hub, and a hub connected to the simulator in each mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from starlette.applications import Starlette

from app.onebot.connection import Connection
from app.onebot.events import Event
from app.onebot.hub import OneBotConfig, OneBotHub
from tests.fakes.server import serving
from tests.onebot_sim import ForwardServer, Implementation, Quirks, forward_ws_server

SELF_ID = 123456789
FRIEND = 345678901
# Fast retries and short waits: tests await events, never sleep out real-world intervals.
TEST_CONFIG = OneBotConfig(
    timeout=5.0, reconnect_min=0.02, reconnect_max=0.2, lifecycle_wait=0.2, send_rate=1000.0, send_burst=1000
)


@asynccontextmanager
async def running_hub(**config: Any) -> AsyncIterator[OneBotHub]:
    hub = OneBotHub(replace(TEST_CONFIG, **config))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


@asynccontextmanager
async def serving_hub(hub: OneBotHub) -> AsyncIterator[str]:
    """The hub's inbound endpoints on a real socket; yields `http://127.0.0.1:<port>`."""
    async with serving(Starlette(routes=hub.routes())) as base_url:
        yield base_url


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/onebot/v11/ws"


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition of the hub's state: the library has no change signal of its own, and
    adding one for tests only would be code production never runs."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110  (see above)
            await asyncio.sleep(0.005)


def collect(hub: OneBotHub, pattern: str = "*") -> list[Event]:
    got: list[Event] = []

    async def handler(event: Event) -> None:
        got.append(event)

    hub.events.subscribe(pattern, handler)
    return got


@pytest.fixture
def impl() -> Implementation:
    return Implementation(self_id=SELF_ID, friends={FRIEND}, quirks=Quirks.napcat())


@asynccontextmanager
async def forward_pair(
    impl: Implementation, **config: Any
) -> AsyncIterator[tuple[OneBotHub, ForwardServer, Connection]]:
    """The simulator's forward server, and a hub connected to it with its bot identified."""
    async with forward_ws_server(impl) as server, running_hub(forward_urls=[server.url], **config) as hub:
        await wait_until(lambda: hub.registry.action_connection(impl.self_id) is not None)
        connection = hub.registry.action_connection(impl.self_id)
        assert connection is not None
        yield hub, server, connection
