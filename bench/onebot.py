"""OneBot overhead, printed: round trips of `send_request` and event ingest.

    make bench            (or: .venv/bin/python -m bench.onebot [--seconds 3])

Round trips run against the simulator's forward WebSocket server on loopback, with 1 and with
100 concurrent callers, beside a raw `websockets` loop talking to the same server in the same
run (the ceiling: one reader, a dict of futures, nothing else). Both sides pay the simulator's
cost per action, so the ratio is what our RequestManager adds. Event ingest feeds encoded
message events to `hub.receive` (decode, parse, de-duplicate, publish) and waits until a no-op
handler has seen them all; beside it, `json.loads` alone on the same frames.

Nothing here asserts: speed is measured and printed, never checked against a wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import connect

from app.onebot.events import Event
from app.onebot.hub import OneBotConfig, OneBotHub
from tests.onebot_sim import Implementation, Quirks, forward_ws_server

SELF_ID = 123456789
ACTION = "get_status"


async def rate(worker: Callable[[], Awaitable[None]], callers: int, seconds: float) -> float:
    """Calls per second of `worker` run by `callers` concurrent loops for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await worker()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(callers)))
    return done / (time.perf_counter() - started)


async def raw_round_trips(url: str, callers: int, seconds: float) -> float:
    """The ceiling: the least code that matches responses to concurrent callers."""
    async with connect(url, compression=None, ping_interval=None) as websocket:
        futures: dict[str, asyncio.Future[Any]] = {}
        echoes = map(str, itertools.count())

        async def read() -> None:
            async for raw in websocket:
                future = futures.pop(json.loads(raw).get("echo"), None)
                if future is not None:
                    future.set_result(None)

        reader = asyncio.create_task(read())

        async def call() -> None:
            echo = next(echoes)
            future = futures[echo] = asyncio.get_running_loop().create_future()
            await websocket.send(json.dumps({"action": ACTION, "params": {}, "echo": echo}))
            await future

        try:
            return await rate(call, callers, seconds)
        finally:
            reader.cancel()


async def hub_round_trips(hub: OneBotHub, callers: int, seconds: float) -> float:
    connection = hub.registry.action_connection(SELF_ID)
    assert connection is not None

    async def call() -> None:
        await hub.requests.send_request(connection, ACTION)

    return await rate(call, callers, seconds)


def message_frames(count: int, *, first_id: int) -> list[str]:
    """Encoded private message events with distinct ids (repeats would be de-duplicated)."""
    impl = Implementation(self_id=SELF_ID, quirks=Quirks.napcat())
    return [
        json.dumps(impl.private_message(345678901, f"电脑蓝屏了 {n}", message_id=first_id + n), ensure_ascii=False)
        for n in range(count)
    ]


async def ingest_rate(hub: OneBotHub, frames: list[str]) -> float:
    connection = hub.registry.action_connection(SELF_ID)
    assert connection is not None
    seen = 0

    async def no_op(event: Event) -> None:
        nonlocal seen
        seen += 1

    subscription = hub.events.subscribe("message.private", no_op, queue_size=len(frames))
    started = time.perf_counter()
    for raw in frames:
        await hub.receive(raw, connection)
    await hub.events.join()
    elapsed = time.perf_counter() - started
    hub.events.unsubscribe(subscription)
    assert seen == len(frames)
    return len(frames) / elapsed


def decode_rate(frames: list[str]) -> float:
    started = time.perf_counter()
    for raw in frames:
        json.loads(raw)
    return len(frames) / (time.perf_counter() - started)


async def main(seconds: float, events: int) -> None:
    impl = Implementation(self_id=SELF_ID, quirks=Quirks.napcat())
    print(f"# OneBot benchmark ({platform.python_implementation()} {platform.python_version()}, {seconds:g} s per run)")
    async with forward_ws_server(impl) as server:
        hub = OneBotHub(OneBotConfig(forward_urls=[server.url], ping_interval=None, send_burst=1_000_000))
        identified = asyncio.Event()

        async def on_connect(event: Event) -> None:
            identified.set()  # the link is registered before its lifecycle event is published

        hub.events.subscribe("meta_event.lifecycle", on_connect)
        await hub.start()
        try:
            async with asyncio.timeout(10):
                await identified.wait()
            print("\n| round trips/s | raw websockets loop | send_request | ratio |")
            print("|---|---:|---:|---:|")
            for callers in (1, 100):
                await raw_round_trips(server.url, callers, seconds / 5)  # warm up both paths
                await hub_round_trips(hub, callers, seconds / 5)
                raw = await raw_round_trips(server.url, callers, seconds)
                ours = await hub_round_trips(hub, callers, seconds)
                print(f"| {callers} caller{'s' if callers > 1 else ''} | {raw:,.0f} | {ours:,.0f} | {ours / raw:.2f} |")

            await ingest_rate(hub, message_frames(1000, first_id=1))  # warm up
            frames = message_frames(events, first_id=10_000)
            ingest = await ingest_rate(hub, frames)
            decode = decode_rate(frames)
            print(f"\n| event ingest/s ({events:,} messages) | json.loads only | hub.receive → no-op handler | ratio |")
            print("|---|---:|---:|---:|")
            print(f"| private messages | {decode:,.0f} | {ingest:,.0f} | {ingest / decode:.2f} |")
        finally:
            await hub.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--events", type=int, default=20_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.events))
