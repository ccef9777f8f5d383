"""SLA alerts reach the QQ agent groups: the check records the event, the dispatch job hands it
to the QQ helpdesk, and the bot posts it in Chinese with the due time in business time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.crud import crud_ticket
from app.db.base import utcnow
from app.models import Role, TicketSla
from tests.conftest import bearer, create_user, login, make_client
from tests.test_bot.conftest import AGENT_GROUP, qq_rig

ALWAYS_OPEN = {"week": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}


async def test_breach_and_warning_are_posted_to_the_agent_group(settings: Settings, admin_engine: AsyncEngine) -> None:
    async with qq_rig(settings, admin_engine) as rig:
        app = rig.app
        ctx = app.state.ctx
        await create_user(app, "admin1", Role.admin)
        async with make_client(app) as client:
            admin = await login(client, "admin1")
            saved = await client.put("/api/v1/business-calendar", json=ALWAYS_OPEN, headers=bearer(admin))
            assert saved.status_code == 200, saved.text
            policy = {"name": "普通", "priority": "normal", "first_response_minutes": 60, "resolution_minutes": 120}
            assert (await client.post("/api/v1/sla-policies", json=policy, headers=bearer(admin))).status_code == 201
            ticket = (
                await client.post("/api/v1/tickets", json={"title": "机房断电", "body": "B 栋"}, headers=bearer(admin))
            ).json()
        # Opened 100 minutes ago: the first response is late, the resolution at 83 %. (Through
        # the app's write transaction: its worker is running.)
        async with ctx.db.transaction() as session:
            row = await crud_ticket.reload(session, ticket["id"])
            row.created_at = row.created_at - timedelta(minutes=100)
            sla_row = await session.get(TicketSla, ticket["id"])
            assert sla_row is not None
            sla_row.basis = ""
            await ctx.sla.refresh(session, row, utcnow())
            assert await ctx.sla.check(session, ctx.tickets, utcnow()) == 1

        breached = await rig.sent_to_group(AGENT_GROUP, "首次响应已超时")
        warned = await rig.sent_to_group(AGENT_GROUP, "解决即将超时")
        assert ticket["number"] in breached["text"]
        assert "机房断电" in warned["text"]
