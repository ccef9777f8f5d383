"""The job kinds this app runs, and the periodic schedule. Each handler is idempotent: it
re-reads its rows and does nothing when its work is already done."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from app.core.config import Settings
from app.crud import crud_ticket
from app.db.base import utcnow
from app.db.session import Database
from app.jobs.worker import Handler, JobRun, Periodic, Worker, WorkerOptions
from app.models.auth_session import AuthSession, RefreshToken
from app.models.idempotency import IdempotencyRecord
from app.models.job import Job, JobStatus
from app.models.ticket import Ticket, TicketStatus
from app.services.ticket import TicketService

AUTO_CLOSE = "tickets.auto_close"
PURGE = "maintenance.purge"
BATCH = 500
FINISHED_JOBS_KEPT = timedelta(days=7)
REVOKED_SESSIONS_KEPT = timedelta(days=30)


def periodic_jobs() -> list[Periodic]:
    return [Periodic(AUTO_CLOSE, every_seconds=600), Periodic(PURGE, every_seconds=3600)]


def build_handlers(settings: Settings, tickets: TicketService) -> dict[str, Handler]:
    async def auto_close(run: JobRun) -> None:
        days = settings.tickets.auto_close_days
        if days <= 0:
            return
        cutoff = utcnow() - timedelta(days=days)
        async with run.db.transaction() as session:
            due = select(Ticket.id).where(Ticket.status == TicketStatus.resolved, Ticket.resolved_at <= cutoff)
            for ticket_id in (await session.execute(due.order_by(Ticket.id).limit(BATCH))).scalars().all():
                await tickets.close_automatically(session, await crud_ticket.reload(session, ticket_id))

    async def purge(run: JobRun) -> None:
        now = utcnow()
        async with run.db.transaction() as session:
            await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now))
            await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < now))
            await session.execute(delete(AuthSession).where(AuthSession.revoked_at < now - REVOKED_SESSIONS_KEPT))
            await session.execute(
                delete(Job).where(
                    Job.status.in_([JobStatus.done, JobStatus.failed]), Job.finished_at < now - FINISHED_JOBS_KEPT
                )
            )

    return {AUTO_CLOSE: auto_close, PURGE: purge}


def build_worker(settings: Settings, db: Database, tickets: TicketService, *, handles_unrouted: bool = True) -> Worker:
    options = WorkerOptions(
        concurrency=settings.worker.concurrency,
        lease_seconds=settings.worker.lease_seconds,
        poll_seconds=settings.worker.poll_seconds,
        handles_unrouted=handles_unrouted,
        periodic=periodic_jobs() if handles_unrouted else [],
    )
    worker = Worker(db, build_handlers(settings, tickets), options)
    db.commit_hooks.append(worker.wake)
    return worker
