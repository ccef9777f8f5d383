"""Faults on the QQ side (issue 9): the OneBot implementation is killed and restarted again and
again while the helpdesk's notifications go out. None may be lost; a message may go out twice
only where the implementation died after sending it and before acknowledging it, and each such
repeat is counted."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.main import create_app
from app.models.ticket import Ticket
from app.models.user import Role
from tests.conftest import bearer, create_user, empty_tables, login, make_client
from tests.fakes.server import serving
from tests.onebot_sim import Implementation, Quirks
from tests.reliability._onebot import AckLedger, KillableBot, Received
from tests.reliability.conftest import scaled
from tests.test_bot.conftest import BOT, qq_settings
from tests.test_onebot.conftest import wait_until

log = logging.getLogger(__name__)

NOTIFICATIONS = scaled(500, 5000)
KILLS = scaled(6, 40)
# QQ users with a ticket each, friends of the bot; an agent answers each ticket (concurrently).
CUSTOMERS = tuple(345678901 + n for n in range(4))
DOWNTIME = 0.2  # seconds the implementation takes to come back after a crash
TIME_LIMIT = scaled(240, 3600)  # a bug fails the test instead of hanging CI
MARKER = re.compile(r"通知#(\d+)")


@dataclass
class Rig:
    app: Any
    impl: Implementation
    bot: KillableBot

    @property
    def connected(self) -> bool:
        return self.app.state.onebot.registry.action_connection(BOT) is not None

    def delivered(self) -> set[int]:
        """The notifications that reached QQ (each marker once, however many copies)."""
        return {int(m.group(1)) for sent in self.impl.sent if (m := MARKER.search(sent["text"]))}


@asynccontextmanager
async def killable_rig(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Rig]:
    """The app (its worker included) serving real sockets, and the simulated bot connected to
    its reverse WebSocket endpoint."""
    await empty_tables(engine)
    impl = Implementation(self_id=BOT, friends=set(CUSTOMERS), quirks=Quirks.napcat())
    app = create_app(qq_settings(settings))
    async with app.router.lifespan_context(app), serving(app) as base_url:
        bot = KillableBot(impl, base_url.replace("http://", "ws://") + "/onebot/v11/ws", ledger=AckLedger())
        rig = Rig(app, impl, bot)
        await bot.connect()
        await wait_until(lambda: rig.connected, 10)
        try:
            yield rig
        finally:
            await bot.close()


async def open_tickets(rig: Rig) -> list[int]:
    """Each customer reports a problem in QQ (so each is bound to QQ and hears about replies)."""
    for n, qq in enumerate(CUSTOMERS):
        assert await rig.impl.emit(rig.impl.private_message(qq, f"/报修 打印机卡纸 {n}")) == 1
    await rig.impl.changed.wait_for(
        lambda: len([s for s in rig.impl.sent if "已收到报修" in s["text"]]) >= len(CUSTOMERS), 20
    )
    async with rig.app.state.ctx.db.transaction(write=False) as session:
        ids = (await session.execute(select(Ticket.id).order_by(Ticket.id))).scalars().all()
    assert len(ids) == len(CUSTOMERS)
    return list(ids)


async def post_replies(client: httpx.AsyncClient, headers: dict[str, str], tickets: list[int]) -> None:
    """NOTIFICATIONS agent replies, one writer per ticket: each one a QQ message to its customer."""

    async def answer(ticket_id: int, numbers: range) -> None:
        for n in numbers:
            body = {"body": f"处理进度 通知#{n:05d}"}
            response = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json=body, headers=headers)
            assert response.status_code == 201, response.text

    step = len(tickets)
    await asyncio.gather(*(answer(t, range(k, NOTIFICATIONS, step)) for k, t in enumerate(tickets)))


def ready_to_kill(rig: Rig, threshold: int) -> bool:
    # Messages sent so far (repeats included: a cheap count, checked on every send).
    return len(rig.impl.sent) >= threshold and rig.bot.awaiting_ack


async def keep_killing(rig: Rig) -> None:
    """Kill the implementation KILLS times, spread over the deliveries, each time while a
    message it sent to QQ is still waiting for its acknowledgement; it comes back after a pause."""
    for kill in range(1, KILLS + 1):
        threshold = NOTIFICATIONS * kill // (KILLS + 1)
        await rig.impl.changed.wait_for(partial(ready_to_kill, rig, threshold), 60)
        await rig.bot.kill()  # in the same step as the check: the send above is cut for sure
        await wait_until(lambda: not rig.connected, 10)
        await asyncio.sleep(DOWNTIME)  # the implementation restarting: nothing to await
        await rig.bot.connect()
        await wait_until(lambda: rig.connected, 10)


async def drained(engine: AsyncEngine) -> None:
    """Until the worker has nothing left to send: every reply's notification has gone out for
    good (and no late copy can arrive after the count)."""
    query = text(
        "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running') AND kind IN ('events.dispatch', 'qq.send')"
    )
    while True:
        async with engine.connect() as conn:
            if not await conn.scalar(query):
                return
        await asyncio.sleep(0.05)  # the worker has no signal to await


def attempts_per_message(ledger: AckLedger) -> dict[str, list[Received]]:
    """The send actions the implementation received, grouped by message (its params): more
    than one per message is a repeat."""
    grouped: dict[str, list[Received]] = defaultdict(list)
    for entry in ledger.sends():
        grouped[json.dumps(entry.params, sort_keys=True, ensure_ascii=False)].append(entry)
    return grouped


async def test_notifications_survive_an_implementation_killed_again_and_again(
    settings: Settings, admin_engine: AsyncEngine, record_property: Callable[[str, object], None]
) -> None:
    async with killable_rig(settings, admin_engine) as rig:
        tickets = await open_tickets(rig)
        await create_user(rig.app, "agent1", Role.agent)
        async with make_client(rig.app) as client:
            headers = bearer(await login(client, "agent1"))
            async with asyncio.timeout(TIME_LIMIT):
                await asyncio.gather(post_replies(client, headers, tickets), keep_killing(rig))
                await drained(admin_engine)
        maybe_repeated = rig.app.state.onebot.metrics.get("sends_maybe_repeated", BOT)
        async with admin_engine.connect() as conn:
            unfinished = await conn.scalar(
                text("SELECT count(*) FROM jobs WHERE kind = 'qq.send' AND status <> 'done'")
            )

    ledger = rig.bot.ledger
    grouped = attempts_per_message(ledger)
    repeats = sum(len(attempts) - 1 for attempts in grouped.values())
    cut = [entry for entry in ledger.sends() if entry.cut]
    record_property("notifications", NOTIFICATIONS)
    record_property("kills", KILLS)
    record_property("repeats", repeats)
    record_property("acks_lost", len(cut))
    log.info(
        "%s notifications, %s kills: %s sends received, %s acknowledgements lost, %s repeats, "
        "%s sends the app counted as maybe repeated, %s kills with unflushed bytes",
        NOTIFICATIONS,
        KILLS,
        len(ledger.sends()),
        len(cut),
        repeats,
        maybe_repeated,
        ledger.kills_with_unflushed_bytes,
    )

    assert rig.delivered() == set(range(NOTIFICATIONS))  # none lost
    assert unfinished == 0  # no send failed or died on the way
    assert rig.bot.links == KILLS + 1
    # A message went out again only after a copy whose acknowledgement a kill cut off; its
    # last copy was acknowledged (that is how the job knew it was done).
    unexplained = {key: attempts for key, attempts in grouped.items() if not all(a.cut for a in attempts[:-1])}
    assert not unexplained
    assert all(attempts[-1].answered for attempts in grouped.values())
    # And every lost acknowledgement was followed by a repeat: the app never took a cut send
    # for delivered.
    assert repeats == len(cut)
    assert repeats >= KILLS  # each kill cut at least one send: the repeat path was exercised
    assert maybe_repeated >= repeats  # the app counted each of them as a possible repeat
    assert len(rig.impl.sent) == len(ledger.sends())  # what reached QQ is what the ledger shows
