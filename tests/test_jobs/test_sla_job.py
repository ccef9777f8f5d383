"""The `sla.check` job: sla.warning at the configured share, sla.breached at the due date, once
per ticket and target — also with two workers checking at the same moment — as internal
timeline events that go on to webhooks like any other."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, update

from app.crud import crud_ticket
from app.db.base import utcnow
from app.jobs.handlers import SLA_CHECK, build_handlers
from app.jobs.queue import enqueue
from app.jobs.worker import Worker, WorkerOptions
from app.models import Ticket, TicketEvent, TicketSla, WebhookDelivery
from tests.conftest import bearer

TICKETS = "/api/v1/tickets"
ALWAYS_OPEN = {"week": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}


async def setup_sla(client, admin, *, first_response: int = 60, resolution: int = 120) -> None:
    assert (await client.put("/api/v1/business-calendar", json=ALWAYS_OPEN, headers=bearer(admin))).status_code == 200
    body = {
        "name": "普通",
        "priority": "normal",
        "first_response_minutes": first_response,
        "resolution_minutes": resolution,
    }
    assert (await client.post("/api/v1/sla-policies", json=body, headers=bearer(admin))).status_code == 201


async def new_ticket(client, tokens) -> dict:
    response = await client.post(TICKETS, json={"title": "VPN 连不上", "body": "报错 809"}, headers=bearer(tokens))
    assert response.status_code == 201, response.text
    return response.json()


async def age(app, admin_engine, ticket_id: int, minutes: int) -> None:
    """As if everything on the ticket had happened `minutes` earlier: move its clock's
    timestamps back (created, answered, resolved, closed, paused) and recompute."""
    shift = timedelta(minutes=minutes)
    moments = (Ticket.created_at, Ticket.first_responded_at, Ticket.resolved_at, Ticket.closed_at)
    async with admin_engine.begin() as conn:
        row = (await conn.execute(select(*moments).where(Ticket.id == ticket_id))).one()
        earlier = {c.key: v - shift for c, v in zip(moments, row, strict=True) if v is not None}
        await conn.execute(update(Ticket).where(Ticket.id == ticket_id).values(**earlier))
        paused = (await conn.execute(select(TicketSla.paused_at).where(TicketSla.ticket_id == ticket_id))).scalar()
        values = {"basis": "", **({"paused_at": paused - shift} if paused is not None else {})}
        await conn.execute(update(TicketSla).where(TicketSla.ticket_id == ticket_id).values(**values))
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        await ctx.sla.refresh(session, await crud_ticket.reload(session, ticket_id), utcnow())


async def run_check(app, workers: int = 1) -> None:
    """`workers` workers, each with its own sla.check job, started together."""
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        for _ in range(workers):
            await enqueue(session, SLA_CHECK)
    handlers = build_handlers(ctx.settings, ctx.tickets, ctx.webhooks)
    pool = [Worker(ctx.db, handlers, WorkerOptions(batch_size=1), worker_id=f"w{i}") for i in range(workers)]
    await asyncio.gather(*(worker.run_until_idle() for worker in pool))


async def sla_events(admin_engine) -> list[tuple[int, str, str, bool, int | None]]:
    async with admin_engine.connect() as conn:
        rows = await conn.execute(
            select(TicketEvent).where(TicketEvent.type.like("sla.%")).order_by(TicketEvent.ticket_id, TicketEvent.id)
        )
        return [(e.ticket_id, e.type, e.data["target"], e.internal, e.actor_id) for e in rows]


async def test_warning_at_the_configured_share_once(app, client, admin, customer, admin_engine):
    await setup_sla(client, admin)
    ticket = await new_ticket(client, customer)
    await run_check(app)
    assert await sla_events(admin_engine) == []

    await age(app, admin_engine, ticket["id"], 50)  # 50 of 60 minutes: past 80 %
    await run_check(app)
    await run_check(app)
    assert await sla_events(admin_engine) == [(ticket["id"], "sla.warning", "first_response", True, None)]
    after = (await client.get(f"{TICKETS}/{ticket['id']}", headers=bearer(admin))).json()
    assert after["version"] == 1  # bookkeeping


async def test_warning_share_is_a_setting(app, client, admin, customer, admin_engine):
    app.state.ctx.sla.settings.warning_share = 0.9
    await setup_sla(client, admin)
    ticket = await new_ticket(client, customer)
    await age(app, admin_engine, ticket["id"], 50)  # 83 %: not yet
    await run_check(app)
    assert await sla_events(admin_engine) == []


async def test_breach_once_per_target_without_a_late_warning(app, client, admin, customer, admin_engine):
    await setup_sla(client, admin)
    ticket = await new_ticket(client, customer)
    await age(app, admin_engine, ticket["id"], 180)
    await run_check(app)
    await run_check(app)
    assert await sla_events(admin_engine) == [
        (ticket["id"], "sla.breached", "first_response", True, None),
        (ticket["id"], "sla.breached", "resolution", True, None),
    ]
    # A later change recomputes the due dates but does not raise the same alerts again.
    await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "pending"}, headers=bearer(admin))
    await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "open"}, headers=bearer(admin))
    await run_check(app)
    assert len(await sla_events(admin_engine)) == 2


async def test_event_data_and_visibility(app, client, admin, agent, customer, admin_engine):
    await setup_sla(client, admin)
    ticket = await new_ticket(client, customer)
    await age(app, admin_engine, ticket["id"], 100)  # first response breached, resolution warned
    await run_check(app)
    events = (await client.get(f"{TICKETS}/{ticket['id']}/events", headers=bearer(agent))).json()
    sla = {e["type"]: e for e in events if e["type"].startswith("sla.")}
    current = (await client.get(f"{TICKETS}/{ticket['id']}", headers=bearer(agent))).json()
    assert sla["sla.breached"]["data"]["target"] == "first_response"
    assert sla["sla.breached"]["data"]["due_at"] == current["first_response_due_at"]
    assert sla["sla.warning"]["data"]["target"] == "resolution"
    assert sla["sla.warning"]["data"]["due_at"] == current["resolution_due_at"]
    seen_by_customer = (await client.get(f"{TICKETS}/{ticket['id']}/events", headers=bearer(customer))).json()
    assert not [e for e in seen_by_customer if e["type"].startswith("sla.")]


async def test_met_paused_and_finished_targets_raise_nothing(app, client, admin, agent, customer, admin_engine):
    await setup_sla(client, admin)
    answered, pending, resolved = [await new_ticket(client, customer) for _ in range(3)]
    await client.post(f"{TICKETS}/{answered['id']}/messages", json={"body": "处理中"}, headers=bearer(agent))
    await client.patch(f"{TICKETS}/{pending['id']}", json={"status": "pending"}, headers=bearer(agent))
    await client.patch(f"{TICKETS}/{resolved['id']}", json={"status": "resolved"}, headers=bearer(agent))
    for ticket in (answered, pending, resolved):
        await age(app, admin_engine, ticket["id"], 100)  # first response past due, resolution at 83 %
    await run_check(app)
    # Only the answered ticket's resolution clock still runs.
    assert await sla_events(admin_engine) == [(answered["id"], "sla.warning", "resolution", True, None)]


async def test_two_workers_checking_at_once_send_each_alert_once(app, client, admin, customer, admin_engine):
    await setup_sla(client, admin)
    tickets = [await new_ticket(client, customer) for _ in range(30)]
    for ticket in tickets:
        await age(app, admin_engine, ticket["id"], 180)
    for _ in range(3):
        await run_check(app, workers=2)
    events = await sla_events(admin_engine)
    assert len(events) == 60
    assert sorted(set(events)) == sorted(events)  # no duplicates
    assert {(t, target) for t, _, target, _, _ in events} == {
        (t["id"], target) for t in tickets for target in ("first_response", "resolution")
    }


async def test_concurrent_checks_in_separate_transactions_claim_each_alert_once(
    app, client, admin, customer, admin_engine
):
    """The claim itself, without the worker's scheduling in between: two transactions run the
    conditional UPDATEs at the same moment (on PostgreSQL one waits for the other's row locks)."""
    await setup_sla(client, admin)
    tickets = [await new_ticket(client, customer) for _ in range(20)]
    for ticket in tickets:
        await age(app, admin_engine, ticket["id"], 180)
    ctx = app.state.ctx
    now = utcnow()

    async def check() -> int:
        async with ctx.db.transaction() as session:
            return await ctx.sla.check(session, ctx.tickets, now)

    await asyncio.gather(check(), check())
    async with admin_engine.connect() as conn:
        count = (
            await conn.execute(select(func.count()).select_from(TicketEvent).where(TicketEvent.type == "sla.breached"))
        ).scalar()
    assert count == 40


async def test_alerts_go_to_webhooks_that_want_them(app, client, admin, customer, admin_engine):
    hook = await client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["sla.breached"]},
        headers=bearer(admin),
    )
    assert hook.status_code == 201, hook.text
    await setup_sla(client, admin)
    ticket = await new_ticket(client, customer)
    await age(app, admin_engine, ticket["id"], 180)
    await run_check(app)
    async with admin_engine.connect() as conn:
        kinds = (await conn.execute(select(WebhookDelivery.event_type))).scalars().all()
    assert sorted(kinds) == ["sla.breached", "sla.breached"]


async def test_a_target_met_late_between_two_checks_is_still_a_breach(
    app, client, admin, agent, customer, admin_engine
):
    await setup_sla(client, admin)
    ticket = await new_ticket(client, customer)
    await age(app, admin_engine, ticket["id"], 180)  # both targets passed; no check has run yet
    reply = await client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "已处理"}, headers=bearer(agent))
    assert reply.status_code == 201
    resolved = await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "resolved"}, headers=bearer(agent))
    assert resolved.status_code == 200

    await run_check(app)
    await run_check(app)

    assert await sla_events(admin_engine) == [
        (ticket["id"], "sla.breached", "first_response", True, None),
        (ticket["id"], "sla.breached", "resolution", True, None),
    ]
