"""What an implementation does on one open WebSocket, whichever side opened it.

It greets with lifecycle/connect, sends heartbeats, pushes events, and answers each action
frame in a task of its own (NapCat and go-cqhttp both answer concurrently, so a slow action
does not hold up the next one). A frame that is not JSON gets what the flavor sends: NapCat
answers `retcode 1400 "json解析失败,请检查数据格式"` with a null echo; go-cqhttp reads an empty
action name and answers "API_NOT_FOUND" without an echo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from tests.onebot_sim import responses
from tests.onebot_sim.implementation import DropConnection, Implementation, encode
from tests.onebot_sim.responses import NO_ECHO, ActionFailure

log = logging.getLogger(__name__)


class WsLink:
    """One WebSocket as the implementation drives it. `answers`: it carries actions (roles
    Universal and API); `events`: it carries events (Universal and Event)."""

    def __init__(self, impl: Implementation, websocket: Connection, *, answers: bool, events: bool) -> None:
        self.impl = impl
        self.websocket = websocket
        self.answers = answers
        self.events = events
        self._tasks: set[asyncio.Task[None]] = set()

    async def deliver(self, text: str) -> bool:
        try:
            await self.websocket.send(text)
        except ConnectionClosed:
            return False
        return True

    async def run(self) -> None:
        """Serve the link until it closes."""
        if self.events:
            self.impl.attach(self)
            if self.impl.quirks.lifecycle:
                await self.deliver(encode(self.impl.lifecycle_connect()))
            if self.impl.quirks.heartbeat_interval:
                self._spawn(self._heartbeats(self.impl.quirks.heartbeat_interval))
        try:
            async for message in self.websocket:
                if self.answers:
                    self._spawn(self._answer(message))
        except ConnectionClosed:
            pass  # dropped (by the peer or by drop_next): the implementation just forgets the link
        finally:
            self.impl.detach(self)
            await self._cancel_tasks()

    def drop(self, close_code: int | None = None) -> None:
        """Abort the TCP connection (no close frame), or start a close with `close_code`."""
        if close_code is None:
            self.websocket.transport.abort()
        else:
            self._spawn(self.websocket.close(close_code, "dropped by the simulator"))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not await self.deliver(encode(self.impl.heartbeat())):
                return

    async def _answer(self, message: str | bytes) -> None:
        request = self._parse(message)
        if request is None:
            return
        action, params, echo = request
        try:
            frames = await self.impl.respond(action, params, echo)
        except DropConnection as drop:
            self.drop(drop.close_code)
            return
        for frame in frames:
            if not await self.deliver(encode(frame)):
                return
        await self.impl.flush_followups()

    def _parse(self, message: str | bytes) -> tuple[str, Any, Any] | None:
        try:
            payload = json.loads(message)
        except ValueError:
            self.impl.bad_frames.append(message)
            self._spawn(self._reject_garbage())
            return None
        if not isinstance(payload, dict):
            payload = {}
        action = payload.get("action")
        params = payload.get("params")
        return (
            (action if isinstance(action, str) else ""),
            ({} if params is None else params),
            payload.get("echo", NO_ECHO),
        )

    async def _reject_garbage(self) -> None:
        quirks = self.impl.quirks
        if quirks.flavor == "gocq":
            failure = responses.unknown_action("", quirks)
        else:
            failure = ActionFailure("bad_params", "json解析失败,请检查数据格式")
        log.debug("onebot sim: a frame that is not JSON")
        await self.deliver(encode(responses.failed(failure, NO_ECHO, quirks, over_http=False)))
