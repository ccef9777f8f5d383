"""Fixed-window counters for throttling (login attempts now, more later).

In memory for the single-process default; in Redis when HELPDESK_REDIS_URL is set, so every
process shares the counts.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from redis.asyncio import Redis


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window: int) -> int | None:
        """Count one event; seconds until the window ends if the count now exceeds `limit`."""

    async def blocked_for(self, key: str, *, limit: int) -> int | None:
        """Seconds until the window ends if `limit` events were already counted, else None."""

    async def reset(self, key: str) -> None: ...


class MemoryRateLimiter:
    _PRUNE_AT = 10_000

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}

    async def hit(self, key: str, *, limit: int, window: int) -> int | None:
        now = time.monotonic()
        ends, count = self._windows.get(key, (0.0, 0))
        if ends <= now:
            ends, count = now + window, 0
            if len(self._windows) >= self._PRUNE_AT:
                self._prune(now)
        count += 1
        self._windows[key] = (ends, count)
        return math.ceil(ends - now) if count > limit else None

    async def blocked_for(self, key: str, *, limit: int) -> int | None:
        now = time.monotonic()
        ends, count = self._windows.get(key, (0.0, 0))
        if ends > now and count >= limit:
            return math.ceil(ends - now)
        return None

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, (ends, _) in self._windows.items() if ends <= now]:
            del self._windows[key]


class RedisRateLimiter:
    def __init__(self, redis: Redis, prefix: str = "helpdesk:rl:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def hit(self, key: str, *, limit: int, window: int) -> int | None:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window, nx=True)
            pipe.ttl(name)
            count, _, ttl = await pipe.execute()
        return max(int(ttl), 1) if int(count) > limit else None

    async def blocked_for(self, key: str, *, limit: int) -> int | None:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(name)
            pipe.ttl(name)
            count, ttl = await pipe.execute()
        if count is not None and int(count) >= limit:
            return max(int(ttl), 1)
        return None

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
