"""The built-in jobs: auto-close resolved tickets, purge what has expired, dispatch events."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import event, func, select, update

from app.crud import crud_ticket
from app.db.base import utcnow
from app.jobs.handlers import AUTO_CLOSE, PURGE, build_handlers, event_dispatcher
from app.jobs.queue import enqueue
from app.jobs.worker import Worker, WorkerOptions
from app.models import IdempotencyRecord, Job, JobStatus, RefreshToken, Ticket, WebhookDelivery
from app.services.ticket import DISPATCH_EVENT
from tests.conftest import bearer

TICKETS = "/api/v1/tickets"


async def run_job(app, kind: str) -> None:
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        await enqueue(session, kind)
    worker = Worker(ctx.db, build_handlers(ctx.settings, ctx.tickets, ctx.webhooks), WorkerOptions())
    await worker.run_until_idle()


async def resolved_ticket(client, agent) -> dict:
    ticket = (await client.post(TICKETS, json={"title": "t", "body": "b"}, headers=bearer(agent))).json()
    await client.patch(f"{TICKETS}/{ticket['id']}", json={"status": "resolved"}, headers=bearer(agent))
    return ticket


async def test_resolved_tickets_close_after_the_configured_days(app, client, agent, admin_engine):
    old = await resolved_ticket(client, agent)
    recent = await resolved_ticket(client, agent)
    async with admin_engine.begin() as conn:
        await conn.execute(
            update(Ticket).where(Ticket.id == old["id"]).values(resolved_at=utcnow() - timedelta(days=8))
        )
    await run_job(app, AUTO_CLOSE)
    await run_job(app, AUTO_CLOSE)  # idempotent: a second run changes nothing more
    closed = (await client.get(f"{TICKETS}/{old['id']}", headers=bearer(agent))).json()
    still = (await client.get(f"{TICKETS}/{recent['id']}", headers=bearer(agent))).json()
    assert (closed["status"], still["status"]) == ("closed", "resolved")
    events = (await client.get(f"{TICKETS}/{old['id']}/events", headers=bearer(agent))).json()
    closing = [e for e in events if e["data"].get("status") == ["resolved", "closed"]]
    assert len(closing) == 1
    assert closing[0]["actor"] is None
    assert closing[0]["data"]["automatic"] is True


async def test_a_ticket_resolved_again_since_the_job_chose_it_is_not_closed(app, client, agent):
    """The job selects due tickets, then locks each: one reopened and resolved again meanwhile
    has a recent `resolved_at` by the time its lock is taken."""
    ticket = await resolved_ticket(client, agent)
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        locked = await crud_ticket.reload(session, ticket["id"], for_update=True)
        cutoff = utcnow() - timedelta(days=7)
        await ctx.tickets.close_automatically(session, locked, resolved_before=cutoff)
    assert (await client.get(f"{TICKETS}/{ticket['id']}", headers=bearer(agent))).json()["status"] == "resolved"


async def test_auto_close_can_be_switched_off(app, client, agent, admin_engine):
    app.state.ctx.settings.tickets.auto_close_days = 0
    ticket = await resolved_ticket(client, agent)
    async with admin_engine.begin() as conn:
        await conn.execute(update(Ticket).values(resolved_at=utcnow() - timedelta(days=30)))
    await run_job(app, AUTO_CLOSE)
    assert (await client.get(f"{TICKETS}/{ticket['id']}", headers=bearer(agent))).json()["status"] == "resolved"


async def test_purge_removes_expired_records_only(app, client, customer, admin_engine):
    headers = {**bearer(customer), "Idempotency-Key": "old"}
    await client.post(TICKETS, json={"title": "a", "body": "b"}, headers=headers)
    await client.post(TICKETS, json={"title": "a", "body": "b"}, headers={**bearer(customer), "Idempotency-Key": "new"})
    await client.post("/api/v1/auth/refresh", json={"refresh_token": customer["refresh_token"]})
    async with admin_engine.begin() as conn:
        past = utcnow() - timedelta(seconds=1)
        await conn.execute(update(IdempotencyRecord).where(IdempotencyRecord.key == "old").values(expires_at=past))
        await conn.execute(update(RefreshToken).where(RefreshToken.used_at.is_not(None)).values(expires_at=past))
    await run_job(app, PURGE)
    async with admin_engine.connect() as conn:
        keys = (await conn.execute(select(IdempotencyRecord.key))).scalars().all()
        tokens = (await conn.execute(select(func.count()).select_from(RefreshToken))).scalar()
        purge_jobs = (await conn.execute(select(Job.status).where(Job.kind == PURGE))).scalars().all()
    assert keys == ["new"]
    assert tokens == 1  # the live successor stays
    assert purge_jobs == [JobStatus.done]


async def test_the_event_dispatch_takes_a_batch_of_events_in_one_transaction(app, client, agent, admin, admin_engine):
    """A job per timeline event; under load the worker takes them a batch at a time: a claim
    and a dispatch transaction for ten events, each event still handed to the webhook."""
    ctx = app.state.ctx
    hook = {"url": "https://hooks.example.com/helpdesk", "event_types": ["ticket.created"]}
    response = await client.post("/api/v1/webhooks", json=hook, headers=bearer(admin))
    assert response.status_code == 201, response.text
    for n in range(10):
        await client.post(TICKETS, json={"title": f"工单 {n}", "body": "b"}, headers=bearer(agent))
    handlers = build_handlers(ctx.settings, ctx.tickets, ctx.webhooks)
    batches = {DISPATCH_EVENT: event_dispatcher(ctx.settings)}
    worker = Worker(ctx.db, handlers, WorkerOptions(), batch_handlers=batches)
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        assert await worker.claim_and_start() == 10
        await asyncio.gather(*worker._running)
    finally:
        event.remove(ctx.db.engine.sync_engine, "before_cursor_execute", record)
    async with admin_engine.connect() as conn:
        dispatched = (await conn.execute(select(Job.status).where(Job.kind == DISPATCH_EVENT))).scalars().all()
        deliveries = (await conn.execute(select(func.count()).select_from(WebhookDelivery))).scalar()
    assert dispatched == [JobStatus.done] * 10
    assert deliveries == 10
    writes = [s for s in statements if s.split()[0] in ("INSERT", "UPDATE")]
    assert len(writes) == 2 + 10 + 10  # the claim's lease and the batch's done; a delivery and its job per event
