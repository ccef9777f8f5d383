"""A token bucket per bot for outbound messages: QQ freezes accounts that send too fast, and
NapCat ignores the spec's `_rate_limited` suffix, so the pace is ours to keep."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. `acquire` waits its turn, in order."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: later callers wait behind earlier ones
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
