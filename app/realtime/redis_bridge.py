"""Fan-out across processes: frames published after commit go to Redis; every process's
listener hands other processes' frames to its local bus.

If the subscription breaks, every local stream is closed (1012): frames may have been missed,
so clients reconnect and resume from the timeline rather than silently losing events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import asdict
from typing import Any

from redis.asyncio import Redis

from app.jobs.wake import database_channel
from app.realtime.bus import CLOSE_RESUME, EventBus, Frame

log = logging.getLogger(__name__)

CHANNEL = "helpdesk:ticket-events"


class RedisBridge:
    def __init__(self, redis: Redis, bus: EventBus, *, channel: str = CHANNEL) -> None:
        self.redis = redis
        self.bus = bus
        self.channel = database_channel(redis, channel)
        self.origin = uuid.uuid4().hex
        self.subscribed = asyncio.Event()
        self._sending: set[asyncio.Task[Any]] = set()

    def publish(self, frames: list[Frame]) -> None:
        """Called after a commit (in the event loop's thread): send without blocking the commit."""
        payload = json.dumps({"origin": self.origin, "frames": [asdict(f) for f in frames]}, ensure_ascii=False)
        task = asyncio.get_running_loop().create_task(self._send(payload))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, payload: str) -> None:
        try:
            await self.redis.publish(self.channel, payload)
        except Exception as exc:  # other processes' clients will resume from the timeline
            log.warning("realtime publish to Redis failed: %s", type(exc).__name__)

    async def run(self) -> None:
        """Listen until cancelled, resubscribing after a failure (closing local streams each time)."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("realtime Redis subscription lost (%s); closing streams", type(exc).__name__)
            self.subscribed.clear()
            self.bus.close_all(CLOSE_RESUME)
            await asyncio.sleep(1.0)

    def _deliver(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
            if message.get("origin") == self.origin:
                return  # our own frames reached the local bus directly
            frames = [Frame(**item) for item in message["frames"]]
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("skipped a malformed realtime message: %s", type(exc).__name__)
            return
        self.bus.publish(frames)

    async def aclose(self) -> None:
        for task in list(self._sending):
            with contextlib.suppress(BaseException):
                await task
