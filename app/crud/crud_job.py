"""Jobs as the admin sees them: lists, counts, retries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.session import WAKE_AFTER_COMMIT
from app.models.job import Job, JobStatus


async def list_page(
    session: AsyncSession, *, status: JobStatus | None, kind: str | None, before_id: int | None, limit: int
) -> list[Job]:
    """Newest first (keyset on id), one extra row to tell whether another page follows."""
    stmt = select(Job).order_by(Job.id.desc()).limit(limit + 1)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    if before_id is not None:
        stmt = stmt.where(Job.id < before_id)
    return list((await session.execute(stmt)).scalars())


async def get(session: AsyncSession, job_id: int) -> Job | None:
    return await session.get(Job, job_id)


async def counts(session: AsyncSession) -> dict[JobStatus, int]:
    rows = (await session.execute(select(Job.status, func.count()).group_by(Job.status))).all()
    found = {JobStatus(status): int(count) for status, count in rows}
    return {status: found.get(status, 0) for status in JobStatus}


async def oldest_due_run_at(session: AsyncSession) -> datetime | None:
    stmt = select(func.min(Job.run_at)).where(Job.status == JobStatus.pending, Job.run_at <= utcnow())
    return (await session.execute(stmt)).scalar_one()


async def queue_summary(session: AsyncSession) -> list[tuple[str, JobStatus, int, datetime | None]]:
    """(kind, status, count, oldest run_at) of the jobs not done, in one aggregate query (the
    `status` index keeps it off the done rows)."""
    unfinished = [JobStatus.pending, JobStatus.running, JobStatus.failed, JobStatus.dead]
    stmt = (
        select(Job.kind, Job.status, func.count(), func.min(Job.run_at))
        .where(Job.status.in_(unfinished))
        .group_by(Job.kind, Job.status)
    )
    rows = await session.execute(stmt)
    return [(kind, JobStatus(status), int(count), oldest) for kind, status, count, oldest in rows]


async def requeue(session: AsyncSession, job_id: int) -> bool:
    """A failed or dead job gets a fresh set of attempts, due now; False if it was neither."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_([JobStatus.failed, JobStatus.dead]))
        .values(status=JobStatus.pending, attempts=0, run_at=utcnow(), finished_at=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    requeued = bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult for DML
    if requeued:
        session.info[WAKE_AFTER_COMMIT] = True
    return requeued
