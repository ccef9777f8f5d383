"""`OneBotHub`: the library's front door. It ties the EventManager, the RequestManager, the
registry of bots and the transports together, and is what an application creates, starts and
closes.

    hub = OneBotHub(OneBotConfig(access_token="...", forward_urls=["ws://127.0.0.1:3001/"]))
    app.routes.extend(hub.routes())          # reverse WebSocket + HTTP POST endpoints

    @hub.on("message.private")
    async def echo(event: PrivateMessageEvent) -> None:
        await hub.bot(event.self_id).send_private_msg(event.user_id, event.message.plain_text())

    await hub.start()   # connects forward URLs, registers HTTP API bases
    ...
    await hub.close()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError
from starlette.routing import BaseRoute, Route, WebSocketRoute

from app.onebot.bot import Bot
from app.onebot.connection import Connection
from app.onebot.dedupe import DedupeStore, MemoryDedupeStore
from app.onebot.errors import InvalidFrame
from app.onebot.event_manager import EventManager, Overflow, Subscription
from app.onebot.events import Event, UnknownEvent, parse_event
from app.onebot.frames import ActionResponse, decode, is_event
from app.onebot.metrics import Metrics
from app.onebot.ratelimit import TokenBucket
from app.onebot.registry import BotRegistry
from app.onebot.request_manager import RequestManager

log = logging.getLogger(__name__)

REVERSE_WS_PATH = "/onebot/v11/ws"
HTTP_POST_PATH = "/onebot/v11/http"

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class OneBotConfig:
    """Everything the library needs; the application maps its own settings onto this."""

    access_token: str = ""  # checked on inbound links, sent on outbound ones; "" = none
    secret: str = ""  # HTTP POST X-Signature secret, separate from the token
    forward_urls: Sequence[str] = ()
    http_api_urls: Mapping[int, str] = field(default_factory=dict)  # self_id -> base URL
    timeout: float = 30.0  # default per call
    send_rate: float = 1.0  # outbound messages per second per bot
    send_burst: int = 5
    event_queue_size: int = 1024  # per subscription
    overflow: Overflow = Overflow.DROP_NEWEST
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    lifecycle_wait: float = 1.0  # how long a forward link waits for lifecycle.connect
    heartbeat_misses: float = 3.0  # a link is dead after this many missed heartbeat intervals


class OneBotHub:
    def __init__(
        self,
        config: OneBotConfig | None = None,
        *,
        dedupe: DedupeStore | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config or OneBotConfig()
        self.metrics = Metrics()
        self.events = EventManager(
            queue_size=self.config.event_queue_size, overflow=self.config.overflow, metrics=self.metrics
        )
        self.requests = RequestManager(self.events, default_timeout=self.config.timeout)
        self.registry = BotRegistry()
        self.dedupe: DedupeStore = dedupe or MemoryDedupeStore()
        self._http = http
        self._owns_http = http is None
        self._buckets: dict[int, TokenBucket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._attach_listeners: list[Callable[[Connection], None]] = []

    # --- what applications use --------------------------------------------------------------

    def bot(self, self_id: int) -> Bot:
        return Bot(self, self_id)

    def on(self, pattern: str, **options: Any) -> Callable[[Callable[[E], Awaitable[None]]], Subscription]:
        """Decorator form of `events.subscribe` (options: queue_size, concurrency, overflow)."""

        def register(handler: Callable[[E], Awaitable[None]]) -> Subscription:
            # A handler typed for one event class (PrivateMessageEvent) is not, to mypy, a handler
            # of every Event; the pattern is what guarantees the class it receives.
            return self.events.subscribe(pattern, handler, **options)  # type: ignore[arg-type]

        return register

    def on_attach(self, listener: Callable[[Connection], None]) -> None:
        """Call `listener` whenever a bot's connection is registered (e.g. to wake a job worker
        holding messages for that bot)."""
        self._attach_listeners.append(listener)

    def routes(self) -> list[BaseRoute]:
        """The inbound endpoints, to add to a Starlette/FastAPI app."""
        from app.onebot.transports.http_post import receive_http_post
        from app.onebot.transports.reverse_ws import serve_reverse_ws

        async def reverse_ws(websocket: Any) -> None:
            await serve_reverse_ws(self, websocket)

        async def http_post(request: Any) -> Any:
            return await receive_http_post(self, request)

        return [
            WebSocketRoute(REVERSE_WS_PATH, reverse_ws, name="onebot_reverse_ws"),
            Route(HTTP_POST_PATH, http_post, methods=["POST"], name="onebot_http_post"),
        ]

    async def start(self, *, connect_forward: bool = True) -> None:
        """Register the HTTP API bases and connect the forward URLs (unless an application
        elects who connects them: see `connect_forward`)."""
        from app.onebot.transports.http_api import HttpApiConnection

        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        for self_id, base_url in self.config.http_api_urls.items():
            self.attach(HttpApiConnection(self._http, base_url, self_id=self_id, token=self.config.access_token))
        if connect_forward:
            for url in self.config.forward_urls:
                self.connect_forward(url)

    def connect_forward(self, url: str) -> asyncio.Task[None]:
        """Keep a forward WebSocket to `url` connected until the task is cancelled (or the hub
        closes); cancelling it closes the link and fails its pending calls."""
        from app.onebot.transports.forward_ws import ForwardWsClient

        task = asyncio.create_task(ForwardWsClient(self, url).run_forever(), name=f"onebot-forward:{url}")
        self._tasks.append(task)
        task.add_done_callback(lambda done: self._tasks.remove(done) if done in self._tasks else None)
        return task

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for connection in self.registry.connections():
            await connection.close(1001, "going away")
            self.detach(connection, "hub closed")
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self.events.close()
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def bucket(self, self_id: int) -> TokenBucket:
        bucket = self._buckets.get(self_id)
        if bucket is None:
            bucket = self._buckets[self_id] = TokenBucket(self.config.send_rate, self.config.send_burst)
        return bucket

    # --- what transports call ---------------------------------------------------------------

    def attach(self, connection: Connection) -> None:
        """Register a connection whose self_id is known, replacing one with the same key."""
        replaced = self.registry.register(connection)
        self.metrics.inc("connects", connection.self_id or "")
        log.info("onebot %r connected", connection)
        if replaced is not None:
            self.metrics.inc("replaced", connection.self_id or "")
            log.info("onebot %r replaced by %r", replaced, connection)
            self._drop(replaced, "replaced by a new connection")
        for listener in self._attach_listeners:
            try:
                listener(connection)
            except Exception:
                log.exception("onebot attach listener %r failed", listener)

    def detach(self, connection: Connection, reason: str = "connection closed") -> None:
        """The link is gone: fail its pending calls now and forget it (if not replaced)."""
        connection.closed = True
        failed = self.requests.connection_closed(connection, reason)
        if self.registry.unregister(connection) or failed:
            log.info("onebot %r closed (%s); %d pending calls failed", connection, reason, failed)

    async def receive(self, raw: str | bytes, connection: Connection) -> None:
        """One frame read from a socket: a response is dispatched at once, an event ingested."""
        self.metrics.inc("frames_in", connection.self_id or "")
        try:
            frame = decode(raw)
        except InvalidFrame as exc:
            self.metrics.inc("frames_invalid", connection.self_id or "")
            log.warning("onebot skipped a frame on %r (%d bytes): %s", connection, len(raw), exc)
            return
        if not is_event(frame):
            self.events.dispatch_response(ActionResponse.from_frame(frame), connection)
            return
        try:
            await self.ingest(frame, connection=connection)
        except Exception:
            # The dedupe store failed (a database down): the link stays up for the next events.
            self.metrics.inc("events_failed", connection.self_id or "")
            log.exception("onebot could not ingest an event on %r", connection)

    async def ingest(
        self, frame: dict[str, Any], *, connection: Connection | None = None, self_id: int | None = None
    ) -> Event | None:
        """Parse, de-duplicate and publish one event; None when it was skipped."""
        if self_id is not None and frame.get("self_id") in (None, ""):
            frame = {**frame, "self_id": self_id}
        try:
            event = parse_event(frame)
        except ValidationError as exc:
            self.metrics.inc("events_unparsable", frame.get("self_id") or "")
            log.warning(
                "onebot skipped an unparsable %s event: %s",
                frame.get("post_type"),
                exc.errors(include_url=False, include_input=False),
            )
            return None
        self.metrics.inc("events_in", event.self_id)
        if isinstance(event, UnknownEvent):
            # Rule 7: logged. Still published: an application may subscribe to its kind.
            log.info("onebot got an event of unknown type %s", event.kind)
        if connection is not None:
            self._observe(connection, event)
        key = event.dedupe_key
        if key is not None and not await self.dedupe.first_seen(key, event):
            self.metrics.inc("events_duplicate", event.self_id)
            log.info("onebot skipped a duplicate %s %s", event.kind, key)
            return None
        self.events.publish(event)
        return event

    # --- internals --------------------------------------------------------------------------

    def _observe(self, connection: Connection, event: Event) -> None:
        if connection.self_id is None and event.self_id:
            # A forward link learns its bot from the first event (lifecycle.connect, normally).
            connection.self_id = event.self_id
            self.attach(connection)
        connection.observe(event)

    def _drop(self, connection: Connection, reason: str) -> None:
        self.detach(connection, reason)
        task = asyncio.create_task(connection.close(1000, reason), name=f"onebot-close:{connection.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
