"""The QQ side of the OneBot fault scenario: the simulator (tests/onebot_sim) connected to the
app over a reverse WebSocket, as NapCat is in production, that can be killed (the TCP connection
aborted, no close frame, as when the implementation's process dies) and brought back.

It keeps a ledger of every action it received and whether its response was written before a
kill, because that is the only case in which the app may rightly send the same message twice.
An action is answered the way the implementations work: the message goes out to QQ first, the
response is written after a short latency, and a kill inside that latency loses the
acknowledgement of a message that did reach QQ.
"""

# `connect` keeps ReverseWsClient's signature, whose waits take a `timeout` (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from tests.onebot_sim import Implementation, ReverseWsClient, encode
from tests.onebot_sim.wslink import WsLink

SENDS = frozenset({"send_private_msg", "send_group_msg", "send_msg"})


@dataclass
class Received:
    """One action frame the simulator read, on its `link`-th connection."""

    action: str
    params: Any
    echo: Any
    link: int
    # The response reached the socket (the kernel's buffer) before any kill: the app gets it.
    answered: bool = False
    # The connection was killed between receiving the action and writing its response.
    cut: bool = False


@dataclass
class AckLedger:
    received: list[Received] = field(default_factory=list)
    # Kills that found response bytes still in the transport's own buffer: those are lost too.
    kills_with_unflushed_bytes: int = 0

    def sends(self) -> list[Received]:
        return [entry for entry in self.received if entry.action in SENDS]


class LedgerLink(WsLink):
    """A simulator link that records each action in the ledger and answers it after
    `ack_latency` seconds (drawn per action), so that a kill can fall between the two."""

    def __init__(
        self,
        impl: Implementation,
        websocket: Any,
        *,
        ledger: AckLedger,
        number: int,
        ack_latency: tuple[float, float],
    ) -> None:
        super().__init__(impl, websocket, answers=True, events=True)
        self.ledger = ledger
        self.number = number
        self.ack_latency = ack_latency
        self.killed = False
        self.in_flight: list[Received] = []  # received, response not written yet
        self._unflushed: list[Received] = []  # response written, maybe still in the transport buffer

    async def _answer(self, message: str | bytes) -> None:
        request = self._parse(message)
        if request is None:
            return
        action, params, echo = request
        entry = Received(action, params, echo, self.number)
        self.ledger.received.append(entry)
        self.in_flight.append(entry)
        try:
            frames = self.impl.handle_action(action, params, echo)  # the message reaches QQ here
            await asyncio.sleep(random.uniform(*self.ack_latency))  # NapCat's time to answer
            for frame in frames:
                if not await self.deliver(encode(frame)) or self.killed:
                    return
        finally:
            self.in_flight.remove(entry)
            entry.cut = self.killed
        self._unflushed.append(entry)
        self._settle()

    def _settle(self) -> None:
        """Responses are written once the transport has handed every byte to the kernel."""
        if self.websocket.transport.get_write_buffer_size() == 0:
            for entry in self._unflushed:
                entry.answered = True
            self._unflushed.clear()

    def kill(self) -> None:
        """Abort the TCP connection now: no close frame, and whatever the transport still
        buffers is gone, as when the implementation's process dies."""
        self._settle()
        if self._unflushed:
            self.ledger.kills_with_unflushed_bytes += 1
        for entry in [*self._unflushed, *self.in_flight]:
            entry.cut = True
        self.killed = True
        self.websocket.transport.abort()


class KillableBot(ReverseWsClient):
    """The simulated bot on a reverse WebSocket to the app: `connect()` again after `kill()`
    opens a new link (the implementation restarted and reconnected)."""

    def __init__(
        self, impl: Implementation, url: str, *, ledger: AckLedger, ack_latency: tuple[float, float] = (0.002, 0.02)
    ) -> None:
        super().__init__(impl, url)
        self.ledger = ledger
        self.ack_latency = ack_latency
        self.links = 0
        self.link: LedgerLink | None = None

    async def connect(self, *, timeout: float = 5.0) -> int:
        self.websocket = await self.open_websocket(timeout)
        self.links += 1
        self.link = LedgerLink(
            self.impl, self.websocket, ledger=self.ledger, number=self.links, ack_latency=self.ack_latency
        )
        self._task = asyncio.create_task(self.link.run())
        await self.impl.changed.wait_for(lambda: self.impl.event_links >= 1, timeout)  # it serves events
        return 101

    @property
    def awaiting_ack(self) -> bool:
        """A message has reached QQ over the current link and its response is not written yet."""
        return self.link is not None and any(entry.action in SENDS for entry in self.link.in_flight)

    async def kill(self) -> None:
        assert self.link is not None
        self.link.kill()
        await self.wait_closed()
