"""Admins see the queue and give failed jobs a second chance; nobody else sees it."""

from __future__ import annotations

from sqlalchemy import update

from app.jobs.queue import enqueue
from app.models.job import Job, JobStatus
from tests.conftest import bearer

JOBS = "/api/v1/jobs"


async def seed(app, *statuses: JobStatus) -> None:
    async with app.state.ctx.db.transaction() as session:
        for i, _ in enumerate(statuses):
            await enqueue(session, "test.kind" if i % 2 else "other.kind", {"i": i})
    async with app.state.ctx.db.transaction() as session:
        for job_id, status in enumerate(statuses, start=1):
            await session.execute(update(Job).where(Job.id == job_id).values(status=status))


async def test_admin_lists_jobs_newest_first_with_filters(app, client, admin):
    await seed(app, JobStatus.done, JobStatus.dead, JobStatus.pending, JobStatus.dead)
    listed = (await client.get(JOBS, headers=bearer(admin))).json()
    assert [j["id"] for j in listed["items"]] == [4, 3, 2, 1]
    dead = (await client.get(JOBS, params={"status": "dead"}, headers=bearer(admin))).json()
    assert [j["id"] for j in dead["items"]] == [4, 2]
    kind = (await client.get(JOBS, params={"kind": "test.kind"}, headers=bearer(admin))).json()
    assert [j["id"] for j in kind["items"]] == [4, 2]
    first = (await client.get(JOBS, params={"limit": 3}, headers=bearer(admin))).json()
    rest = (await client.get(JOBS, params={"limit": 3, "cursor": first["next_cursor"]}, headers=bearer(admin))).json()
    assert [j["id"] for j in first["items"] + rest["items"]] == [4, 3, 2, 1]
    assert rest["next_cursor"] is None


async def test_counts_per_status(app, client, admin):
    await seed(app, JobStatus.done, JobStatus.dead, JobStatus.pending, JobStatus.dead)
    body = (await client.get(f"{JOBS}/counts", headers=bearer(admin))).json()
    assert body["counts"] == {"pending": 1, "running": 0, "done": 1, "failed": 0, "dead": 2}
    assert body["oldest_due_seconds"] >= 0


async def test_retry_gives_a_dead_job_fresh_attempts(app, client, admin):
    await seed(app, JobStatus.dead)
    async with app.state.ctx.db.transaction() as session:
        await session.execute(update(Job).values(attempts=8))
    woken: list[bool] = []
    app.state.ctx.db.commit_hooks.append(lambda: woken.append(True))
    response = await client.post(f"{JOBS}/1/retry", headers=bearer(admin))
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["attempts"]) == ("pending", 0)
    assert woken == [True]  # the worker hears about it at once


async def test_only_failed_or_dead_jobs_can_be_retried(app, client, admin):
    await seed(app, JobStatus.done)
    response = await client.post(f"{JOBS}/1/retry", headers=bearer(admin))
    assert response.status_code == 409
    assert response.json()["code"] == "job_not_retryable"
    assert (await client.post(f"{JOBS}/99/retry", headers=bearer(admin))).json()["code"] == "job_not_found"
    assert (await client.get(f"{JOBS}/99", headers=bearer(admin))).status_code == 404


async def test_the_queue_is_for_admins_only(app, client, customer, agent):
    await seed(app, JobStatus.dead)
    for method, path in [("GET", JOBS), ("GET", f"{JOBS}/counts"), ("GET", f"{JOBS}/1"), ("POST", f"{JOBS}/1/retry")]:
        assert (await client.request(method, path)).status_code == 401
        for who in (customer, agent):
            assert (await client.request(method, path, headers=bearer(who))).status_code == 403
