"""The whole QQ story, over real sockets against the simulator, in both message formats and
both WebSocket directions: a customer opens a ticket from QQ, agents work it from the agent
group and from the web, the customer follows it in QQ, quote-replies and rates it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.core.config import Settings
from app.models.user import Role, User
from tests.conftest import create_user, login, make_client
from tests.fakes.server import serving
from tests.onebot_sim import Quirks
from tests.test_api.test_attachments import PNG
from tests.test_bot.conftest import AGENT_GROUP, AGENT_QQ, CUSTOMER_QQ, Mode, QQRig, qq_rig, remembered


async def bind_qq(rig: QQRig, user_id: int, qq: int) -> None:
    """The user asks the web for a code and sends it to the bot, as a person would."""
    ctx = rig.app.state.ctx
    async with ctx.db.transaction() as session:
        user = await session.get(User, user_id)
        assert user is not None
        code, _ = await ctx.qq_identities.issue_code(session, user)
    await rig.say(qq, f"/绑定 {code}")
    await rig.sent_to(qq, "绑定成功")


async def screenshot(request: Request) -> Response:
    return Response(PNG, media_type="image/png")


def ticket_number(sent: dict[str, Any]) -> str:
    match = re.search(r"\d{8}-\d{4}", sent["text"])
    assert match, sent["text"]
    return match.group(0)


@pytest.mark.parametrize(
    ("mode", "message_format"),
    [("reverse", "array"), ("forward", "string")],
    ids=["reverse-ws-array", "forward-ws-cq-string"],
)
async def test_a_ticket_from_qq_to_rating(
    settings: Settings, admin_engine: AsyncEngine, mode: Mode, message_format: str
) -> None:
    quirks = Quirks.napcat(message_format=message_format)  # type: ignore[arg-type]
    async with (
        serving(Starlette(routes=[Route("/jam.png", screenshot)])) as cdn,
        qq_rig(settings, admin_engine, mode=mode, quirks=quirks) as rig,
    ):
        app = rig.app
        agent_id = await create_user(app, "agent1", Role.agent)
        await create_user(app, "agent2", Role.agent)
        await bind_qq(rig, agent_id, AGENT_QQ)

        # The customer opens a ticket with a title, a body and a screenshot.
        await rig.say(
            CUSTOMER_QQ,
            [
                {"type": "text", "data": {"text": "/报修 三楼打印机卡纸\n一直提示卡纸，已经重启过了"}},
                {"type": "image", "data": {"file": "jam.png", "url": f"{cdn}/jam.png"}},
            ],
        )
        created = await rig.sent_to(CUSTOMER_QQ, "已收到报修")
        number = ticket_number(created)
        # The agent group hears about it.
        await rig.sent_to_group(AGENT_GROUP, number)

        # An agent claims it and answers from QQ; the customer gets the answer.
        await rig.say_in_group(AGENT_GROUP, AGENT_QQ, f"/认领 {number}")
        await rig.sent_to_group(AGENT_GROUP, "已认领工单")
        await rig.say_in_group(AGENT_GROUP, AGENT_QQ, f"/回复 {number} 请打开后盖取出卡住的纸")
        from_qq = await rig.sent_to(CUSTOMER_QQ, "请打开后盖取出卡住的纸")
        await remembered(rig, from_qq)

        # Another agent answers from the web; the customer gets that too.
        async with make_client(app) as client:
            tokens = await login(client, "agent2")
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            listed = await client.get("/api/v1/tickets", headers=headers)
            ticket = next(t for t in listed.json()["items"] if t["number"] == number)
            assert ticket["channel"] == "qq"
            posted = await client.post(
                f"/api/v1/tickets/{ticket['id']}/messages", json={"body": "已派人上门检查"}, headers=headers
            )
            assert posted.status_code == 201, posted.text
        await rig.sent_to(CUSTOMER_QQ, "已派人上门检查")

        # The customer quote-replies to the first answer: it joins the ticket as a message.
        quote = [
            {"type": "reply", "data": {"id": str(from_qq["message_id"])}},
            {"type": "text", "data": {"text": "取出来了，可以打印了"}},
        ]
        await rig.say(CUSTOMER_QQ, quote)
        await rig.sent_to(CUSTOMER_QQ, "已补充到工单")

        # Resolved from the web, rated 5 from QQ.
        async with make_client(app) as client:
            tokens = await login(client, "agent2")
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            resolved = await client.patch(
                f"/api/v1/tickets/{ticket['id']}", json={"status": "resolved"}, headers=headers
            )
            assert resolved.status_code == 200, resolved.text
        await rig.sent_to(CUSTOMER_QQ, "已解决")
        await rig.say(CUSTOMER_QQ, f"/评价 {number} 5 很快就修好了")
        await rig.sent_to(CUSTOMER_QQ, "感谢评价")

        # Every step shows in the timeline, and the messages are the ticket's.
        async with make_client(app) as client:
            tokens = await login(client, "agent2")
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            detail = (await client.get(f"/api/v1/tickets/{ticket['id']}", headers=headers)).json()
            messages = (await client.get(f"/api/v1/tickets/{ticket['id']}/messages", headers=headers)).json()
            events = (await client.get(f"/api/v1/tickets/{ticket['id']}/events", headers=headers)).json()
        bodies = [m["body"] for m in messages]
        assert bodies == [
            "一直提示卡纸，已经重启过了",
            "请打开后盖取出卡住的纸",
            "已派人上门检查",
            "取出来了，可以打印了",
        ]
        assert detail["rating"]["score"] == 5
        assert detail["assignee"]["id"] == agent_id
        assert [a["filename"] for a in messages[0]["attachments"]] == ["jam.png"]
        kinds = [e["type"] for e in events]
        for kind in ("ticket.created", "ticket.assigned", "ticket.message_added", "ticket.updated", "ticket.rated"):
            assert kind in kinds, kinds
