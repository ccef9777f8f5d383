"""EventManager: publish/subscribe for events, and immediate dispatch of action responses.

Events are routed by `event.kind` (`message.private`, `notice.group_increase`,
`meta_event.heartbeat`...). A subscription's pattern is a kind, a prefix of one (`message`
receives `message.private` and `message.group`, never `message_sent.*`) or `*`.

Isolation and back-pressure. Every subscription has its own bounded queue and its own worker
task(s), so one slow or failing handler neither delays nor breaks the others, and memory is
bounded by the sum of the queue sizes. `publish` never blocks: it is called from a connection's
reader, and a reader that waited for queue space would stop reading the responses that handlers
are awaiting (the deadlock rule 1 of ONEBOT.md forbids).

Overflow policy, written down: when a subscription's queue is full, the event that does not fit
is dropped for that subscription (`drop_newest`, the default: the queue keeps arrival order) or
the oldest queued event is dropped to make room (`drop_oldest`: the freshest events win). Either
way the drop is logged with the event's kind and dedupe key and counted (`events_dropped`).
A consumer that must lose nothing persists what it needs in its dedupe store, which runs before
`publish` (the QQ helpdesk's inbox), and keeps its handler short.

Action responses never enter a queue: `dispatch_response` calls the response handlers (the
RequestManager) synchronously, the moment the frame is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from app.onebot.metrics import Metrics

if TYPE_CHECKING:
    from app.onebot.connection import Connection
    from app.onebot.events import Event
    from app.onebot.frames import ActionResponse

log = logging.getLogger(__name__)

EventHandler = Callable[["Event"], Awaitable[None]]
ResponseHandler = Callable[["ActionResponse", "Connection"], None]


class Overflow(StrEnum):
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"


class Subscription:
    def __init__(
        self, pattern: str, handler: EventHandler, *, queue_size: int, concurrency: int, overflow: Overflow
    ) -> None:
        self.pattern = pattern
        self.handler = handler
        self.overflow = overflow
        self.concurrency = concurrency
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_size)
        self.workers: list[asyncio.Task[None]] = []

    def matches(self, kind: str) -> bool:
        return self.pattern in ("*", kind) or kind.startswith(self.pattern + ".")

    def __repr__(self) -> str:
        return f"<Subscription {self.pattern!r} {getattr(self.handler, '__qualname__', self.handler)!r}>"


class EventManager:
    def __init__(
        self,
        *,
        queue_size: int = 1024,
        overflow: Overflow = Overflow.DROP_NEWEST,
        metrics: Metrics | None = None,
    ) -> None:
        self.queue_size = queue_size
        self.overflow = overflow
        self.metrics = metrics or Metrics()
        self._subscriptions: list[Subscription] = []
        self._response_handlers: list[ResponseHandler] = []
        self._closed = False

    # --- events -----------------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        handler: EventHandler,
        *,
        queue_size: int | None = None,
        concurrency: int = 1,
        overflow: Overflow | None = None,
    ) -> Subscription:
        """`concurrency` > 1 runs that many handler calls at once (arrival order is then lost)."""
        subscription = Subscription(
            pattern,
            handler,
            queue_size=queue_size or self.queue_size,
            concurrency=max(1, concurrency),
            overflow=overflow or self.overflow,
        )
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        for task in subscription.workers:
            task.cancel()

    def publish(self, event: Event) -> int:
        """Queue `event` for every matching subscription; returns how many took it. Never blocks."""
        if self._closed:
            return 0
        kind = event.kind
        accepted = 0
        for subscription in self._subscriptions:
            if subscription.matches(kind):
                self._start_workers(subscription)
                accepted += self._offer(subscription, event)
        return accepted

    async def join(self) -> None:
        """Wait until every queued event has been handled (tests, benchmarks, shutdown)."""
        for subscription in list(self._subscriptions):
            await subscription.queue.join()

    async def close(self) -> None:
        self._closed = True
        tasks = [task for subscription in self._subscriptions for task in subscription.workers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for subscription in self._subscriptions:
            subscription.workers.clear()

    # --- responses --------------------------------------------------------------------------

    def on_response(self, handler: ResponseHandler) -> None:
        self._response_handlers.append(handler)

    def dispatch_response(self, response: ActionResponse, connection: Connection) -> None:
        for handler in self._response_handlers:
            try:
                handler(response, connection)
            except Exception:
                log.exception("onebot response handler %r failed", handler)

    # --- internals --------------------------------------------------------------------------

    def _offer(self, subscription: Subscription, event: Event) -> int:
        queue = subscription.queue
        if queue.full() and subscription.overflow is Overflow.DROP_OLDEST:
            dropped = queue.get_nowait()
            queue.task_done()
            self._count_drop(subscription, dropped)
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            self._count_drop(subscription, event)
            return 0
        return 1

    def _count_drop(self, subscription: Subscription, event: Event) -> None:
        self.metrics.inc("events_dropped", event.self_id)
        log.warning(
            "onebot event queue full for %r: dropped %s %s (policy %s)",
            subscription.pattern,
            event.kind,
            event.dedupe_key,
            subscription.overflow,
        )

    def _start_workers(self, subscription: Subscription) -> None:
        if subscription.workers:
            return
        for index in range(subscription.concurrency):
            name = f"onebot-handler:{subscription.pattern}:{index}"
            subscription.workers.append(asyncio.create_task(self._consume(subscription), name=name))

    async def _consume(self, subscription: Subscription) -> None:
        queue = subscription.queue
        while True:
            event = await queue.get()
            try:
                await subscription.handler(event)
            except Exception:
                # Rule 7: one handler's failure is logged and stops neither the others nor the link.
                self.metrics.inc("handler_errors", event.self_id)
                log.exception("onebot handler %r failed on %s", subscription, event.kind)
            finally:
                queue.task_done()
