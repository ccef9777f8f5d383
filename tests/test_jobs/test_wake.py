"""A job enqueued in one process wakes the worker of another at once (Redis), not at its poll."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from app.db.session import Database
from app.jobs.queue import enqueue
from app.jobs.wake import RedisSignal
from app.jobs.worker import JobRun, Worker, WorkerOptions
from tests.conftest import REDIS_URL


@pytest.mark.skipif(REDIS_URL is None, reason="HELPDESK_TEST_REDIS_URL is not set (CI sets it)")
async def test_commit_in_one_process_wakes_a_worker_in_another(app, database_url):
    ran = asyncio.Event()

    async def handler(run: JobRun) -> None:
        ran.set()

    api_redis, worker_redis = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    api_db = app.state.ctx.db  # "process" A: where the request commits
    worker_db = Database(database_url)  # "process" B: its own engine, its own worker
    api_signal, worker_signal = RedisSignal(api_redis), RedisSignal(worker_redis)
    api_db.commit_hooks.append(api_signal.notify)
    worker = Worker(worker_db, {"test.wake": handler}, WorkerOptions(poll_seconds=3600))
    tasks = [asyncio.create_task(worker_signal.listen(worker.wake)), asyncio.create_task(worker.run_forever())]
    try:
        async with asyncio.timeout(5):
            await worker_signal.subscribed.wait()
        await asyncio.sleep(0.05)  # let the worker reach its hour-long wait
        async with api_db.transaction() as session:
            await enqueue(session, "test.wake")
        async with asyncio.timeout(5):  # far below the poll
            await ran.wait()
    finally:
        api_db.commit_hooks.remove(api_signal.notify)
        await worker.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await api_signal.aclose()
        await api_redis.aclose()
        await worker_redis.aclose()
        await worker_db.dispose()
