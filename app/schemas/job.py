"""Job schemas for the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.models.job import JobStatus
from app.schemas.common import ReadModel


class JobRead(ReadModel):
    id: int
    kind: str
    status: JobStatus
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_at: datetime
    locked_until: datetime | None
    locked_by: str | None
    last_error: str | None
    routing_key: str | None
    created_at: datetime
    finished_at: datetime | None


class JobCounts(ReadModel):
    counts: dict[JobStatus, int]
    # Age of the oldest job waiting to run (pending and due), in seconds: the queue's lag.
    oldest_due_seconds: float | None
