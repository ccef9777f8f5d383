"""What a transaction queues for after its commit (worker wake-ups, realtime frames) follows
its savepoints: a rolled-back savepoint drops only its own, a released one waits for the commit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.session import PUBLISH_AFTER_COMMIT, WAKE_AFTER_COMMIT, Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'queues.db'}")
    yield database
    await database.dispose()


def watch(db: Database) -> tuple[list[int], list[str]]:
    woke: list[int] = []
    published: list[str] = []
    db.commit_hooks.append(lambda: woke.append(1))
    db.publishers.append(published.extend)
    return woke, published


async def test_a_rolled_back_savepoint_drops_only_what_it_queued(db: Database) -> None:
    woke, published = watch(db)
    async with db.transaction() as session:
        await session.execute(text("SELECT 1"))
        session.info[WAKE_AFTER_COMMIT] = True
        session.info.setdefault(PUBLISH_AFTER_COMMIT, []).append("before")
        with contextlib.suppress(LookupError):
            async with session.begin_nested():
                session.info[PUBLISH_AFTER_COMMIT].append("refused command")
                raise LookupError("refused")
        session.info[PUBLISH_AFTER_COMMIT].append("after")
    assert woke == [1]
    assert published == ["before", "after"]


async def test_a_released_savepoint_publishes_nothing_before_the_commit(db: Database) -> None:
    woke, published = watch(db)
    with contextlib.suppress(LookupError):
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            session.info[WAKE_AFTER_COMMIT] = True
            async with session.begin_nested():
                session.info.setdefault(PUBLISH_AFTER_COMMIT, []).append("inside")
            raise LookupError("the transaction fails after the savepoint")
    assert woke == []
    assert published == []
