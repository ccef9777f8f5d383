"""Forward WebSocket: we connect to the implementation (NapCat's default port is 3001).

The token goes in the header and in `?access_token=` (implementations read one or the other).
A lost link is retried with exponential backoff and jitter, from `reconnect_min` (1 s) up to
`reconnect_max` (60 s). Dead links are found by WebSocket pings and, once heartbeats have been
seen, by a watchdog that gives up after `heartbeat_misses` missed intervals (heartbeats may be
off or late, so nothing is expected before the first one). The bot's `self_id` comes from
`lifecycle.connect` (or any event); implementations that never send one are asked
`get_login_info`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from app.onebot.connection import Connection, Role
from app.onebot.errors import ConnectionLost, OneBotError
from app.onebot.events import Event
from app.onebot.frames import encode

if TYPE_CHECKING:
    from app.onebot.hub import OneBotHub

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 32 * 1024 * 1024  # base64 images and files ride in frames
HEARTBEAT_META = "meta_event.heartbeat"


class ForwardWsConnection(Connection):
    transport = "forward-ws"

    def __init__(self, websocket: ClientConnection, url: str) -> None:
        super().__init__(role=Role.UNIVERSAL)
        self.url = url
        self._websocket = websocket
        self.identified = asyncio.Event()
        self.heartbeat_interval: float | None = None  # seconds, once a heartbeat was seen
        self.last_heartbeat = 0.0

    async def send_frame(self, frame: dict[str, Any]) -> None:
        try:
            await self._websocket.send(encode(frame))
        except ConnectionClosed as exc:
            raise ConnectionLost(str(frame.get("action", "")), f"connection closed: {exc}") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._websocket.close(code, reason)

    def observe(self, event: Event) -> None:
        if self.self_id is not None:
            self.identified.set()
        if event.kind == HEARTBEAT_META:
            interval = getattr(event, "interval", 0) or 0
            if interval > 0:
                self.heartbeat_interval = interval / 1000  # the spec sends milliseconds
            self.last_heartbeat = time.monotonic()


class ForwardWsClient:
    def __init__(self, hub: OneBotHub, url: str) -> None:
        self.hub = hub
        self.url = url
        self.connection: ForwardWsConnection | None = None
        self.connected = asyncio.Event()

    async def run_forever(self) -> None:
        attempt = 0
        while True:
            identified = False
            try:
                async with connect(
                    _with_token(self.url, self.hub.config.access_token),
                    additional_headers=_auth_header(self.hub.config.access_token),
                    ping_interval=self.hub.config.ping_interval,
                    ping_timeout=self.hub.config.ping_timeout,
                    close_timeout=5,
                    max_size=MAX_FRAME_BYTES,
                    open_timeout=10,
                ) as websocket:
                    identified = await self._session(websocket)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                log.warning("onebot forward link %s failed: %r", _safe(self.url), exc)
            # Only a link that got as far as knowing its bot resets the backoff: NapCat accepts
            # a wrong token's upgrade and closes after one frame, which must not loop every second.
            attempt = 1 if identified else attempt + 1
            self.hub.metrics.inc("reconnects", _safe(self.url))
            await asyncio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        config = self.hub.config
        ceiling = min(config.reconnect_max, config.reconnect_min * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311  (jitter, not a secret)

    async def _session(self, websocket: ClientConnection) -> bool:
        """Serve one open link until it closes; True if its bot became known."""
        connection = ForwardWsConnection(websocket, self.url)
        self.connection = connection
        log.info("onebot forward link %s open", _safe(self.url))
        helpers = [
            asyncio.create_task(self._identify(connection), name=f"onebot-identify:{connection.id}"),
            asyncio.create_task(self._watch_heartbeats(connection), name=f"onebot-watchdog:{connection.id}"),
        ]
        self.connected.set()
        try:
            async for raw in websocket:
                await self.hub.receive(raw, connection)
        except ConnectionClosed as exc:
            log.warning("onebot forward link %s lost: %s", _safe(self.url), exc)
        finally:
            self.connected.clear()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.hub.detach(connection, "forward connection closed")
        return connection.self_id is not None

    async def _identify(self, connection: ForwardWsConnection) -> None:
        try:
            async with asyncio.timeout(self.hub.config.lifecycle_wait):
                await connection.identified.wait()
            return
        except TimeoutError:
            pass
        if connection.self_id is not None:
            return
        try:
            response = await self.hub.requests.send_request(connection, "get_login_info")
        except OneBotError as exc:
            log.warning("onebot forward link %s: get_login_info failed: %s", _safe(self.url), exc)
            await connection.close(1011, "cannot identify the bot")
            return
        user_id = response.data.get("user_id") if isinstance(response.data, dict) else None
        if connection.self_id is None and str(user_id).isdigit():
            connection.self_id = int(str(user_id))
            self.hub.attach(connection)

    async def _watch_heartbeats(self, connection: ForwardWsConnection) -> None:
        misses = self.hub.config.heartbeat_misses
        while True:
            interval = connection.heartbeat_interval
            await asyncio.sleep(interval / 2 if interval else 1.0)
            if interval is None:
                continue
            silent = time.monotonic() - connection.last_heartbeat
            if silent > misses * interval:
                self.hub.metrics.inc("heartbeat_timeouts", connection.self_id or "")
                log.warning("onebot forward link %s: no heartbeat for %.1f s, reconnecting", _safe(self.url), silent)
                await connection.close(1011, "heartbeat timeout")
                return


def _auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _with_token(url: str, token: str) -> str:
    if not token:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "access_token"] + [("access_token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _safe(url: str) -> str:
    """The URL without its query (which may carry the token) for logs and metric labels."""
    return urlunsplit(urlsplit(url)._replace(query=""))
