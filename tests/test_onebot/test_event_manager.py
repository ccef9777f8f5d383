"""EventManager: isolation between handlers, bounded queues with a written-down overflow
policy, and responses that never wait behind events."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.onebot.connection import Connection, Role
from app.onebot.event_manager import EventManager, Overflow
from app.onebot.events import Event, parse_event
from app.onebot.frames import ActionResponse


def private_message(message_id: int, text: str = "你好") -> Event:
    return parse_event(
        {
            "time": 1732435200,
            "self_id": 10001,
            "post_type": "message",
            "message_type": "private",
            "sub_type": "friend",
            "message_id": message_id,
            "user_id": 42,
            "message": text,
        }
    )


def heartbeat() -> Event:
    return parse_event(
        {"time": 1, "self_id": 10001, "post_type": "meta_event", "meta_event_type": "heartbeat", "interval": 5000}
    )


class Unused(Connection):
    """Stands for the link a response was read from; the EventManager only passes it on."""

    async def send_frame(self, frame: dict[str, object]) -> None:
        raise AssertionError("not used")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        raise AssertionError("not used")


async def test_handlers_receive_events_by_kind_and_prefix() -> None:
    events = EventManager()
    seen: dict[str, list[str]] = {"exact": [], "prefix": [], "all": [], "other": []}

    async def record(name: str, event: Event) -> None:
        seen[name].append(event.kind)

    events.subscribe("message.private", lambda e: record("exact", e))
    events.subscribe("message", lambda e: record("prefix", e))
    events.subscribe("*", lambda e: record("all", e))
    events.subscribe("notice", lambda e: record("other", e))
    events.publish(private_message(1))
    events.publish(heartbeat())
    await events.join()
    assert seen == {
        "exact": ["message.private"],
        "prefix": ["message.private"],
        "all": ["message.private", "meta_event.heartbeat"],
        "other": [],
    }
    await events.close()


async def test_prefix_does_not_match_message_sent() -> None:
    events = EventManager()
    got: list[Event] = []

    async def handler(event: Event) -> None:
        got.append(event)

    events.subscribe("message", handler)
    sent = parse_event(
        {
            "time": 1,
            "self_id": 1,
            "post_type": "message_sent",
            "message_type": "private",
            "message_id": 5,
            "user_id": 2,
            "message": "x",
        }
    )
    assert events.publish(sent) == 0
    await events.close()


async def test_a_failing_handler_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    events = EventManager()
    delivered: list[int] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("handler bug")

    async def healthy(event: Event) -> None:
        delivered.append(event.message_id)  # type: ignore[attr-defined]

    events.subscribe("message", broken)
    events.subscribe("message", healthy)
    with caplog.at_level(logging.ERROR, logger="app.onebot.event_manager"):
        for message_id in (1, 2, 3):
            events.publish(private_message(message_id))
        await events.join()
    assert delivered == [1, 2, 3]
    assert events.metrics.get("handler_errors") == 3
    assert "handler bug" in caplog.text
    await events.close()


async def test_a_slow_handler_does_not_delay_the_others() -> None:
    events = EventManager()
    release = asyncio.Event()
    fast_done = asyncio.Event()

    async def slow(event: Event) -> None:
        await release.wait()

    async def fast(event: Event) -> None:
        fast_done.set()

    events.subscribe("message", slow)
    events.subscribe("message", fast)
    events.publish(private_message(1))
    async with asyncio.timeout(5):
        await fast_done.wait()  # while `slow` still holds its event
    release.set()
    await events.join()
    await events.close()


async def test_a_full_queue_drops_the_newest_event_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    events = EventManager(queue_size=2, overflow=Overflow.DROP_NEWEST)
    release = asyncio.Event()
    handled: list[int] = []

    async def slow(event: Event) -> None:
        await release.wait()
        handled.append(event.message_id)  # type: ignore[attr-defined]

    events.subscribe("message", slow)
    events.publish(private_message(1))
    await asyncio.sleep(0)  # #1 is being handled; the queue is empty
    accepted = [events.publish(private_message(i)) for i in range(2, 7)]
    release.set()
    await events.join()
    assert accepted == [1, 1, 0, 0, 0]
    assert handled == [1, 2, 3]
    assert events.metrics.get("events_dropped") == 3
    assert "dropped message.private" in caplog.text
    await events.close()


async def test_drop_oldest_keeps_the_freshest_events() -> None:
    events = EventManager(queue_size=2, overflow=Overflow.DROP_OLDEST)
    release = asyncio.Event()
    handled: list[int] = []

    async def slow(event: Event) -> None:
        await release.wait()
        handled.append(event.message_id)  # type: ignore[attr-defined]

    events.subscribe("message", slow)
    events.publish(private_message(1))
    await asyncio.sleep(0)  # #1 is being handled; the queue is empty
    for message_id in range(2, 7):
        events.publish(private_message(message_id))
    release.set()
    await events.join()
    assert handled == [1, 5, 6]
    assert events.metrics.get("events_dropped") == 3
    await events.close()


async def test_responses_are_dispatched_at_once_while_the_event_queue_is_full() -> None:
    events = EventManager(queue_size=1)
    blocked = asyncio.Event()
    responses: list[str | None] = []

    async def stuck(event: Event) -> None:
        await blocked.wait()

    events.subscribe("message", stuck)
    events.on_response(lambda response, connection: responses.append(response.echo))
    for message_id in range(1, 4):
        events.publish(private_message(message_id))
    events.dispatch_response(
        ActionResponse.from_frame({"status": "ok", "retcode": 0, "data": None, "echo": "e1"}),
        Unused(role=Role.UNIVERSAL, self_id=1),
    )
    assert responses == ["e1"]  # synchronously, with the queue still full
    blocked.set()
    await events.join()
    await events.close()


async def test_memory_is_bounded_by_the_queue_sizes() -> None:
    events = EventManager(queue_size=10)
    never = asyncio.Event()

    async def stuck(event: Event) -> None:
        await never.wait()

    subscription = events.subscribe("message", stuck)
    for message_id in range(1000):
        events.publish(private_message(message_id))
    assert subscription.queue.qsize() <= 10
    await events.close()
