"""A `helpdesk worker` process killed in the middle of a job (issue 9): the job completes under a
new worker, and the outside world sees it done once, apart from the one repeat at-least-once
delivery allows for the job that was cut.

Unlike tests/test_jobs/test_worker.py (a bare Worker in a subprocess sleeping through a test
job), this runs the real command line with the real handlers: webhook deliveries of new
tickets to a receiver on 127.0.0.1, one of them held open by the receiver when SIGKILL lands.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.jobs.handlers import DELIVER_WEBHOOK
from app.models.job import Job, JobStatus
from app.models.webhook import DeliveryStatus, WebhookDelivery
from tests.conftest import TEST_SECRET, bearer
from tests.fakes.server import serving
from tests.reliability.conftest import scaled

log = logging.getLogger(__name__)

TICKETS = scaled(12, 200)  # one webhook delivery each
HELD = 4  # the receiver holds the 4th delivery to arrive open: the worker dies in that call
# Short enough that the new worker takes the cut job over quickly; long enough that the doomed
# worker's own timeout for the held call (a handler may run for one lease) cannot fire before
# the kill on a loaded machine.
LEASE_SECONDS = 4
HELPDESK = str(Path(sys.executable).with_name("helpdesk"))


class Receiver:
    """A webhook endpoint that counts what it gets, per delivery id, and holds the HELD-th
    request unanswered until released."""

    def __init__(self) -> None:
        self.deliveries: list[int] = []
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.held_delivery: int | None = None
        self.url = ""

    async def handle(self, request: Request) -> Response:
        await request.body()
        delivery = int(request.headers["x-helpdesk-delivery"])
        self.deliveries.append(delivery)
        if len(self.deliveries) == HELD:
            self.held_delivery = delivery
            self.held.set()
            await self.release.wait()  # the worker is killed meanwhile; its connection dies
        return Response(status_code=204)


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with serving(app) as base_url:
        receiver.url = f"{base_url}/hook"
        try:
            yield receiver
        finally:
            receiver.release.set()  # so the server can finish the held request and stop


async def start_worker(database_url: str, data_dir: Path) -> asyncio.subprocess.Process:
    """`helpdesk worker` as an operator runs it, configured through the environment."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HELPDESK_DATABASE_URL": database_url,
        "HELPDESK_REDIS_URL": "",
        "HELPDESK_SECRET_KEY": TEST_SECRET,
        "HELPDESK_DATA_DIR": str(data_dir),
        "HELPDESK_AUTO_MIGRATE": "false",
        "HELPDESK_WORKER__LEASE_SECONDS": str(LEASE_SECONDS),
        "HELPDESK_WORKER__POLL_SECONDS": "0.1",
        "HELPDESK_LOG_LEVEL": "WARNING",
    }
    log_file = await asyncio.to_thread((data_dir / "worker.log").open, "wb")
    try:
        return await asyncio.create_subprocess_exec(
            HELPDESK,
            "worker",
            env=env,
            cwd=str(data_dir),  # no stray .env is read
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log_file,
        )
    finally:
        log_file.close()  # the child has its own copy


async def worker_log(data_dir: Path) -> str:
    return (await asyncio.to_thread((data_dir / "worker.log").read_text, errors="replace"))[-4000:]


async def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
    await process.wait()


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()  # a graceful stop: running jobs finish within the grace
    async with asyncio.timeout(20):
        await process.wait()


async def query(engine: AsyncEngine, statement: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(statement)).all())


def deliver_jobs(*columns: Any) -> Any:
    return select(*columns).where(Job.kind == DELIVER_WEBHOOK)


async def until(condition: Callable[[], Any], seconds: float) -> None:
    """Poll the database until `condition` holds: the worker is another process, with no
    signal this test can await."""
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110  # see above
            await asyncio.sleep(0.1)


async def open_tickets(client: httpx.AsyncClient, customer: dict[str, Any]) -> None:
    for n in range(TICKETS):
        body = {"title": f"无法上网 {n}", "body": "宿舍网络断了"}
        created = await client.post("/api/v1/tickets", json=body, headers=bearer(customer))
        assert created.status_code == 201, created.text


async def test_a_job_cut_by_a_killed_worker_process_completes_under_the_next(
    app: Any,
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    customer: dict[str, Any],
    admin_engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    async with receiving() as receiver:
        hook = await client.post(
            "/api/v1/webhooks", json={"url": receiver.url, "event_types": ["ticket.created"]}, headers=bearer(admin)
        )
        assert hook.status_code == 201, hook.text
        doomed = await start_worker(database_url, tmp_path / "doomed")
        # Customers keep opening tickets while it works; it dies as soon as it is inside the
        # held call (its own timeout for the call, one lease, never gets a chance to fire).
        creating = asyncio.create_task(open_tickets(client, customer))
        try:
            async with asyncio.timeout(30):
                await receiver.held.wait()
        except TimeoutError:
            if creating.done():
                creating.result()  # the tickets could not be created: that is the failure
            log_text = await worker_log(tmp_path / "doomed")
            raise AssertionError(f"no delivery was held; worker log:\n{log_text}") from None
        finally:
            await kill(doomed)
            await asyncio.wait([creating], timeout=60)
        creating.result()
        # What the dead worker left running: those jobs were cut, at whatever point.
        cut = await query(admin_engine, deliver_jobs(Job.payload).where(Job.status == JobStatus.running))
        receiver.release.set()

        survivor = await start_worker(database_url, tmp_path / "survivor")
        try:

            async def all_delivered() -> bool:
                unfinished = await query(admin_engine, deliver_jobs(Job.id).where(Job.status != JobStatus.done))
                return not unfinished and len(set(receiver.deliveries)) >= TICKETS

            try:
                await until(all_delivered, 60)
            except TimeoutError:
                log_text = await worker_log(tmp_path / "survivor")
                raise AssertionError(f"the cut job never completed; worker log:\n{log_text}") from None
        finally:
            await stop(survivor)

    jobs = await query(admin_engine, deliver_jobs(Job.payload, Job.attempts, Job.locked_by))
    deliveries = await query(admin_engine, select(WebhookDelivery.id, WebhookDelivery.status))
    held = receiver.held_delivery
    assert held is not None
    received = Counter(receiver.deliveries)
    repeats = {delivery: count - 1 for delivery, count in received.items() if count > 1}
    cut_deliveries = {row.payload["delivery_id"] for row in cut}
    held_job = next(job for job in jobs if job.payload["delivery_id"] == held)
    record_property("deliveries", len(receiver.deliveries))
    record_property("repeats", sum(repeats.values()))
    log.info(
        "%s tickets: %s requests received, %s cut job(s), repeats %s (the held delivery: %s)",
        TICKETS,
        len(receiver.deliveries),
        len(cut),
        repeats,
        held,
    )

    assert len(jobs) == TICKETS
    assert {status for _, status in deliveries} == {DeliveryStatus.succeeded}
    assert set(received) == {delivery_id for delivery_id, _ in deliveries}  # none lost
    assert held in cut_deliveries  # the kill did land mid-job
    # The cut call reached the receiver, so it came again; the new worker finished the job on
    # its second attempt. Nothing else came twice, except possibly another job the kill cut.
    assert received[held] == 2
    assert (held_job.attempts, held_job.locked_by.split(":")[1]) == (2, str(survivor.pid))
    assert set(repeats) <= cut_deliveries
    assert all(count == 1 for count in repeats.values())
