"""The job kinds this app runs, and the periodic schedule. Each handler is idempotent: it
re-reads its rows and does nothing when its work is already done."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.crud import crud_ticket, crud_webhook
from app.db.base import utcnow
from app.db.session import Database
from app.jobs.queue import enqueue
from app.jobs.worker import (
    BatchHandler,
    Handler,
    JobRun,
    Periodic,
    PermanentJobError,
    Worker,
    WorkerOptions,
    finish_all_with,
)
from app.models.auth_session import AuthSession, RefreshToken
from app.models.idempotency import IdempotencyRecord
from app.models.job import Job, JobStatus
from app.models.realtime_token import RealtimeToken
from app.models.ticket import Ticket, TicketEvent, TicketStatus
from app.models.webhook import DeliveryStatus, Webhook
from app.services.ticket import DISPATCH_EVENT, TicketService
from app.services.webhook import DeliveryFailed, WebhookService, delivery_key, wants

AUTO_CLOSE = "tickets.auto_close"
# Rebuilds the search index batch by batch, each job queuing the next (migration 0009 queues
# the first one when it finds tickets written before search existed).
REINDEX = "search.reindex"
PURGE = "maintenance.purge"
SLA_CHECK = "sla.check"
DELIVER_WEBHOOK = "webhooks.deliver"
BATCH = 500
FINISHED_JOBS_KEPT = timedelta(days=7)
REVOKED_SESSIONS_KEPT = timedelta(days=30)


# Called with every timeline event inside the dispatch's transaction (the QQ helpdesk's
# notifications); whatever it queues commits with the dispatch. A batch of events shares one
# transaction: a listener that raises sends each of them through again alone.
EventListener = Callable[[AsyncSession, TicketEvent], Awaitable[None]]


def periodic_jobs() -> list[Periodic]:
    return [
        Periodic(AUTO_CLOSE, every_seconds=600),
        Periodic(PURGE, every_seconds=3600),
        Periodic(SLA_CHECK, every_seconds=60),
    ]


def build_handlers(
    settings: Settings,
    tickets: TicketService,
    webhooks: WebhookService,
    listeners: Sequence[EventListener] = (),
) -> dict[str, Handler]:
    async def auto_close(run: JobRun) -> None:
        days = settings.tickets.auto_close_days
        if days <= 0:
            return
        cutoff = utcnow() - timedelta(days=days)
        async with run.db.transaction() as session:
            due = select(Ticket.id).where(Ticket.status == TicketStatus.resolved, Ticket.resolved_at <= cutoff)
            for ticket_id in (await session.execute(due.order_by(Ticket.id).limit(BATCH))).scalars().all():
                ticket = await crud_ticket.reload(session, ticket_id, for_update=True)  # in id order
                await tickets.close_automatically(session, ticket, resolved_before=cutoff)

    async def reindex(run: JobRun) -> None:
        if tickets.search is None:
            return
        first_id, run_id = int(run.payload.get("from_id", 1)), str(run.payload.get("run", ""))
        async with run.db.transaction() as session:
            done = await tickets.search.reindex_tickets(session, first_id, batch=BATCH)
            if done.last_id is not None:
                next_id = done.last_id + 1
                payload = {"from_id": next_id, "run": run_id}
                await enqueue(session, REINDEX, payload, idempotency_key=f"{REINDEX}:{run_id}:{next_id}")

    async def sla_check(run: JobRun) -> None:
        """sla.warning / sla.breached, once per ticket and target (app/services/sla.py), in
        batches of their own transaction; concurrent runs cannot both claim an alert."""
        sla = tickets.sla
        if sla is None:
            return
        while True:
            async with run.db.transaction() as session:
                sent = await sla.check(session, tickets, utcnow(), limit=BATCH)
            if sent < BATCH:
                return

    async def purge(run: JobRun) -> None:
        now = utcnow()
        async with run.db.transaction() as session:
            await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now))
            await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < now))
            await session.execute(delete(RealtimeToken).where(RealtimeToken.expires_at < now))
            await session.execute(delete(AuthSession).where(AuthSession.revoked_at < now - REVOKED_SESSIONS_KEPT))
            await session.execute(
                delete(Job).where(
                    Job.status.in_([JobStatus.done, JobStatus.failed]), Job.finished_at < now - FINISHED_JOBS_KEPT
                )
            )

    dispatch_events = event_dispatcher(settings, listeners)

    async def dispatch_event(run: JobRun) -> None:
        """One event alone: a worker without batches, or a failed batch's jobs one by one."""
        await dispatch_events([run])

    async def deliver_webhook(run: JobRun) -> None:
        async with run.db.transaction(write=False) as session:
            delivery = await crud_webhook.get_delivery(session, run.payload["delivery_id"])
            if delivery is None or delivery.status != DeliveryStatus.pending:
                return  # gone, or done by an earlier run whose acknowledgement was lost
            webhook = await crud_webhook.get(session, delivery.webhook_id)
            event = await session.get(TicketEvent, delivery.event_id)
        if webhook is None or event is None or not webhook.is_active:
            raise PermanentJobError("the webhook or its event is gone, or the webhook is disabled")
        try:  # the HTTP call happens outside any transaction
            status = await webhooks.deliver(webhook, delivery, event)
        except DeliveryFailed as exc:
            async with run.db.transaction() as session:
                current = await crud_webhook.get_delivery(session, delivery.id)
                if current is not None:
                    current.attempts = run.attempt
                    await webhooks.record_failure(session, current, exc, final=run.is_last_attempt)
            raise
        async with run.db.transaction() as session:
            current = await crud_webhook.get_delivery(session, delivery.id)
            if current is not None:
                current.attempts = run.attempt
                await webhooks.record_success(session, current, status)

    return {
        AUTO_CLOSE: auto_close,
        REINDEX: reindex,
        PURGE: purge,
        SLA_CHECK: sla_check,
        DISPATCH_EVENT: dispatch_event,
        DELIVER_WEBHOOK: deliver_webhook,
    }


def event_dispatcher(settings: Settings, listeners: Sequence[EventListener] = ()) -> BatchHandler:
    """The dispatch of timeline events, a batch of them in one transaction: a job per event,
    and under load the worker's transaction per job cost as much as the request that wrote
    the event (docs/benchmarks.md)."""

    async def dispatch_events(runs: list[JobRun]) -> None:
        """Fan each event out: a delivery (and its job) per webhook that wants it, then the
        listeners, in the order the events happened."""
        async with runs[0].db.transaction() as session:
            events = await crud_ticket.events_by_id(session, [run.payload["event_id"] for run in runs])
            if len(events) < len(runs):
                # Alone, the job whose event is gone fails; in a batch, the others run alone too.
                raise PermanentJobError("the event no longer exists")
            webhooks = await crud_webhook.active(session)
            for event in events:
                await _fan_out(session, settings, webhooks, event)
                for listener in listeners:
                    await listener(session, event)
            await finish_all_with(session, runs)

    return dispatch_events


async def _fan_out(session: AsyncSession, settings: Settings, webhooks: list[Webhook], event: TicketEvent) -> None:
    for webhook in webhooks:
        if not wants(webhook, event.type):
            continue
        delivery_id = await crud_webhook.add_delivery(
            session, webhook_id=webhook.id, event_id=event.id, event_type=event.type
        )
        if delivery_id is not None:
            await enqueue(
                session,
                DELIVER_WEBHOOK,
                {"delivery_id": delivery_id},
                max_attempts=settings.webhooks.max_attempts,
                idempotency_key=delivery_key(webhook.id, event.id),
            )


def build_worker(
    settings: Settings,
    db: Database,
    tickets: TicketService,
    webhooks: WebhookService,
    *,
    handles_unrouted: bool = True,
    routing_keys: Callable[[], Iterable[str]] = frozenset,
    extra_handlers: dict[str, Handler] | None = None,
    listeners: Sequence[EventListener] = (),
) -> Worker:
    """`handles_unrouted=False` makes a routed-only worker: it claims just the jobs of the bots
    this process holds (`routing_keys`), which is what `helpdesk serve --no-worker` runs.
    `extra_handlers` and `listeners` are the QQ helpdesk's jobs and notifications."""
    options = WorkerOptions(
        concurrency=settings.worker.concurrency,
        lease_seconds=settings.worker.lease_seconds,
        poll_seconds=settings.worker.poll_seconds,
        handles_unrouted=handles_unrouted,
        periodic=periodic_jobs() if handles_unrouted else [],
    )
    handlers = build_handlers(settings, tickets, webhooks, listeners) | (extra_handlers or {})
    batches = {DISPATCH_EVENT: event_dispatcher(settings, listeners)}
    worker = Worker(db, handlers, options, routing_keys=routing_keys, batch_handlers=batches)
    db.commit_hooks.append(worker.wake)
    return worker
