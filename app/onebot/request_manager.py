"""RequestManager: the brief's sequence, made safe.

    send_request(action, params) -> unique string echo -> Future stored under the connection
    -> frame sent -> the connection reads the response -> EventManager.dispatch_response
    -> handle_response matches the echo -> the Future's result -> the caller gets the data

Pending calls belong to the connection that carried them: when it closes they all fail at
once with ConnectionLost instead of waiting out their timeouts. Every call has a timeout
(ActionTimeout). Late, duplicate and unknown echoes are ignored. NapCat's stream actions answer
with several frames under one echo: chunks are gathered until the final frame.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from app.onebot.connection import Connection
from app.onebot.errors import ActionFailed, ActionTimeout, ConnectionLost, OneBotError
from app.onebot.event_manager import EventManager
from app.onebot.frames import STREAM_CHUNK, STREAM_RESET, ActionResponse, action_frame
from app.onebot.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0


@dataclass(slots=True)
class _Pending:
    action: str
    future: asyncio.Future[ActionResponse]
    chunks: list[Any] = field(default_factory=list)


class RequestManager:
    def __init__(self, events: EventManager, *, default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.default_timeout = default_timeout
        self.metrics: Metrics = events.metrics
        self._pending: dict[int, dict[str, _Pending]] = {}
        # Echoes: a random prefix per manager and a counter, unique across processes and
        # restarts (a late answer to a previous run's call can never match) and cheap per call.
        self._echo_prefix = secrets.token_hex(6)
        self._echo_counter = itertools.count(1)
        events.on_response(self.handle_response)

    @property
    def pending_count(self) -> int:
        return sum(len(calls) for calls in self._pending.values())

    async def send_request(
        self,
        connection: Connection,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> ActionResponse:
        """The successful response (`.data`, and `.chunks` for a stream action), or a typed error."""
        timeout = self.default_timeout if timeout is None else timeout
        if connection.closed:
            raise ConnectionLost(action)
        try:
            if connection.uses_echo:
                response = await self._over_socket(connection, action, params or {}, timeout)
            else:
                response = await connection.exchange(action, params or {}, timeout)
            response.result(action)
        except ActionFailed:
            self.metrics.inc("actions_failed", connection.self_id or "")
            raise
        except ActionTimeout:
            self.metrics.inc("actions_timeout", connection.self_id or "")
            raise
        except ConnectionLost:
            self.metrics.inc("actions_lost", connection.self_id or "")
            raise
        return response

    def handle_response(self, response: ActionResponse, connection: Connection) -> None:
        pending = self._pending.get(connection.id, {}).get(response.echo or "")
        if pending is None or pending.future.done():
            # Late (after its timeout), repeated, or not ours: nobody waits for it.
            self.metrics.inc("responses_unmatched", connection.self_id or "")
            log.debug("onebot response with unknown echo %r ignored", response.echo)
            return
        phase = response.stream_phase
        if phase == STREAM_CHUNK:
            pending.chunks.append(response.data)
            return
        if phase == STREAM_RESET:
            pending.chunks.clear()
            return
        response.chunks = pending.chunks
        pending.future.set_result(response)

    def connection_closed(self, connection: Connection, reason: str = "connection closed") -> int:
        """Fail every call pending on `connection` now; returns how many there were."""
        calls = self._pending.pop(connection.id, {})
        for pending in calls.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionLost(pending.action, reason))
        return len(calls)

    async def _over_socket(
        self, connection: Connection, action: str, params: dict[str, Any], timeout: float
    ) -> ActionResponse:
        echo = f"{self._echo_prefix}{next(self._echo_counter)}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ActionResponse] = loop.create_future()
        calls = self._pending.setdefault(connection.id, {})
        calls[echo] = _Pending(action, future)
        # A timer per call rather than asyncio.timeout(): the same effect, cheaper per call.
        timer = loop.call_later(timeout, _expire, future, action, timeout)
        try:
            await connection.send_frame(action_frame(action, params, echo))
            return await future
        except OneBotError:
            raise
        except (OSError, RuntimeError) as exc:
            raise ConnectionLost(action, f"send failed: {exc}") from None
        finally:
            timer.cancel()
            calls.pop(echo, None)
            if not calls and self._pending.get(connection.id) is calls:
                del self._pending[connection.id]


def _expire(future: asyncio.Future[ActionResponse], action: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(ActionTimeout(action, timeout))
