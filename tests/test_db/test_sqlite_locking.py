"""Concurrent writers on SQLite queue for the write lock instead of failing with
"database is locked": transactions that may write start with BEGIN IMMEDIATE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.db.session import Database
from app.models import User
from tests.conftest import bearer, create_user, login, make_client

WRITERS = 10


async def test_concurrent_registrations_and_profile_updates_all_succeed(app):
    editors = [f"editor{i:02d}" for i in range(10)]
    async with make_client(app) as client:
        tokens = {}
        for name in editors:
            await create_user(app, name)
            tokens[name] = await login(client, name)

        registrations = [
            client.post("/api/v1/auth/register", json={"username": f"newcomer{i:02d}", "password": "password123"})
            for i in range(25)
        ]
        updates = [
            client.patch("/api/v1/users/me", json={"display_name": f"{name} 已更新"}, headers=bearer(tokens[name]))
            for name in editors
        ]
        responses = await asyncio.gather(*registrations, *updates)

    registered, updated = responses[:25], responses[25:]
    assert [r.status_code for r in registered] == [201] * 25, [r.text for r in registered if r.status_code != 201]
    assert [r.status_code for r in updated] == [200] * len(editors), [r.text for r in updated if r.status_code != 200]
    assert sorted(r.json()["username"] for r in registered) == [f"newcomer{i:02d}" for i in range(25)]
    assert [r.json()["display_name"] for r in updated] == [f"{name} 已更新" for name in editors]
    async with app.state.ctx.db.transaction(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 25 + len(editors)


@pytest.fixture
async def counter_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A SQLite file with one counter row at 0."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'locking.db'}")
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)"))
        await session.execute(text("INSERT INTO counter (id, value) VALUES (1, 0)"))
    yield db
    await db.dispose()


async def counter_value(db: Database) -> int:
    async with db.transaction(write=False) as session:
        return int((await session.execute(text("SELECT value FROM counter WHERE id = 1"))).scalar_one())


async def test_write_transactions_that_read_first_queue_instead_of_failing(counter_db):
    async def increment() -> None:
        async with counter_db.transaction(write=True) as session:
            value = (await session.execute(text("SELECT value FROM counter WHERE id = 1"))).scalar_one()
            await asyncio.sleep(0.01)  # hold the transaction while the others try to start theirs
            await session.execute(text("UPDATE counter SET value = :value WHERE id = 1"), {"value": value + 1})

    results = await asyncio.gather(*(increment() for _ in range(WRITERS)), return_exceptions=True)

    assert results == [None] * WRITERS
    assert await counter_value(counter_db) == WRITERS


async def test_deferred_transactions_that_read_first_fail_with_database_is_locked(counter_db):
    # Why writers need BEGIN IMMEDIATE: once every transaction holds a read snapshot, only
    # one may write; SQLite answers the others at once, without waiting for busy_timeout.
    everyone_has_read = asyncio.Barrier(WRITERS)

    async def increment() -> None:
        async with counter_db.transaction(write=False) as session:
            value = (await session.execute(text("SELECT value FROM counter WHERE id = 1"))).scalar_one()
            await everyone_has_read.wait()
            await session.execute(text("UPDATE counter SET value = :value WHERE id = 1"), {"value": value + 1})

    async with asyncio.timeout(10):
        results = await asyncio.gather(*(increment() for _ in range(WRITERS)), return_exceptions=True)

    failures = [r for r in results if r is not None]
    assert len(failures) == WRITERS - 1
    assert all("database is locked" in str(f) for f in failures), failures
    assert await counter_value(counter_db) == 1
