"""Notifications are never lost and never doubled: offline bots, repeated events, non-friends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.db.session import is_sqlite
from app.main import create_app
from app.models.qq import QQInboxEvent
from app.models.ticket import Ticket
from app.models.user import Role, User
from tests.conftest import create_user, login, make_client
from tests.onebot_sim import ReverseWsClient
from tests.test_bot.conftest import (
    AGENT_GROUP,
    BOT,
    CUSTOMER_GROUP,
    CUSTOMER_QQ,
    STRANGER_QQ,
    QQRig,
    qq_rig,
    qq_settings,
)
from tests.test_bot.test_story import ticket_number
from tests.test_onebot.conftest import wait_until
from tests.test_realtime.test_fanout import start_api


async def open_ticket(rig: QQRig, qq: int = CUSTOMER_QQ, title: str = "打印机卡纸") -> tuple[str, int]:
    await rig.say(qq, f"/报修 {title}")
    number = ticket_number(await rig.sent_to(qq, "已收到报修"))
    async with rig.app.state.ctx.db.transaction(write=False) as session:
        ticket_id = (await session.execute(select(Ticket.id).where(Ticket.number == number))).scalar_one()
    return number, ticket_id


async def agent_headers(rig: QQRig) -> dict[str, str]:
    await create_user(rig.app, "agent1", Role.agent)
    async with make_client(rig.app) as client:
        tokens = await login(client, "agent1")
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def post_reply(rig: QQRig, headers: dict[str, str], ticket_id: int, body: str) -> None:
    async with make_client(rig.app) as client:
        response = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": body}, headers=headers)
    assert response.status_code == 201, response.text


async def test_notifications_wait_for_an_offline_bot_and_go_out_once(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine, mode="reverse") as rig:
        _, ticket_id = await open_ticket(rig)
        headers = await agent_headers(rig)
        first_link = rig.hub.registry.action_connection(BOT)
        await first_link.close(1000, "test: the bot goes offline")
        await wait_until(lambda: rig.hub.registry.action_connection(BOT) is None)

        for n in range(50):
            await post_reply(rig, headers, ticket_id, f"进度更新 {n:02d}")
        assert not [s for s in rig.impl.sent if "进度更新" in s["text"]]  # nothing went out offline

        def updates() -> list[str]:
            return [s["text"] for s in rig.impl.sent if "进度更新" in s["text"]]

        async with ReverseWsClient(rig.impl, rig.base_url.replace("http://", "ws://") + "/onebot/v11/ws"):
            await rig.impl.changed.wait_for(lambda: len(updates()) >= 50, 30)
            await rig.app.state.ctx.onebot.events.join()
            assert len(updates()) == 50
            assert len(set(updates())) == 50  # none twice
            async with admin_engine.connect() as conn:
                lost = await conn.scalar(
                    text("SELECT count(*) FROM jobs WHERE kind = 'qq.send' AND status IN ('failed', 'dead')")
                )
            assert lost == 0


async def test_the_same_event_twice_and_over_another_process_makes_one_ticket(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        event = rig.impl.private_message(CUSTOMER_QQ, "/报修 投影仪没有信号", message_id=9001)
        await rig.impl.emit(event)
        await rig.impl.emit(event)  # NapCat reports some events twice
        await rig.sent_to(CUSTOMER_QQ, "已收到报修")
        # The same event reaches a second app process over HTTP POST (go-cqhttp retrying).
        second = create_app(qq_settings(settings))
        async with second.router.lifespan_context(second), make_client(second, client_ip="127.0.0.1") as client:
            response = await client.post("/onebot/v11/http", json=event)
            assert response.status_code == 204
        async with rig.app.state.ctx.db.transaction(write=False) as session:
            tickets = await session.scalar(select(func.count()).select_from(Ticket))
        created = [s for s in rig.impl.sent if "已收到报修" in s["text"]]
    assert tickets == 1
    assert len(created) == 1


async def test_a_non_friends_group_ticket_is_answered_in_the_group_with_an_at(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        at_bot = [{"type": "at", "data": {"qq": str(BOT)}}, {"type": "text", "data": {"text": " /报修 电脑蓝屏"}}]
        await rig.say_in_group(CUSTOMER_GROUP, STRANGER_QQ, at_bot)
        created = await rig.sent_to_group(CUSTOMER_GROUP, "已收到报修")
        assert created["segments"][0] == {"type": "at", "data": {"qq": str(STRANGER_QQ)}}
        number = ticket_number(created)
        headers = await agent_headers(rig)
        async with rig.app.state.ctx.db.transaction(write=False) as session:
            ticket_id = (await session.execute(select(Ticket.id).where(Ticket.number == number))).scalar_one()
        await post_reply(rig, headers, ticket_id, "请先重启试试")
        reply = await rig.sent_to_group(CUSTOMER_GROUP, "请先重启试试")
        assert reply["segments"][0] == {"type": "at", "data": {"qq": str(STRANGER_QQ)}}
        # It was tried privately first; NapCat refused a non-friend.
        assert any(c["action"] == "send_private_msg" and c["params"]["user_id"] == STRANGER_QQ for c in rig.impl.calls)


async def test_an_undeliverable_notification_shows_on_the_ticket_and_is_not_retried(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine, friends=set()) as rig:
        await rig.say(STRANGER_QQ, "/报修 无法登录邮箱")
        await rig.impl.wait_for_call("send_private_msg")  # the confirmation, refused: not a friend
        async with rig.app.state.ctx.db.transaction(write=False) as session:
            ticket_id = (await session.execute(select(Ticket.id))).scalar_one()
        headers = await agent_headers(rig)
        await post_reply(rig, headers, ticket_id, "请重置密码")

        async def timeline() -> list[dict[str, Any]]:
            async with make_client(rig.app) as client:
                response = await client.get(f"/api/v1/tickets/{ticket_id}/events", headers=headers)
            return list(response.json())

        async with asyncio.timeout(10):
            # The API has no signal to await: poll the timeline.
            while not (failures := [e for e in await timeline() if (e.get("data") or {}).get("delivery")]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert failures[0]["data"]["delivery"]["status"] == "undeliverable"
        async with admin_engine.connect() as conn:
            attempts = await conn.scalar(
                text("SELECT max(attempts) FROM jobs WHERE kind = 'qq.send' AND status = 'failed'")
            )
        assert attempts == 1


async def test_a_requester_who_muted_qq_hears_nothing(settings: Settings, admin_engine: AsyncEngine) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        _, ticket_id = await open_ticket(rig)
        async with rig.app.state.ctx.db.transaction() as session:
            ticket = await session.get(Ticket, ticket_id)
            requester = await session.get(User, ticket.requester_id)
            requester.notification_preferences = {"qq": False, "email": True}
        headers = await agent_headers(rig)
        await post_reply(rig, headers, ticket_id, "静音测试")
        await post_reply(rig, headers, ticket_id, "第二条")
        await wait_for_jobs(admin_engine)
    assert not [s for s in rig.impl.sent if "静音测试" in s["text"] or "第二条" in s["text"]]


async def wait_for_jobs(engine: AsyncEngine) -> None:
    """Until the worker has nothing left to do now (the dispatch jobs ran)."""
    query = text(
        "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running') AND kind IN ('events.dispatch', 'qq.send')"
    )
    async with asyncio.timeout(10):
        while True:
            async with engine.connect() as conn:
                if not await conn.scalar(query):
                    return
            await asyncio.sleep(0.05)  # the worker has no signal to await


async def test_an_event_retried_to_another_api_process_makes_no_second_ticket(
    settings: Settings, admin_engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    if is_sqlite(database_url):
        pytest.skip("several API processes share PostgreSQL")
    async with qq_rig(settings, admin_engine) as rig:
        event = rig.impl.private_message(CUSTOMER_QQ, "/报修 门禁卡失效", message_id=9002)
        await rig.impl.emit(event)
        await rig.sent_to(CUSTOMER_QQ, "已收到报修")
        process, base = await start_api(database_url, tmp_path / "second")
        try:
            async with httpx.AsyncClient(base_url=base) as http:
                response = await http.post("/onebot/v11/http", json=event)
        finally:
            process.terminate()
            await process.wait()
        assert response.status_code == 204
        async with rig.app.state.ctx.db.transaction(write=False) as session:
            tickets = await session.scalar(select(func.count()).select_from(Ticket))
            inbox = await session.scalar(select(func.count()).select_from(QQInboxEvent))
    assert (tickets, inbox) == (1, 1)


async def test_an_event_that_keeps_failing_gets_an_apology_not_silence(
    settings: Settings, admin_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.bot.hub import wire_bot
    from app.crud import crud_qq
    from app.jobs.worker import JobRun, PermanentJobError
    from app.models.qq import InboxStatus
    from app.onebot.events import parse_event

    async with qq_rig(settings, admin_engine) as rig:
        ctx = rig.app.state.ctx
        event = parse_event(rig.impl.private_message(CUSTOMER_QQ, "/报修 会失败的工单", message_id=9100))
        async with ctx.db.transaction() as session:  # in the inbox, its job run by hand below
            inbox_id = await crud_qq.add_inbox(
                session, self_id=BOT, post_type="message", event_key="9100", payload=event.model_dump(mode="json")
            )
        bot = wire_bot(
            ctx.settings.onebot,
            ctx.onebot,
            db=ctx.db,
            tickets=ctx.tickets,
            identities=ctx.qq_identities,
            attachments=ctx.attachments,
            http=ctx.http,
        )

        async def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("a bug in the helpdesk")

        monkeypatch.setattr(bot.helpdesk, "handle", broken)  # a fault inside our code, not a peer
        last = JobRun(0, "qq.event", {"inbox_id": inbox_id}, attempt=8, max_attempts=8, db=ctx.db)
        with pytest.raises(PermanentJobError):
            await bot.handlers["qq.event"](last)
        apology = await rig.sent_to(CUSTOMER_QQ, "系统出了点问题")
        async with ctx.db.transaction(write=False) as session:
            row = await session.get(QQInboxEvent, inbox_id)
    assert row is not None
    assert row.status == InboxStatus.failed
    assert "a bug in the helpdesk" in (row.error or "")
    assert "RuntimeError" not in apology["text"]


async def test_urgent_tickets_reach_the_agent_group_and_long_replies_arrive_in_parts(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        number, ticket_id = await open_ticket(rig, title="服务器机房断电")
        headers = await agent_headers(rig)
        async with make_client(rig.app) as client:
            raised = await client.patch(f"/api/v1/tickets/{ticket_id}", json={"priority": "urgent"}, headers=headers)
        assert raised.status_code == 200, raised.text
        urgent = await rig.sent_to_group(AGENT_GROUP, "紧急")
        assert number in urgent["text"]

        long_reply = "".join(f"第{n:03d}步：检查配电柜与 UPS 的状态并记录。\n" for n in range(150))
        await post_reply(rig, headers, ticket_id, long_reply.strip())
        await rig.sent_to(CUSTOMER_QQ, "第149步")
        parts = [s["text"] for s in rig.impl.sent if s["user_id"] == CUSTOMER_QQ and "步：" in s["text"]]
    assert len(parts) > 1
    assert all(len(part) <= 1500 for part in parts)
    joined = "".join(parts)
    positions = [joined.find(f"第{n:03d}步") for n in range(150)]
    assert -1 not in positions
    assert positions == sorted(positions)  # every step, in order
