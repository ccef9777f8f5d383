"""The durable job queue: atomic with the business change, retried, never lost, claimed once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, event, select, update

from app.db.base import utcnow
from app.jobs.queue import enqueue
from app.jobs.worker import JobRun, Periodic, PermanentJobError, Worker, WorkerOptions, finish_all_with
from app.models.job import Job, JobStatus
from tests.conftest import PG_URL

FAST = WorkerOptions(backoff_base_seconds=0.0, lease_seconds=5, poll_seconds=0.05)


@pytest.fixture
def db(app):
    return app.state.ctx.db


async def until(condition, *, seconds: float, every: float = 0.05) -> None:
    """Poll the database until `condition()` holds: the other side is another process or a
    background task, with no event we could await."""
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110  # polling a database, see docstring
            await asyncio.sleep(every)


async def jobs(db) -> list[Job]:
    async with db.transaction(write=False) as session:
        return list((await session.execute(select(Job).order_by(Job.id))).scalars())


async def test_job_enqueued_in_a_rolled_back_transaction_never_runs(db):
    ran: list[int] = []

    async def handler(run: JobRun) -> None:
        ran.append(run.payload["n"])

    with pytest.raises(RuntimeError):
        await _enqueue_then_fail(db)
    async with db.transaction() as session:
        await enqueue(session, "test.record", {"n": 2})
    await Worker(db, {"test.record": handler}, FAST).run_until_idle()
    assert ran == [2]
    assert [(j.status, j.attempts) for j in await jobs(db)] == [(JobStatus.done, 1)]


async def _enqueue_then_fail(db) -> None:
    async with db.transaction() as session:
        await enqueue(session, "test.record", {"n": 1})
        raise RuntimeError("the business change failed")


async def test_failures_are_retried_until_they_succeed(db):
    calls = 0

    async def flaky(run: JobRun) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("provider timed out")

    async with db.transaction() as session:
        await enqueue(session, "test.flaky")
    worker = Worker(db, {"test.flaky": flaky}, FAST)
    await worker.run_until_idle()
    (job,) = await jobs(db)
    assert (job.status, job.attempts, calls) == (JobStatus.done, 3, 3)
    assert job.last_error is None


async def test_done_commits_with_the_handlers_work_or_not_at_all(db):
    """`finish_with`: the job is marked done inside the handler's transaction, so a failure
    after it undoes the work and the done together, and the job is retried."""
    tries = 0

    async def finishing(run: JobRun) -> None:
        nonlocal tries
        tries += 1
        async with run.db.transaction() as session:
            await enqueue(session, "test.follow_up", {"try": tries})
            await run.finish_with(session)
            if tries == 1:
                raise ConnectionError("lost before the commit")

    async with db.transaction() as session:
        await enqueue(session, "test.finishing")
    await Worker(db, {"test.finishing": finishing, "test.follow_up": _noop}, FAST).run_until_idle()
    first, *follow_ups = await jobs(db)
    assert (first.status, first.attempts) == (JobStatus.done, 2)
    assert [(job.payload, job.status) for job in follow_ups] == [({"try": 2}, JobStatus.done)]


async def test_a_job_its_handler_finished_is_not_written_again(db):
    async def finishing(run: JobRun) -> None:
        async with run.db.transaction() as session:
            await run.finish_with(session)

    async with db.transaction() as session:
        await enqueue(session, "test.finishing")
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        await Worker(db, {"test.finishing": finishing}, FAST).run_until_idle()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert len([s for s in statements if s.startswith("UPDATE jobs") and "finished_at" in s]) == 1
    assert [job.status for job in await jobs(db)] == [JobStatus.done]


async def test_retry_waits_for_its_backoff(db):
    async def failing(run: JobRun) -> None:
        raise ConnectionError("down")

    async with db.transaction() as session:
        await enqueue(session, "test.failing")
    worker = Worker(db, {"test.failing": failing}, WorkerOptions(backoff_base_seconds=60))
    assert await worker.run_until_idle() == 1  # one attempt; the retry is a minute away
    (job,) = await jobs(db)
    assert job.status == JobStatus.pending
    assert 25 <= (job.run_at - utcnow()).total_seconds() <= 61
    assert "ConnectionError: down" in job.last_error


async def test_permanent_failure_is_not_retried(db):
    async def broken(run: JobRun) -> None:
        raise PermanentJobError("ticket 42 no longer exists")

    async with db.transaction() as session:
        await enqueue(session, "test.broken")
    await Worker(db, {"test.broken": broken}, FAST).run_until_idle()
    (job,) = await jobs(db)
    assert (job.status, job.attempts) == (JobStatus.failed, 1)
    assert "no longer exists" in job.last_error


async def test_job_is_dead_after_max_attempts(db):
    async def always_failing(run: JobRun) -> None:
        raise ValueError("still broken")

    async with db.transaction() as session:
        await enqueue(session, "test.bad", max_attempts=3)
    await Worker(db, {"test.bad": always_failing}, FAST).run_until_idle()
    (job,) = await jobs(db)
    assert (job.status, job.attempts) == (JobStatus.dead, 3)


async def test_a_handler_that_overruns_its_lease_is_retried(db):
    async def slow(run: JobRun) -> None:
        if run.attempt == 1:
            await asyncio.sleep(5)

    async with db.transaction() as session:
        await enqueue(session, "test.slow")
    options = WorkerOptions(backoff_base_seconds=0.0, lease_seconds=0.2)
    await Worker(db, {"test.slow": slow}, options).run_until_idle()
    (job,) = await jobs(db)
    assert (job.status, job.attempts) == (JobStatus.done, 2)
    assert "TimeoutError" in (job.last_error or "TimeoutError")


async def test_unknown_kind_fails_permanently(db):
    async with db.transaction() as session:
        await enqueue(session, "test.nobody_handles_this")
    await Worker(db, {}, FAST).run_until_idle()
    (job,) = await jobs(db)
    assert job.status == JobStatus.failed


async def test_expired_lease_of_a_crashed_worker_is_taken_over(db):
    async with db.transaction() as session:
        await enqueue(session, "test.record")
    await _lease_every_job(db, "dead-worker", attempts=1, until=utcnow() - timedelta(seconds=1))  # then it died
    done: list[int] = []

    async def handler(run: JobRun) -> None:
        done.append(run.attempt)

    await Worker(db, {"test.record": handler}, FAST).run_until_idle()
    assert done == [2]
    assert (await jobs(db))[0].status == JobStatus.done


async def test_a_job_whose_workers_kept_dying_is_buried_not_run(db):
    async with db.transaction() as session:
        await enqueue(session, "test.record", max_attempts=2)
        await enqueue(session, "test.record", {"n": 2})
    # Both claimed by a worker that died, the first on its last attempt.
    await _lease_every_job(db, "dead-worker", attempts=2, until=utcnow() - timedelta(seconds=1))
    ran: list[dict] = []

    async def handler(run: JobRun) -> None:
        ran.append(run.payload)

    await Worker(db, {"test.record": handler}, FAST).run_until_idle()
    buried, retried = await jobs(db)
    assert ran == [{"n": 2}]
    assert (buried.status, buried.attempts, buried.locked_until) == (JobStatus.dead, 3, None)
    assert buried.last_error.endswith("lease expired on the last attempt")
    assert (retried.status, retried.attempts) == (JobStatus.done, 3)


async def test_live_lease_is_not_taken_over(db):
    async with db.transaction() as session:
        await enqueue(session, "test.record")
    await _lease_every_job(db, "busy-worker", attempts=1, until=utcnow() + timedelta(minutes=5))
    assert await Worker(db, {"test.record": _noop}, FAST).run_until_idle() == 0


async def _lease_every_job(db, worker_id: str, *, attempts: int, until: datetime) -> None:
    """As if `worker_id` had claimed every job, on its `attempts`-th attempt, until `until`."""
    async with db.transaction() as session:
        await session.execute(
            update(Job).values(status=JobStatus.running, attempts=attempts, locked_by=worker_id, locked_until=until)
        )


async def _enqueue_batch(db, numbers: range) -> None:
    async with db.transaction() as session:
        for n in numbers:
            await enqueue(session, "test.batch", {"n": n})


async def test_a_batch_kind_runs_its_due_jobs_in_one_call(db):
    calls: list[list[int]] = []

    async def batch(runs: list[JobRun]) -> None:
        calls.append([run.payload["n"] for run in runs])
        async with db.transaction() as session:
            await finish_all_with(session, runs)

    await _enqueue_batch(db, range(5))
    worker = Worker(db, {"test.batch": _noop}, FAST, batch_handlers={"test.batch": batch})
    assert await worker.run_until_idle() == 5
    assert calls == [[0, 1, 2, 3, 4]]
    assert [(job.status, job.attempts) for job in await jobs(db)] == [(JobStatus.done, 1)] * 5


async def test_a_failed_batch_runs_its_jobs_one_by_one_each_with_its_own_outcome(db):
    """The batch's transaction rolls back, its finish included; alone, the poison job fails
    and the others are done."""
    alone: list[int] = []

    async def batch(runs: list[JobRun]) -> None:
        async with db.transaction() as session:
            await finish_all_with(session, runs)
            raise RuntimeError("one of them is poison")

    async def one(run: JobRun) -> None:
        alone.append(run.payload["n"])
        if run.payload["n"] == 2:
            raise PermanentJobError("poison")

    await _enqueue_batch(db, range(4))
    await Worker(db, {"test.batch": one}, FAST, batch_handlers={"test.batch": batch}).run_until_idle()
    assert sorted(alone) == [0, 1, 2, 3]
    statuses = [job.status for job in await jobs(db)]
    assert statuses == [JobStatus.done, JobStatus.done, JobStatus.failed, JobStatus.done]


async def test_jobs_that_arrive_during_a_batch_make_the_next_batch(db):
    """...and their commits do not wake the worker for claims that would leave them again:
    one claim sees them waiting, the batch's end wakes the next."""
    calls: list[list[int]] = []
    release = asyncio.Event()
    claims: list[str] = []

    async def batch(runs: list[JobRun]) -> None:
        calls.append([run.payload["n"] for run in runs])
        await release.wait()

    def record(conn, cursor, statement, *args) -> None:
        if "ORDER BY jobs.run_at" in statement:
            claims.append(statement)

    options = WorkerOptions(poll_seconds=3600)
    worker = Worker(db, {"test.batch": _noop}, options, batch_handlers={"test.batch": batch})
    await _enqueue_batch(db, range(3))  # before the loop starts: its first claim sees all three
    db.commit_hooks.append(worker.wake)  # as build_worker does
    loop = asyncio.create_task(worker.run_forever())
    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        await until(lambda: _true(len(calls) == 1), seconds=10)
        claims.clear()
        for n in range(3, 7):  # one commit each: four wakes
            await _enqueue_batch(db, range(n, n + 1))
            await asyncio.sleep(0.05)
        claims_during_the_batch = len(claims)
        release.set()
        await until(lambda: _true(len(calls) == 2), seconds=10)
        await until(lambda: _all_done(db, 7), seconds=10)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        db.commit_hooks.remove(worker.wake)
        await worker.stop()
        loop.cancel()
    assert calls == [[0, 1, 2], [3, 4, 5, 6]]
    assert claims_during_the_batch == 1


async def test_commits_soon_after_a_claim_gather_into_one_claim(db):
    """A stream of commits (a create each) right after a claim: the worker waits out
    `gather_seconds` since that claim, then takes what arrived in one claim, one batch."""
    calls: list[list[int]] = []

    async def batch(runs: list[JobRun]) -> None:
        calls.append([run.payload["n"] for run in runs])

    options = WorkerOptions(poll_seconds=3600, gather_seconds=2.0)
    worker = Worker(db, {"test.batch": _noop}, options, batch_handlers={"test.batch": batch})
    db.commit_hooks.append(worker.wake)
    loop = asyncio.create_task(worker.run_forever())
    try:
        await _enqueue_batch(db, range(1))
        await until(lambda: _true(len(calls) == 1), seconds=10)  # idle: at once
        for n in range(1, 5):
            await _enqueue_batch(db, range(n, n + 1))
        await until(lambda: _all_done(db, 5), seconds=10)
    finally:
        db.commit_hooks.remove(worker.wake)
        await worker.stop()
        loop.cancel()
    assert calls == [[0], [1, 2, 3, 4]]


async def _true(value: bool) -> bool:
    return value


async def _all_done(db, count: int) -> bool:
    return [job.status for job in await jobs(db)] == [JobStatus.done] * count


async def _status_is(db, status: JobStatus) -> bool:
    return (await jobs(db))[0].status == status


async def _ran_one(db) -> bool:
    return [j.status for j in await jobs(db)] == [JobStatus.done]


async def _noop(run: JobRun) -> None:
    return None


async def test_routed_jobs_go_only_to_the_process_holding_that_bot(db):
    async with db.transaction() as session:
        await enqueue(session, "test.send", routing_key="10001")
        await enqueue(session, "test.plain")
    plain_only = Worker(db, {"test.send": _noop, "test.plain": _noop}, FAST)
    assert await plain_only.run_until_idle() == 1
    api_only = Worker(
        db,
        {"test.send": _noop},
        WorkerOptions(handles_unrouted=False, backoff_base_seconds=0),
        routing_keys=lambda: {"10001"},
    )
    assert await api_only.run_until_idle() == 1
    assert [j.status for j in await jobs(db)] == [JobStatus.done, JobStatus.done]


async def test_routed_only_worker_without_bots_takes_nothing(db):
    async with db.transaction() as session:
        await enqueue(session, "test.plain")
        await enqueue(session, "test.send", routing_key="10001")
    routed_only = Worker(db, {"test.plain": _noop, "test.send": _noop}, WorkerOptions(handles_unrouted=False))
    assert await routed_only.run_until_idle() == 0
    assert {j.status for j in await jobs(db)} == {JobStatus.pending}


async def test_enqueue_with_the_same_key_adds_one_job(db):
    for _ in range(2):
        async with db.transaction() as session:
            await enqueue(session, "test.notify", {"event": 7}, idempotency_key="notify:7:user:3")
    assert len(await jobs(db)) == 1


async def test_periodic_slot_is_scheduled_once_by_several_workers(db):
    options = WorkerOptions(periodic=[Periodic("test.tick", every_seconds=60)])
    workers = [Worker(db, {"test.tick": _noop}, options) for _ in range(3)]
    now = utcnow()
    await asyncio.gather(*(w.schedule_periodic(now) for w in workers))
    assert [j.kind for j in await jobs(db)] == ["test.tick"]
    await workers[0].schedule_periodic(now + timedelta(seconds=60))
    assert len(await jobs(db)) == 2


async def test_a_worker_schedules_each_periodic_slot_once(db):
    """The loop turns after every commit: a slot this worker already enqueued is not written
    again, even after its job row is gone (purged), until the next slot begins."""
    options = WorkerOptions(periodic=[Periodic("test.tick", every_seconds=60)])
    worker = Worker(db, {"test.tick": _noop}, options)
    now = utcnow().replace(second=0, microsecond=0)
    await worker.schedule_periodic(now)
    async with db.transaction() as session:
        await session.execute(delete(Job))
    await worker.schedule_periodic(now + timedelta(seconds=59))
    assert await jobs(db) == []
    await worker.schedule_periodic(now + timedelta(seconds=60))
    assert [j.payload["slot"] for j in await jobs(db)] == [int(now.timestamp()) // 60 + 1]


async def test_commit_wakes_the_worker_at_once(db):
    worker = Worker(db, {"test.record": _noop}, WorkerOptions(poll_seconds=3600))
    db.commit_hooks.append(worker.wake)
    task = asyncio.create_task(worker.run_forever())
    try:
        await asyncio.sleep(0)  # let it reach its idle wait
        async with db.transaction() as session:
            await enqueue(session, "test.record")
        await until(lambda: _status_is(db, JobStatus.done), seconds=5)  # far below the hour-long poll
    finally:
        await worker.stop()
        task.cancel()
        db.commit_hooks.remove(worker.wake)


async def test_an_idle_worker_with_a_schedule_sleeps(db):
    """Enqueueing a periodic slot wakes the worker like any enqueue; scheduled again on every
    turn, the worker woke itself for ever (a core and SQLite's write lock, idle)."""
    options = WorkerOptions(poll_seconds=3600, periodic=[Periodic("test.tick", every_seconds=3600)])
    worker = Worker(db, {"test.tick": _noop}, options)
    db.commit_hooks.append(worker.wake)
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    task = asyncio.create_task(worker.run_forever())
    try:
        await until(lambda: _ran_one(db), seconds=5)  # the slot's job
        await asyncio.sleep(0.2)  # the turns its own commits caused
        event.listen(db.engine.sync_engine, "before_cursor_execute", record)
        await asyncio.sleep(0.5)
    finally:
        if event.contains(db.engine.sync_engine, "before_cursor_execute", record):
            event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        await worker.stop()
        task.cancel()
        db.commit_hooks.remove(worker.wake)
    assert statements == []


async def test_a_rolled_back_enqueue_wakes_nobody(db):
    woken: list[bool] = []
    db.commit_hooks.append(lambda: woken.append(True))
    try:
        with pytest.raises(RuntimeError):
            await _enqueue_then_fail(db)
        async with db.transaction() as session:
            await session.execute(select(1))
        assert woken == []
    finally:
        db.commit_hooks.pop()


# --- several processes (PostgreSQL: SKIP LOCKED) ----------------------------------------------

postgres_only = pytest.mark.skipif(PG_URL is None, reason="several worker processes need PostgreSQL")
SCRIPT = Path(__file__).with_name("worker_process.py")
ROOT = str(Path(__file__).resolve().parents[2])


async def _start_worker(url: str, worker_id: str, lease: float) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": ROOT}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        url,
        worker_id,
        str(lease),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"ready"
    return process


def _go(*processes: asyncio.subprocess.Process) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")


@postgres_only
async def test_two_worker_processes_run_each_of_500_jobs_once(db, database_url):
    if db.dialect != "postgresql":
        pytest.skip("SQLite runs one worker process")
    async with db.transaction() as session:
        for _ in range(500):
            await enqueue(session, "test.work", {"sleep": 0.01})
    workers = [await _start_worker(database_url, f"w{i}", 30) for i in range(2)]
    _go(*workers)
    async with asyncio.timeout(120):
        results = [await w.communicate() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err.decode()[-800:] for _, err in results]
    async with db.transaction(write=False) as session:
        rows = (await session.execute(select(Job.status, Job.attempts, Job.locked_by))).all()
    assert len(rows) == 500
    assert {(status, attempts) for status, attempts, _ in rows} == {(JobStatus.done, 1)}  # each ran once
    assert {locked_by for *_, locked_by in rows} == {"w0", "w1"}  # and both did work


@postgres_only
async def test_job_of_a_killed_worker_finishes_after_its_lease(db, database_url):
    if db.dialect != "postgresql":
        pytest.skip("several worker processes need PostgreSQL")
    async with db.transaction() as session:
        await enqueue(session, "test.work", {"sleep": 30})
    doomed = await _start_worker(database_url, "doomed", 1.5)
    _go(doomed)
    await until(lambda: _status_is(db, JobStatus.running), seconds=20)  # it holds the job: kill it mid-run
    doomed.send_signal(signal.SIGKILL)
    await doomed.wait()
    async with db.transaction() as session:  # the survivor's run is quick
        await session.execute(update(Job).values(payload={"sleep": 0}))
    (held,) = await jobs(db)
    assert held.status == JobStatus.running  # still the dead worker's, until its lease lapses
    await asyncio.sleep(max(0.0, (held.locked_until - utcnow()).total_seconds()) + 0.1)
    survivor = await _start_worker(database_url, "survivor", 30)
    _go(survivor)
    async with asyncio.timeout(30):
        await survivor.wait()
    (job,) = await jobs(db)
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.done, 2, "survivor")
