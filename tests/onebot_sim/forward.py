"""Forward WebSocket: the implementation is the server and our client connects to it.

Paths as go-cqhttp serves them: `/` is universal (events + actions), `/api` actions only,
`/event` events only (NapCat knows `/api` and treats every other path as `/`). With a token,
a handshake must present it as `Authorization: Bearer <t>`, `Authorization: Token <t>` or
`?access_token=<t>`; otherwise go-cqhttp answers 401 (missing) or 403 (wrong) before the upgrade,
while NapCat upgrades, sends `{"status": "failed", "retcode": 1403, ...}` and closes
(`Quirks.auth_rejection`).
"""

# Waits take a `timeout` on purpose: a test helper that can never hang is the point (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tests.onebot_sim.implementation import Implementation, encode
from tests.onebot_sim.wslink import WsLink

MAX_FRAME_BYTES = 64 * 1024 * 1024  # NapCat allows 1 GiB frames (base64 files ride in them)


@dataclass
class Handshake:
    """One opening handshake the server saw: `status` 101 when upgraded, else 401/403."""

    path: str
    headers: Headers
    status: int


def presented_token(authorization: str | None, access_token: str | None) -> str | None:
    """The token a request carries: the Authorization value after its scheme (go-cqhttp takes
    whatever follows the first space, whatever the scheme), else `?access_token=`."""
    _, _, value = (authorization or "").partition(" ")
    return value.strip() or access_token or None


def _query_token(path: str) -> str | None:
    return parse_qs(urlsplit(path).query).get("access_token", [None])[0]


def refusal(token: str, presented: str | None) -> int:
    """0 to accept, 401 when no token was presented, 403 when a wrong one was."""
    if not token:
        return 0
    if presented is None:
        return 401
    return 0 if presented == token else 403


def _role(request: Request) -> str:
    path = urlsplit(request.path).path.rstrip("/")
    return path.lstrip("/") if path in ("/api", "/event") else "universal"


class ForwardServer:
    """A running (or stopped) forward WebSocket server; `start`/`stop` keep the same port."""

    def __init__(self, impl: Implementation, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.impl = impl
        self.host = host
        self.port = port
        self.handshakes: list[Handshake] = []
        self.links: dict[ServerConnection, WsLink] = {}
        self._server: Server | None = None
        self._refuse_by_frame: set[ServerConnection] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def connections(self) -> list[ServerConnection]:
        """Open connections; each has `.request.headers` and `.request.path`."""
        return list(self.links)

    @property
    def connection_count(self) -> int:
        return len(self.links)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._check_handshake,
            ping_interval=None,  # neither implementation pings its clients; it only answers pings
            compression=None,
            max_size=MAX_FRAME_BYTES,
            open_timeout=5,
            close_timeout=2,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, *, abort: bool = True) -> None:
        """Take the server down: `abort` drops every link like a crash (no close frame);
        otherwise they get a 1001 close, like a clean shutdown."""
        server, self._server = self._server, None
        if server is None:
            return
        if abort:
            self._abort_links()
        server.close(close_connections=not abort)
        async with asyncio.timeout(5):
            await server.wait_closed()

    async def drop_all(self) -> None:
        """Abort every open connection (the server keeps listening) and wait until they are gone."""
        self._abort_links()
        await self.impl.changed.wait_for(lambda: not self.links, 5)

    async def wait_connected(self, n: int = 1, timeout: float = 5.0) -> None:
        """Until at least `n` connections are open."""
        await self.impl.changed.wait_for(lambda: len(self.links) >= n, timeout)

    async def wait_disconnected(self, timeout: float = 5.0) -> None:
        """Until no connection is open."""
        await self.impl.changed.wait_for(lambda: not self.links, timeout)

    def _abort_links(self) -> None:
        for connection in list(self.links):
            connection.transport.abort()

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        presented = presented_token(request.headers.get("Authorization"), _query_token(request.path))
        status = refusal(self.impl.token, presented)
        frame_refusal = bool(status) and self.impl.quirks.auth_rejection == "frame"
        upgraded = frame_refusal or not status
        self.handshakes.append(Handshake(request.path, Headers(request.headers), 101 if upgraded else status))
        self.impl.changed.notify()
        if frame_refusal:
            self._refuse_by_frame.add(connection)
            return None
        return connection.respond(status, "") if status else None

    async def _handle(self, connection: ServerConnection) -> None:
        if connection in self._refuse_by_frame:
            self._refuse_by_frame.discard(connection)
            await self._refuse(connection)
            return
        role = _role(connection.request)  # type: ignore[arg-type]  # set once the handshake ran
        link = WsLink(self.impl, connection, answers=role != "event", events=role != "api")
        self.links[connection] = link
        self.impl.changed.notify()
        try:
            await link.run()
        finally:
            del self.links[connection]
            self.impl.changed.notify()

    async def _refuse(self, connection: ServerConnection) -> None:
        # NapCat: OB11Response.res(null, 'failed', 1403, 'token验证失败'), then close().
        frame = {"status": "failed", "retcode": 1403, "data": None, "message": "token验证失败"}
        frame |= {"wording": "token验证失败", "echo": None}
        await connection.send(encode(frame))
        await connection.close()


@asynccontextmanager
async def forward_ws_server(impl: Implementation, *, port: int = 0) -> AsyncIterator[ForwardServer]:
    """A forward WebSocket server on 127.0.0.1 for the block; its `.url` is `ws://127.0.0.1:<port>/`."""
    server = ForwardServer(impl, port=port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
