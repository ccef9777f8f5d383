"""The durable job queue (transactional outbox): a row per unit of follow-up work."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow


class JobStatus(StrEnum):
    pending = "pending"  # waiting for run_at (first run or a retry)
    running = "running"  # claimed; lease until locked_until
    done = "done"
    failed = "failed"  # a permanent failure: retrying cannot help
    dead = "dead"  # gave up after max_attempts


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The claim query: due pending jobs, oldest first; and expired leases.
        Index("ix_jobs_status_run_at", "status", "run_at"),
        Index("ix_jobs_status_locked_until", "status", "locked_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    # Ids, not objects: a job re-reads its rows when it runs.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=16, validate_strings=True, name="jobstatus"),
        default=JobStatus.pending,
    )
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    # Enqueueing the same key twice creates one job (periodic slots, "notify X about event Y").
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # A OneBot self_id: only a process holding that bot's connection may claim the job.
    routing_key: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
