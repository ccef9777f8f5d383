"""Reverse WebSocket: the implementation connects to `/onebot/v11/ws`.

`X-Self-ID` is required; `X-Client-Role` is `Universal` (also when missing), `API` or `Event`.
The token is checked before any frame is read; a refused peer is closed with 1008 (policy
violation) and a reason it can log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from app.onebot.auth import inbound_refusal
from app.onebot.connection import Connection, Role
from app.onebot.errors import ConnectionLost
from app.onebot.frames import encode

if TYPE_CHECKING:
    from app.onebot.hub import OneBotHub

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008


class ReverseWsConnection(Connection):
    transport = "reverse-ws"

    def __init__(self, websocket: WebSocket, *, role: Role, self_id: int) -> None:
        super().__init__(role=role, self_id=self_id)
        self._websocket = websocket
        self._send_lock = asyncio.Lock()

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if self.closed:
            raise ConnectionLost(str(frame.get("action", "")))
        try:
            async with self._send_lock:
                await self._websocket.send_text(encode(frame))
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise ConnectionLost(str(frame.get("action", "")), f"send failed: {exc!r}") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(RuntimeError, OSError):  # already closed by the peer
            await self._websocket.close(code, reason)


async def serve_reverse_ws(hub: OneBotHub, websocket: WebSocket) -> None:
    refusal = _refusal(hub, websocket)
    await websocket.accept()
    if refusal:
        log.warning("onebot reverse connection from %s refused: %s", _peer(websocket), refusal)
        await websocket.close(POLICY_VIOLATION, refusal)
        return
    self_id = int(websocket.headers["x-self-id"])
    role = Role.from_header(websocket.headers.get("x-client-role")) or Role.UNIVERSAL  # checked by _refusal
    connection = ReverseWsConnection(websocket, role=role, self_id=self_id)
    hub.attach(connection)
    try:
        await _read(hub, websocket, connection)
    finally:
        hub.detach(connection, "reverse connection closed")


async def _read(hub: OneBotHub, websocket: WebSocket, connection: ReverseWsConnection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        await hub.receive(raw, connection)


def _refusal(hub: OneBotHub, websocket: WebSocket) -> str:
    status = inbound_refusal(
        expected_token=hub.config.access_token,
        authorization=websocket.headers.get("authorization"),
        query_token=websocket.query_params.get("access_token"),
        peer=_peer(websocket),
    )
    if status == 401:
        return "access token required"
    if status:
        return "access token rejected" if hub.config.access_token else "only loopback peers without an access token"
    if not (websocket.headers.get("x-self-id") or "").strip().isdigit():
        return "X-Self-ID header required"
    if Role.from_header(websocket.headers.get("x-client-role")) is None:
        return "unknown X-Client-Role"
    return ""


def _peer(websocket: WebSocket) -> str | None:
    return websocket.client.host if websocket.client else None
