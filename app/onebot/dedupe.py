"""Event de-duplication on `(self_id, post_type, message_id | flag)`.

NapCat double-reports some friend requests and go-cqhttp retries HTTP POSTs, so an event that
carries an id can arrive twice. The store is pluggable: this in-memory one is bounded and forgets
after a while; the QQ helpdesk plugs in its database inbox, which also survives restarts and
works across processes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol

from app.onebot.events import Event


class DedupeStore(Protocol):
    async def first_seen(self, key: Hashable, event: Event) -> bool:
        """Record `key`; True the first time, False for a repeat. Called before any handler."""
        ...


class MemoryDedupeStore:
    def __init__(self, *, max_entries: int = 50_000, ttl_seconds: float = 3600.0) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._seen: OrderedDict[Hashable, float] = OrderedDict()

    async def first_seen(self, key: Hashable, event: Event) -> bool:
        now = time.monotonic()
        self._forget_expired(now)
        if key in self._seen:
            return False
        self._seen[key] = now
        if len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True

    def _forget_expired(self, now: float) -> None:
        while self._seen:
            key, seen_at = next(iter(self._seen.items()))
            if now - seen_at < self.ttl_seconds:
                return
            del self._seen[key]
