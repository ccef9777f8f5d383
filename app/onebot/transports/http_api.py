"""HTTP API: we POST `/<action>` with the params as JSON to the implementation's base URL,
one per bot. No echo: each response comes back on its own request."""

from __future__ import annotations

from typing import Any

import httpx

from app.onebot.connection import Connection, Role
from app.onebot.errors import ActionFailed, ActionTimeout, ConnectionLost, InvalidFrame
from app.onebot.frames import ActionResponse, decode


class HttpApiConnection(Connection):
    transport = "http-api"

    def __init__(self, client: httpx.AsyncClient, base_url: str, *, self_id: int, token: str = "") -> None:
        super().__init__(role=Role.API, self_id=self_id)
        self._client = client
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def uses_echo(self) -> bool:
        return False

    async def send_frame(self, frame: dict[str, Any]) -> None:
        raise NotImplementedError("HTTP API links use exchange()")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Nothing to close: the HTTP client belongs to the hub."""

    async def exchange(self, action: str, params: dict[str, Any], timeout: float) -> ActionResponse:
        try:
            reply = await self._client.post(
                f"{self.base_url}/{action}", json=params, headers=self._headers, timeout=timeout
            )
        except httpx.TimeoutException:
            raise ActionTimeout(action, timeout) from None
        except httpx.TransportError as exc:
            raise ConnectionLost(action, f"HTTP API unreachable: {exc!r}") from None
        if reply.status_code in (401, 403):
            raise ActionFailed(action, reply.status_code, "access token refused by the HTTP API")
        try:
            frame = decode(reply.content)
        except InvalidFrame:
            # go-cqhttp answers an unknown action with a bare 404.
            raise ActionFailed(action, reply.status_code, f"HTTP {reply.status_code} without a JSON body") from None
        return ActionResponse.from_frame(frame)
