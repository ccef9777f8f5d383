"""Which process connects each forward WebSocket URL: exactly one.

Two processes connected to one NapCat would both receive every event and both answer (the
inbox stops the double ticket, not the double work and the double sends). On PostgreSQL a
session-level advisory lock per URL elects the process: it holds a connection with the lock for
as long as it keeps the link, checks that connection regularly, and gives the link up the moment
the connection (hence the lock) is lost. The others retry now and then, so one takes over when
the holder stops. With SQLite there is one process: it connects at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.session import Database
from app.onebot.hub import OneBotHub

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0


class ForwardElection:
    def __init__(self, db: Database, hub: OneBotHub, urls: list[str], *, check_seconds: float = CHECK_SECONDS):
        self.db = db
        self.hub = hub
        self.urls = urls
        self.check_seconds = check_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self.holding: set[str] = set()

    def start(self) -> None:
        for url in self.urls:
            if self.db.dialect != "postgresql":
                self.hub.connect_forward(url)
                self.holding.add(url)
            else:
                self._tasks.append(asyncio.create_task(self._campaign(url), name=f"onebot-election:{url}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _campaign(self, url: str) -> None:
        while True:
            try:
                async with self.db.engine.connect() as conn:
                    if await self._try_lock(conn, url):
                        try:
                            await self._hold(conn, url)
                        finally:
                            # Never back into the pool still holding the lock: close it.
                            with contextlib.suppress(Exception):
                                await conn.invalidate()
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("onebot forward election for %s lost its database connection: %s", url, exc)
            await asyncio.sleep(self.check_seconds)

    async def _hold(self, conn: AsyncConnection, url: str) -> None:
        """Keep the link while the locked connection lives; drop it the moment it does not."""
        log.info("this process connects the forward OneBot link %s", url)
        link = self.hub.connect_forward(url)
        self.holding.add(url)
        try:
            while True:
                await asyncio.sleep(self.check_seconds)
                await conn.execute(text("SELECT 1"))
                await conn.commit()
        finally:
            self.holding.discard(url)
            link.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link

    @staticmethod
    async def _try_lock(conn: AsyncConnection, url: str) -> bool:
        # Session-level (not transaction-level): it lasts as long as this connection.
        locked = await conn.scalar(
            text("SELECT pg_try_advisory_lock(hashtextextended(:name, 0))"), {"name": f"onebot-forward:{url}"}
        )
        await conn.commit()
        return bool(locked)
