"""Enqueueing: a job row written in the caller's transaction, so it exists iff the change does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.session import WAKE_AFTER_COMMIT
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
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Job).values(**values)
    if idempotency_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=[Job.idempotency_key])
    await session.execute(stmt)
    session.info[WAKE_AFTER_COMMIT] = True  # Database wakes the worker once this commits
