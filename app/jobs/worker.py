"""The worker: claims due jobs, runs their handlers, retries with backoff, never loses one.

- Claiming takes a batch in one short write transaction: `FOR UPDATE SKIP LOCKED` on
  PostgreSQL (workers in several processes never claim the same row); SQLite has one writer
  at a time anyway. A claim sets a lease (`locked_until`); a job whose lease expired (its
  worker crashed) is claimed again.
- Handlers get the job's ids and run their own short transactions (a handler may wait on
  the network; it must not hold SQLite's write lock meanwhile). They must be idempotent: a
  job runs at least once. A handler whose work is one write transaction ends it with
  `run.finish_with(session)`: done commits with the work.
- Batches: a kind with a batch handler (the timeline's event dispatch, a job per event) is
  claimed up to `batch_size` jobs at a time and run as one unit of work in one transaction,
  one batch of a kind at a time per worker: the jobs that arrive meanwhile make the next
  batch. A batch that fails runs again one job at a time, so each job gets its own outcome
  (a poison job fails alone).
- Failure: `PermanentJobError` -> failed (no retry); anything else, a timeout included ->
  retried after an exponential backoff with jitter, until `max_attempts` -> dead.
  `RetryLater` -> run again after its delay, the attempt not counted: the handler could not
  even try (e.g. every LLM provider is paused by its circuit breaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.logging import redact
from app.db.base import utcnow
from app.db.session import Database
from app.jobs.queue import enqueue
from app.models.job import Job, JobStatus

log = logging.getLogger(__name__)


class PermanentJobError(Exception):
    """Raised by a handler when retrying cannot help (the row is gone, the input is invalid)."""


class RetryLater(Exception):
    """Raised by a handler that could not start its work yet and tried nothing (a dependency
    paused for `delay` seconds): the job waits that long and keeps its attempts. A handler
    must raise it only when nothing was tried, or a job could be postponed forever."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay


@dataclass
class JobRun:
    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    db: Database
    worker_id: str = ""
    finished: bool = False  # set by `finish_with`: the worker has nothing left to write

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    @property
    def is_over_its_attempts(self) -> bool:
        return self.attempt > self.max_attempts

    async def finish_with(self, session: AsyncSession) -> None:
        """Marks the job done inside the handler's own write transaction, as its last step:
        the outcome commits with the work, and the worker spares a transaction of its own
        (SQLite's write lock once less per job). A failed commit raises out of the handler,
        which retries the job as any failure does."""
        await finish_all_with(session, [self])


async def finish_all_with(session: AsyncSession, runs: list[JobRun]) -> None:
    """`JobRun.finish_with` for a batch (one worker's runs): one UPDATE for all of them."""
    await session.execute(_leased([run.id for run in runs], runs[0].worker_id).values(_done_values()))
    for run in runs:
        run.finished = True


Handler = Callable[[JobRun], Awaitable[None]]
# Runs several jobs of one kind as one unit of work (see the module docstring).
BatchHandler = Callable[[list[JobRun]], Awaitable[None]]


@dataclass(frozen=True)
class Periodic:
    """Enqueue `kind` once per `every_seconds` slot, however many workers run the schedule."""

    kind: str
    every_seconds: int


@dataclass
class WorkerOptions:
    batch_size: int = 20
    concurrency: int = 4
    lease_seconds: float = 300.0
    poll_seconds: float = 1.0
    # A commit wakes the worker at once, unless it claimed less than this ago: then it waits
    # out the rest, and the jobs of the commits meanwhile make one batch (one claim and, for a
    # batch kind, one transaction) instead of a claim each. Idle, a job starts at once.
    gather_seconds: float = 0.05
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 3600.0
    handles_unrouted: bool = True
    periodic: list[Periodic] = field(default_factory=list)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        db: Database,
        handlers: dict[str, Handler],
        settings: WorkerOptions | None = None,
        *,
        worker_id: str | None = None,
        routing_keys: Callable[[], Iterable[str]] = frozenset,
        batch_handlers: dict[str, BatchHandler] | None = None,
    ) -> None:
        self.db = db
        self.handlers = handlers
        # A kind here needs a handler in `handlers` too: a failed batch runs one job at a time.
        self.batch_handlers = batch_handlers or {}
        self._batching: set[str] = set()  # kinds with a batch running in this worker
        # Due jobs wait for a batch of their kind to end: commits do not wake the loop for
        # claims that would leave them again (on SQLite, a write transaction each), the end does.
        self._held_back = False
        self.settings = settings or WorkerOptions()
        self.worker_id = worker_id or default_worker_id()
        self.routing_keys = routing_keys
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._scheduled_slots: dict[str, int] = {}  # periodic kind -> the last slot this worker enqueued
        self._last_claim = -math.inf  # loop time
        self._more_due = False  # the last claim left due jobs it could have taken

    def wake(self) -> None:
        if not self._held_back:
            self._wake.set()

    # --- the loop -------------------------------------------------------------------------

    async def run_forever(self) -> None:
        while not self._stopping.is_set():
            # Cleared before claiming: a commit that lands while we claim keeps it set, so the
            # wait below returns at once instead of sleeping through that job.
            self._wake.clear()
            try:
                await self.schedule_periodic()
                claimed = await self.claim_and_start()
            except Exception:  # the database may be restarting: log, wait, try again
                log.exception("job worker loop failed; retrying")
                claimed = 0
            if claimed and self._more_due:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_seconds)
            await self._gather()

    async def _gather(self) -> None:
        """Waits until `gather_seconds` have passed since the last claim (see WorkerOptions)."""
        pause = self._last_claim + self.settings.gather_seconds - asyncio.get_running_loop().time()
        if pause > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=pause)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; let running jobs finish within the grace, then cancel them (their
        lease lapses and another worker takes them over: nothing is lost)."""
        self._stopping.set()
        self._wake.set()
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def run_until_idle(self) -> int:
        """Run due jobs until none is left (tests and `helpdesk worker --once`)."""
        total = 0
        while claimed := await self.claim_and_start():
            total += claimed
            await asyncio.gather(*list(self._running), return_exceptions=True)
        await asyncio.gather(*list(self._running), return_exceptions=True)
        return total

    async def claim_and_start(self) -> int:
        """Claims and starts what the free slots allow; the number of jobs claimed."""
        free = self.settings.concurrency - len(self._running)
        if free <= 0:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            self._more_due = True
            return 1
        runs = await self.claim(free)
        for unit in self._units(runs):
            work = self._run(unit[0]) if unit[0].kind not in self.batch_handlers else self._run_batch(unit)
            task = asyncio.create_task(work)
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(runs)

    def _units(self, runs: list[JobRun]) -> list[list[JobRun]]:
        """The claimed jobs as units of work: one per job, one per batch kind."""
        units: list[list[JobRun]] = []
        batches: dict[str, list[JobRun]] = {}
        for run in runs:
            if run.kind not in self.batch_handlers:
                units.append([run])
            elif run.kind in batches:
                batches[run.kind].append(run)
            else:
                batches[run.kind] = [run]
                units.append(batches[run.kind])
        return units

    # --- claiming -------------------------------------------------------------------------

    async def claim(self, units: int) -> list[JobRun]:
        """Due jobs for up to `units` units of work (a job, or a batch of up to `batch_size`
        jobs of a batch kind), oldest first, leased to this worker."""
        self._last_claim = asyncio.get_running_loop().time()
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        keys = list(self.routing_keys())
        if not keys and not self.settings.handles_unrouted:
            return []  # a routed-only worker holding no bot has nothing it may take
        routed = Job.routing_key.in_(keys) if keys else false()
        unrouted = Job.routing_key.is_(None) if self.settings.handles_unrouted else false()
        stmt = (
            select(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts)
            .where(
                or_(
                    and_(Job.status == JobStatus.pending, Job.run_at <= now),
                    and_(Job.status == JobStatus.running, Job.locked_until < now),
                ),
                or_(routed, unrouted),
            )
            .order_by(Job.run_at, Job.id)
            .limit(self.settings.batch_size)
        )
        if self.db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        # Core rows and UPDATEs by id, not ORM objects: under load the worker claims about once
        # per job, and the unit of work cost more than the claim's statements.
        async with self.db.transaction() as session:
            runs = [
                JobRun(row.id, row.kind, dict(row.payload), row.attempts + 1, row.max_attempts, self.db, self.worker_id)
                for row in await session.execute(stmt)
            ]
            leased = self._pick(units, [run for run in runs if not run.is_over_its_attempts])
            self._more_due = len(runs) == self.settings.batch_size or len(leased) < len(runs)
            if leased:
                running = {"status": JobStatus.running, "locked_until": lease, "locked_by": self.worker_id}
                await session.execute(_counting_an_attempt([run.id for run in leased]).values(running))
            if exhausted := [run.id for run in runs if run.is_over_its_attempts]:  # its workers kept dying mid-run
                await session.execute(_counting_an_attempt(exhausted).values(_buried(now)))
        return leased

    def _pick(self, units: int, candidates: list[JobRun]) -> list[JobRun]:
        """The candidates that fit in `units`, in order. A batch kind's jobs join its batch
        (one unit), unless a batch of that kind is running here: they wait for it to end
        (it wakes the loop), so under load the jobs arriving meanwhile make the next batch
        instead of a transaction each. The rows not picked stay pending, free for anyone."""
        picked: list[JobRun] = []
        batch_kinds: set[str] = set()
        self._held_back = False
        for run in candidates:
            if run.kind in self._batching:
                self._held_back = True
                continue
            if run.kind in batch_kinds:
                picked.append(run)
            elif units > 0:
                units -= 1
                picked.append(run)
                if run.kind in self.batch_handlers:
                    batch_kinds.add(run.kind)
        return picked

    # --- running --------------------------------------------------------------------------

    async def _run(self, job: JobRun) -> None:
        async with self._slots:
            handler = self.handlers.get(job.kind)
            try:
                if handler is None:
                    raise PermanentJobError(f"no handler for job kind {job.kind!r}")
                async with asyncio.timeout(self.settings.lease_seconds):
                    await handler(job)
            except PermanentJobError as exc:
                log.warning("job %s (%s) failed permanently: %s", job.id, job.kind, exc)
                await self._finish(job, JobStatus.failed, error=str(exc))
            except RetryLater as exc:
                await self._postpone(job, exc)
            except Exception as exc:
                await self._retry_or_bury(job, exc)
            else:
                if not job.finished:
                    await self._finish(job, JobStatus.done)

    async def _run_batch(self, runs: list[JobRun]) -> None:
        kind = runs[0].kind
        self._batching.add(kind)
        try:
            async with self._slots:
                try:
                    async with asyncio.timeout(self.settings.lease_seconds):
                        await self.batch_handlers[kind](runs)
                except Exception as exc:
                    log.warning("a batch of %s %s jobs failed; running them one by one: %s", len(runs), kind, exc)
                    failed = True
                else:
                    failed = False
            if failed:
                for run in runs:
                    run.finished = False  # its transaction rolled back, finish_with's UPDATE too
                    await self._run(run)
            elif unfinished := [run for run in runs if not run.finished]:
                async with self.db.transaction() as session:
                    await finish_all_with(session, unfinished)
        finally:
            self._batching.discard(kind)
            self._held_back = False
            self.wake()  # the jobs of this kind that waited for the batch

    async def _finish(self, job: JobRun, status: JobStatus, *, error: str | None = None) -> None:
        async with self.db.transaction() as session:
            await session.execute(self._mine(job).values(_done_values(status, error)))

    async def _retry_or_bury(self, job: JobRun, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        async with self.db.transaction() as session:
            max_attempts = (await session.execute(select(Job.max_attempts).where(Job.id == job.id))).scalar_one()
            if job.attempt >= max_attempts:
                log.error("job %s (%s) is dead after %s attempts: %s", job.id, job.kind, job.attempt, error)
                values: dict[str, Any] = {"status": JobStatus.dead, "finished_at": utcnow()}
            else:
                delay = self.backoff(job.attempt)
                log.warning(
                    "job %s (%s) attempt %s failed, retry in %.1fs: %s", job.id, job.kind, job.attempt, delay, error
                )
                values = {"status": JobStatus.pending, "run_at": utcnow() + timedelta(seconds=delay)}
            await session.execute(self._mine(job).values(locked_until=None, last_error=_clip(error), **values))

    async def _postpone(self, job: JobRun, later: RetryLater) -> None:
        log.info("job %s (%s) postponed %.2fs: %s", job.id, job.kind, later.delay, later)
        run_at = utcnow() + timedelta(seconds=max(0.0, later.delay))
        async with self.db.transaction() as session:
            await session.execute(
                self._mine(job).values(
                    status=JobStatus.pending, run_at=run_at, locked_until=None, attempts=Job.attempts - 1
                )
            )

    def _mine(self, job: JobRun) -> Any:
        return _leased([job.id], self.worker_id)

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.backoff_cap_seconds, self.settings.backoff_base_seconds * 2 ** (attempt - 1))
        return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311  # jitter, not security

    # --- schedule -------------------------------------------------------------------------

    async def schedule_periodic(self, now: datetime | None = None) -> None:
        """Enqueues each periodic kind's current slot, once per slot and worker: the loop turns
        after every commit, and a write transaction each turn (SQLite's one writer lock, three
        upserts) cost more than the jobs it woke for. Other workers' enqueues of the same slot
        meet the idempotency key."""
        now = now or utcnow()
        due: dict[str, int] = {}
        for item in self.settings.periodic:
            slot = int(now.timestamp()) // item.every_seconds
            if self._scheduled_slots.get(item.kind) != slot:
                due[item.kind] = slot
        if not due:
            return
        async with self.db.transaction() as session:
            for kind, slot in due.items():
                await enqueue(session, kind, {"slot": slot}, idempotency_key=f"periodic:{kind}:{slot}")
        self._scheduled_slots.update(due)


def _counting_an_attempt(ids: list[int]) -> Any:
    return (
        update(Job)
        .where(Job.id.in_(ids))
        .values(attempts=Job.attempts + 1)
        .execution_options(synchronize_session=False)
    )


def _buried(now: datetime) -> dict[str, Any]:
    last_error = func.coalesce(Job.last_error, "") + "\nlease expired on the last attempt"
    return {"status": JobStatus.dead, "finished_at": now, "locked_until": None, "last_error": last_error}


def _leased(job_ids: list[int], worker_id: str) -> Any:
    """An UPDATE of the jobs while their lease is `worker_id`'s: a worker that overran its
    lease must not overwrite the outcome of the worker that took the job over."""
    return (
        update(Job)
        .where(Job.id.in_(job_ids), Job.locked_by == worker_id, Job.status == JobStatus.running)
        .execution_options(synchronize_session=False)
    )


def _done_values(status: JobStatus = JobStatus.done, error: str | None = None) -> dict[str, Any]:
    return {"status": status, "finished_at": utcnow(), "locked_until": None, "last_error": _clip(error)}


def _clip(error: str | None) -> str | None:
    return redact(error)[:4000] if error else None
