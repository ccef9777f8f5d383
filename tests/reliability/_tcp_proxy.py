"""A TCP proxy on 127.0.0.1 for fault tests: it forwards bytes to an upstream server (PostgreSQL)
and can cut every connection abruptly, refuse new ones while "down", and accept again.

A cut resets both sides (SO_LINGER 0, then abort: a TCP RST, what a crashed server or a dropped
network path looks like to the driver), so neither the app nor the server gets a clean close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

CHUNK = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)  # identity: a pair lives in a set
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)


@dataclass
class TcpProxy:
    upstream_host: str
    upstream_port: int
    down: bool = False
    accepted: int = 0
    refused: int = 0
    cut_connections: int = 0
    port: int = 0
    _pairs: set[_Pair] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    def cut(self) -> int:
        """Reset every connection now; returns how many there were."""
        pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.reset()
        self.cut_connections += len(pairs)
        return len(pairs)

    def go_down(self) -> None:
        """Cut everything and refuse (reset) every new connection until `come_up`."""
        self.down = True
        self.cut()

    def come_up(self) -> None:
        self.down = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            self.refused += 1
            _reset(writer)
            return
        if self.down:  # went down while we connected upstream
            self.refused += 1
            _reset(writer)
            _reset(up_writer)
            return
        self.accepted += 1
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        for source, target in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, target, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter, pair: _Pair) -> None:
        try:
            while data := await source.read(CHUNK):
                target.write(data)
                await target.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the other side (or a cut) reset the connection
        finally:
            # One side ended: end the other too, as a real path would; a cut already did.
            if pair in self._pairs:
                self._pairs.discard(pair)
                pair.client.close()
                pair.upstream.close()


@asynccontextmanager
async def running_proxy(upstream_host: str, upstream_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(upstream_host, upstream_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
