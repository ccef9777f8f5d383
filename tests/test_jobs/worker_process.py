"""A worker in a process of its own, for the multi-process tests: `python worker_process.py URL
ID LEASE` says "ready", waits for a line on stdin (so several start together), then runs
`test.work` jobs (each sleeps `payload.sleep` seconds) until none is left."""

from __future__ import annotations

import asyncio
import sys

from app.db.session import Database
from app.jobs.worker import JobRun, Worker, WorkerOptions


async def work(run: JobRun) -> None:
    await asyncio.sleep(float(run.payload.get("sleep", 0)))


async def main(url: str, worker_id: str, lease: float) -> None:
    db = Database(url)
    worker = Worker(
        db, {"test.work": work}, WorkerOptions(concurrency=8, batch_size=25, lease_seconds=lease), worker_id=worker_id
    )
    try:
        await worker.run_until_idle()
    finally:
        await db.dispose()


if __name__ == "__main__":
    sys.stdout.write("ready\n")  # the test waits for this line...
    sys.stdout.flush()
    sys.stdin.readline()  # ...and answers when every worker is up
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
