"""Signals between processes over Redis: a commit publishes on a channel, every process listens.

Job workers are woken so (a commit that enqueued: without Redis, other processes find new jobs at
their next poll), and caches are cleared so (`clear_everywhere`: a commit that changed users or
login sessions, SLA policies or categories; without Redis, other processes trust their cache
until it expires)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis

from app.db.session import Database

log = logging.getLogger(__name__)

CHANNEL = "helpdesk:jobs"
AUTH_CHANNEL = "helpdesk:auth-changed"
SLA_CHANNEL = "helpdesk:sla-changed"


def database_channel(redis: Redis, channel: str) -> str:
    """`channel` for the Redis database `redis` uses. Keys belong to a database, pub/sub channels
    to the whole server: deployments that share a Redis server on different database numbers
    would otherwise hear each other's signals and, through the realtime bridge, each other's
    ticket events."""
    return f"{channel}@{redis.connection_pool.connection_kwargs.get('db', 0)}"


class ClearableCache(Protocol):
    on_clear: list[Callable[[], None]]

    def clear(self) -> None: ...  # here and, through on_clear, elsewhere

    def forget(self) -> None: ...  # here only


def clear_everywhere(
    db: Database, models: tuple[type, ...], cache: ClearableCache, redis: Redis | None, *, channel: str, what: str
) -> RedisSignal | None:
    """Clears `cache` after every commit that wrote rows of `models` in this process and, with
    Redis, in every other: returns the signal whose `listen(cache.forget)` the caller runs."""
    db.on_commit_changing(models, cache.clear)
    if redis is None:
        return None
    signal = RedisSignal(redis, channel=channel, what=what)
    cache.on_clear.append(signal.notify)
    return signal


class RedisSignal:
    def __init__(self, redis: Redis, *, channel: str = CHANNEL, what: str = "job wake-up") -> None:
        self.redis = redis
        self.channel = database_channel(redis, channel)
        self.what = what  # for the logs
        self.subscribed = asyncio.Event()
        self._sending: set[asyncio.Task[Any]] = set()

    def notify(self) -> None:
        """A Database commit hook (runs in the event loop's thread): publish without blocking."""
        task = asyncio.get_running_loop().create_task(self._send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self) -> None:
        try:
            await self.redis.publish(self.channel, "1")
        except Exception as exc:  # the other workers still poll
            log.warning("%s publish failed: %s", self.what, type(exc).__name__)

    async def listen(self, wake: Callable[[], None]) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s subscription lost (%s)", self.what, type(exc).__name__)
            self.subscribed.clear()
            await asyncio.sleep(1.0)

    async def aclose(self) -> None:
        for task in list(self._sending):
            with contextlib.suppress(BaseException):
                await task
