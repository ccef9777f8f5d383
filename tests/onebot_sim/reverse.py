"""Reverse WebSocket: the implementation connects to our endpoint (`/onebot/v11/ws`).

Handshake headers as the implementations send them: `X-Self-ID`, `X-Client-Role` (go-cqhttp
sends Universal, or API and Event on two separate links; NapCat always Universal),
`Authorization: <scheme> <token>` (go-cqhttp `Token` and only with a token; NapCat `Bearer`, and
`Bearer ` even with none) and `User-Agent` (NapCat `OneBot/11`, go-cqhttp `CQHttp/4.15.0`).
"""

# Waits take a `timeout` on purpose: a test helper that can never hang is the point (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from tests.onebot_sim.forward import MAX_FRAME_BYTES
from tests.onebot_sim.implementation import Implementation
from tests.onebot_sim.wslink import WsLink

Role = Literal["Universal", "API", "Event"]


class ReverseWsClient:
    """One reverse WebSocket link of `impl`. `role=None` sends no X-Client-Role (the spec says
    Universal then); `token=None` uses `impl.token`; `self_id_header=False` leaves X-Self-ID out."""

    def __init__(
        self,
        impl: Implementation,
        url: str,
        *,
        role: Role | None = "Universal",
        token: str | None = None,
        self_id_header: bool = True,
    ) -> None:
        self.impl = impl
        self.url = url
        self.role = role
        self.token = impl.token if token is None else token
        self.self_id_header = self_id_header
        self.refused_status: int | None = None
        self.websocket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The handshake headers it sends (User-Agent aside)."""
        headers = {}
        if self.self_id_header:
            headers["X-Self-ID"] = str(self.impl.self_id)
        if self.role is not None:
            headers["X-Client-Role"] = self.role
        if self.token:
            headers["Authorization"] = f"{self.impl.quirks.auth_scheme} {self.token}"
        elif self.impl.quirks.empty_bearer:
            headers["Authorization"] = "Bearer "
        return headers

    @property
    def connected(self) -> bool:
        return self.websocket is not None and self.websocket.state is State.OPEN

    @property
    def close_code(self) -> int | None:
        """The close code received (1006 when the TCP connection was lost); None while open."""
        return self.websocket.close_code if self.websocket is not None else None

    @property
    def close_reason(self) -> str | None:
        return self.websocket.close_reason if self.websocket is not None else None

    async def connect(self, *, timeout: float = 5.0) -> int:
        """Open the link: 101 once upgraded (then it serves in the background), or the HTTP
        status the server refused with (also in `refused_status`)."""
        try:
            self.websocket = await self.open_websocket(timeout)
        except InvalidStatus as exc:
            self.refused_status = exc.response.status_code
            return self.refused_status
        link = WsLink(self.impl, self.websocket, answers=self.role != "Event", events=self.role != "API")
        self._task = asyncio.create_task(link.run())
        return 101

    async def open_websocket(self, timeout: float) -> ClientConnection:
        """The upgraded connection, as this implementation opens it (headers, user agent)."""
        return await connect(
            self.url,
            additional_headers=self.headers,
            user_agent_header=self.impl.quirks.user_agent,
            open_timeout=timeout,
            ping_interval=None,
            close_timeout=2,
            compression=None,
            max_size=MAX_FRAME_BYTES,
            proxy=None,
        )

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Until the link is closed (by either side); returns the close code."""
        if self.websocket is None:
            return None
        async with asyncio.timeout(timeout):
            await self.websocket.wait_closed()
            if self._task is not None:
                await self._task
        return self.close_code

    async def close(self, code: int = 1000) -> None:
        """A clean close (close frame with `code`)."""
        if self.websocket is not None:
            await self.websocket.close(code)
            await self.wait_closed()

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a crashed implementation does."""
        if self.websocket is not None:
            self.websocket.transport.abort()
            await self.wait_closed()

    async def __aenter__(self) -> ReverseWsClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
