"""One process per forward WebSocket URL: elected by a PostgreSQL advisory lock."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from app.bot.election import ForwardElection
from app.db.session import Database, is_sqlite
from app.onebot.hub import OneBotHub
from tests.onebot_sim import Implementation, forward_ws_server
from tests.test_bot.conftest import BOT
from tests.test_onebot.conftest import TEST_CONFIG, wait_until


async def test_with_sqlite_the_one_process_connects(database_url: str) -> None:
    if not is_sqlite(database_url):
        pytest.skip("the SQLite case")
    impl = Implementation(self_id=BOT)
    db, hub = Database(database_url), OneBotHub(replace(TEST_CONFIG))
    async with forward_ws_server(impl) as server:
        election = ForwardElection(db, hub, [server.url])
        election.start()
        await server.wait_connected(1)
        await election.stop()
        await hub.close()
    await db.dispose()


async def test_two_processes_never_both_connect_and_one_takes_over(database_url: str) -> None:
    if is_sqlite(database_url):
        pytest.skip("the election needs PostgreSQL's advisory locks")
    impl = Implementation(self_id=BOT)
    databases = [Database(database_url), Database(database_url)]
    hubs = [OneBotHub(replace(TEST_CONFIG)), OneBotHub(replace(TEST_CONFIG))]
    async with forward_ws_server(impl) as server:
        elections = [
            ForwardElection(db, hub, [server.url], check_seconds=0.02) for db, hub in zip(databases, hubs, strict=True)
        ]
        for election in elections:
            election.start()
        await wait_until(lambda: any(e.holding for e in elections))
        await server.wait_connected(1)
        await asyncio.sleep(0.2)  # ten election rounds: the loser must still be out
        assert server.connection_count == 1
        assert sum(bool(e.holding) for e in elections) == 1

        holder = next(i for i, e in enumerate(elections) if e.holding)
        await elections[holder].stop()  # the holding process stops: its lock goes with it
        other = elections[1 - holder]
        await wait_until(lambda: bool(other.holding))
        await server.wait_connected(1)
        assert server.connection_count == 1
        await other.stop()
    for hub in hubs:
        await hub.close()
    for db in databases:
        await db.dispose()
