"""The job queue for admins: what is waiting, what failed, and a second chance for it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.v1.dependencies import AdminUser, PageDep, SessionDep
from app.core.errors import Forbidden, InvalidCursor, JobNotFound, JobNotRetryable, problem_responses
from app.core.pagination import after_id, id_page
from app.crud import crud_job
from app.db.base import utcnow
from app.models.job import Job, JobStatus
from app.schemas.common import Page
from app.schemas.job import JobCounts, JobRead

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=Page[JobRead], responses=problem_responses(Forbidden, InvalidCursor))
async def list_jobs(
    admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[JobRead]:
    """Newest first."""
    rows = await crud_job.list_page(
        session, status=status, kind=kind, before_id=after_id(page.cursor), limit=page.limit
    )
    rows, next_cursor = id_page(rows, page.limit)
    return Page[JobRead](items=[JobRead.model_validate(j) for j in rows], next_cursor=next_cursor)


@router.get("/counts", response_model=JobCounts, responses=problem_responses(Forbidden))
async def job_counts(admin: AdminUser, session: SessionDep) -> JobCounts:
    oldest = await crud_job.oldest_due_run_at(session)
    lag = (utcnow() - oldest).total_seconds() if oldest is not None else None
    return JobCounts(counts=await crud_job.counts(session), oldest_due_seconds=lag)


@router.get("/{job_id}", response_model=JobRead, responses=problem_responses(Forbidden, JobNotFound))
async def read_job(job_id: int, admin: AdminUser, session: SessionDep) -> Job:
    job = await crud_job.get(session, job_id)
    if job is None:
        raise JobNotFound
    return job


@router.post(
    "/{job_id}/retry", response_model=JobRead, responses=problem_responses(Forbidden, JobNotFound, JobNotRetryable)
)
async def retry_job(job_id: int, admin: AdminUser, session: SessionDep) -> Job:
    """A failed or dead job runs again, with a fresh set of attempts."""
    job = await crud_job.get(session, job_id)
    if job is None:
        raise JobNotFound
    if not await crud_job.requeue(session, job_id):
        raise JobNotRetryable
    await session.refresh(job)
    return job
