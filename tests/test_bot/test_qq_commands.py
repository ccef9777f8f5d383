"""The bot's answers in QQ: refusals, injection-safe echoes, binding, friends, the agent group."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.models.ticket import Message, Ticket
from app.models.user import Role
from tests.conftest import create_user
from tests.test_bot.conftest import (
    AGENT_GROUP,
    AGENT_QQ,
    BOT,
    CUSTOMER_QQ,
    OTHER_AGENT_QQ,
    STRANGER_QQ,
    qq_rig,
    remembered,
)
from tests.test_bot.test_story import bind_qq, ticket_number

OTHER_BOT = 2854196310


async def test_an_unbound_member_of_the_agent_group_is_refused_politely(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        await rig.say(CUSTOMER_QQ, "/报修 打印机卡纸")
        number = ticket_number(await rig.sent_to(CUSTOMER_QQ, "已收到报修"))
        await rig.say_in_group(AGENT_GROUP, STRANGER_QQ, f"/认领 {number}")
        refusal = await rig.sent_to_group(AGENT_GROUP, "仅限已绑定的坐席")
        assert refusal["segments"][0] == {"type": "at", "data": {"qq": str(STRANGER_QQ)}}
        async with rig.app.state.ctx.db.transaction(write=False) as session:
            assignee = (await session.execute(select(Ticket.assignee_id))).scalar_one()
        assert assignee is None


async def test_cq_codes_typed_by_a_customer_go_back_as_literal_text(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        await rig.say(CUSTOMER_QQ, "/报修 [CQ:at,qq=all] 全体注意")
        created = await rig.sent_to(CUSTOMER_QQ, "已收到报修")
    assert "[CQ:at,qq=all] 全体注意" in created["text"]
    assert all(segment["type"] == "text" for segment in created["segments"])


async def test_a_wrong_binding_code_is_refused_and_attempts_are_limited(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        for attempt in range(6):
            await rig.say(CUSTOMER_QQ, f"/绑定 WRONGCD{attempt}", message_id=1000 + attempt)
        await rig.impl.changed.wait_for(lambda: len(rig.impl.sent) >= 6, 10)
        answers = [s["text"] for s in rig.impl.sent]
    assert all("绑定成功" not in answer for answer in answers)
    assert len(set(answers)) == 2, answers  # five "wrong code", then "too many attempts"


async def test_a_bound_agent_quote_reply_in_the_agent_group_is_an_internal_note(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        agent_id = await create_user(rig.app, "agent1", Role.agent)
        await bind_qq(rig, agent_id, AGENT_QQ)
        await rig.say(CUSTOMER_QQ, "/报修 网络断了")
        number = ticket_number(await rig.sent_to(CUSTOMER_QQ, "已收到报修"))
        posted = await rig.sent_to_group(AGENT_GROUP, number)
        await remembered(rig, posted)
        quote = [
            {"type": "reply", "data": {"id": str(posted["message_id"])}},
            {"type": "text", "data": {"text": "这个我来看，像是交换机的问题"}},
        ]
        await rig.say_in_group(AGENT_GROUP, AGENT_QQ, quote)
        await rig.sent_to_group(AGENT_GROUP, "添加内部备注")
        async with rig.app.state.ctx.db.transaction(write=False) as session:
            note = (await session.execute(select(Message).where(Message.body.contains("交换机")))).scalar_one()
        assert note.internal
        assert not [s for s in rig.impl.sent if s["user_id"] == CUSTOMER_QQ and "交换机" in s["text"]]


async def test_friend_requests_are_approved(settings: Settings, admin_engine: AsyncEngine) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        await rig.impl.emit(rig.impl.friend_request(STRANGER_QQ, comment="想报修"))
        call = await rig.impl.wait_for_call("set_friend_add_request")
    assert call["params"]["approve"] is True
    assert STRANGER_QQ in rig.impl.friends


async def test_english_aliases_get_english_answers(settings: Settings, admin_engine: AsyncEngine) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        await rig.say(CUSTOMER_QQ, "/new Printer jammed")
        created = await rig.sent_where(lambda s: s["user_id"] == CUSTOMER_QQ)
    assert "Ticket number" in created["text"]


async def test_the_bots_own_messages_and_other_bots_are_ignored(settings: Settings, admin_engine: AsyncEngine) -> None:
    async with qq_rig(settings, admin_engine, ignored_users=[OTHER_BOT]) as rig:
        await rig.impl.emit(rig.impl.private_message(BOT, "/报修 我自己"))
        await rig.impl.emit(rig.impl.private_message(OTHER_BOT, "/报修 另一个机器人"))
        await rig.impl.emit(rig.impl.message_sent("/报修 也是我自己", user_id=CUSTOMER_QQ))
        await rig.say(CUSTOMER_QQ, "/帮助")
        await rig.sent_to(CUSTOMER_QQ, "可用命令")
        async with rig.app.state.ctx.db.transaction(write=False) as session:
            tickets = (await session.execute(select(Ticket.id))).all()
    assert tickets == []


async def test_images_sent_with_a_ticket_become_attachments_and_a_broken_one_is_noted(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from app.models.attachment import Attachment
    from app.models.ticket import TicketEvent
    from tests.fakes.server import serving
    from tests.test_api.test_attachments import PNG

    async def image(request: object) -> Response:
        return Response(PNG, media_type="image/png")

    cdn = Starlette(routes=[Route("/ab12.png", image)])  # QQ's CDN, as far as the bot can tell
    async with serving(cdn) as cdn_url, qq_rig(settings, admin_engine) as rig:
        message = [
            {"type": "text", "data": {"text": "/报修 显示器花屏\n见截图"}},
            {"type": "image", "data": {"file": "ab12.png", "url": f"{cdn_url}/ab12.png"}},
            {"type": "image", "data": {"file": "gone.png", "url": f"{cdn_url}/gone.png"}},
        ]
        await rig.say(CUSTOMER_QQ, message)
        await rig.sent_to(CUSTOMER_QQ, "已收到报修")
        db = rig.app.state.ctx.db

        async def settled() -> tuple[list[Attachment], list[TicketEvent]]:
            async with db.transaction(write=False) as session:
                attachments = list((await session.execute(select(Attachment))).scalars())
                events = list((await session.execute(select(TicketEvent))).scalars())
            return attachments, [e for e in events if "attachment" in e.data]

        async with asyncio.timeout(10):
            while not all(await settled()):  # noqa: ASYNC110  (jobs have no signal to await)
                await asyncio.sleep(0.05)
        attachments, failures = await settled()
        async with db.transaction(write=False) as session:
            first = (await session.execute(select(Message))).scalars().first()
    assert first is not None
    assert first.body == "见截图"  # the text is kept
    assert [(a.filename, a.size, a.message_id) for a in attachments] == [("ab12.png", len(PNG), first.id)]
    assert failures[0].internal
    assert failures[0].data["attachment"]["name"] == "gone.png"


async def test_agents_assign_note_show_and_close_from_the_agent_group(
    settings: Settings, admin_engine: AsyncEngine
) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        lead = await create_user(rig.app, "lead", Role.agent)
        helper = await create_user(rig.app, "helper", Role.agent)
        await bind_qq(rig, lead, AGENT_QQ)
        await bind_qq(rig, helper, OTHER_AGENT_QQ)
        await rig.say(CUSTOMER_QQ, "/报修 会议室投影仪不亮")
        number = ticket_number(await rig.sent_to(CUSTOMER_QQ, "已收到报修"))

        mention = [
            {"type": "text", "data": {"text": f"/指派 {number} "}},
            {"type": "at", "data": {"qq": str(OTHER_AGENT_QQ)}},
        ]
        await rig.say_in_group(AGENT_GROUP, AGENT_QQ, mention)
        await rig.sent_to_group(AGENT_GROUP, "已指派给 Helper")
        await rig.say_in_group(AGENT_GROUP, OTHER_AGENT_QQ, f"/备注 {number} 灯泡可能坏了")
        await rig.sent_to_group(AGENT_GROUP, "添加内部备注")
        await rig.say_in_group(AGENT_GROUP, OTHER_AGENT_QQ, f"/查看 {number}")
        shown = await rig.sent_to_group(AGENT_GROUP, "会议室投影仪不亮")
        await rig.say_in_group(AGENT_GROUP, OTHER_AGENT_QQ, f"/关闭 {number}")
        await rig.sent_to_group(AGENT_GROUP, f"工单 {number} 已关闭")
        await rig.say(CUSTOMER_QQ, "/我的工单")
        listed = await rig.sent_to(CUSTOMER_QQ, "没有")

        async with rig.app.state.ctx.db.transaction(write=False) as session:
            ticket = (await session.execute(select(Ticket))).scalar_one()
            note = (await session.execute(select(Message).where(Message.internal))).scalar_one()
    assert ticket.assignee_id == helper
    assert ticket.status == "closed"
    assert note.body == "灯泡可能坏了"
    assert "灯泡" not in shown["text"]  # /查看 shows public messages only
    assert not [s for s in rig.impl.sent if s["user_id"] == CUSTOMER_QQ and "灯泡" in s["text"]]
    assert listed
