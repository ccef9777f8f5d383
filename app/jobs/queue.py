"""Enqueueing: a job row written in the caller's transaction, so it exists iff the change does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.session import WAKE_AFTER_COMMIT
from app.db.statements import PerDialect
from app.models.job import Job, JobStatus


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    max_attempts: int = 8,
    idempotency_key: str | None = None,
    routing_key: str | None = None,
) -> None:
    """Add a job to the caller's transaction. With an idempotency key, a second enqueue of the
    same key (a periodic slot taken by another worker, a retried request) adds nothing."""
    now = utcnow()
    values = {
        "kind": kind,
        "payload": payload or {},
        "status": JobStatus.pending,
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "idempotency_key": idempotency_key,
        "routing_key": routing_key,
        "created_at": now,
    }
    await session.execute(_insert_job(session) if idempotency_key is None else _insert_keyed_job(session), values)
    session.info[WAKE_AFTER_COMMIT] = True  # Database wakes the worker once this commits


_JOBS = Job.__table__
_insert_job = PerDialect(lambda insert: insert(_JOBS))
_insert_keyed_job = PerDialect(
    lambda insert: insert(_JOBS).on_conflict_do_nothing(index_elements=[_JOBS.c.idempotency_key])
)
