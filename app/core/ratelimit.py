"""Fixed-window counters for throttling (login attempts, QQ binding codes, the assistant).

In memory for the single-process default; in Redis when HELPDESK_REDIS_URL is set, so every
process shares the counts.

A limit that counts only failures is kept by counting first and refunding on success (`hit`,
then `refund`), never by checking and counting afterwards: concurrent attempts would all pass
the check before any of them counted (the QQ bot handles one user's messages in parallel).
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from redis.asyncio import Redis


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window: int) -> int | None:
        """Count one event; seconds until the window ends if the count now exceeds `limit`."""

    async def refund(self, key: str) -> None:
        """Takes back one event counted in the current window (an attempt that succeeded)."""

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

    async def refund(self, key: str) -> None:
        ends, count = self._windows.get(key, (0.0, 0))
        if ends > time.monotonic() and count > 0:
            self._windows[key] = (ends, count - 1)

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, (ends, _) in self._windows.items() if ends <= now]:
            del self._windows[key]


# Decrements only a live, positive counter: a bare DECR on an expired key would create one
# without an expiry, holding -1 forever.
_REFUND = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
return count
"""


class RedisRateLimiter:
    def __init__(self, redis: Redis, prefix: str = "helpdesk:rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._refund = redis.register_script(_REFUND)

    async def hit(self, key: str, *, limit: int, window: int) -> int | None:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window, nx=True)
            pipe.ttl(name)
            count, _, ttl = await pipe.execute()
        return max(int(ttl), 1) if int(count) > limit else None

    async def refund(self, key: str) -> None:
        await self._refund(keys=[self._prefix + key])

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
