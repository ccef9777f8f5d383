"""SQLite's statements make one trip each to aiosqlite's thread (app/db/sqlite_driver.py), and
everything SQLAlchemy reads of a cursor is still there: rows, row counts, last row ids, errors,
streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, exc, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import WRITE_OPTION, create_engine

metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True), Column("name", String, unique=True))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function aiosqlite runs in its thread, in order."""
    seen: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen


async def test_a_statement_is_one_trip_and_a_reset_after_commit_none(engine: AsyncEngine, trips: list[str]) -> None:
    async with engine.connect() as conn:  # opened before counting starts
        await conn.execute(text("SELECT 1"))
    trips.clear()
    async with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        row = (await conn.execute(insert(things).values(name="a").returning(things.c.id))).one()
    # BEGIN IMMEDIATE, the INSERT with its row, COMMIT; the pool's rollback on return finds no
    # transaction and makes no trip. SQLAlchemy's own adapter made ten.
    assert trips == ["_run", "_run", "commit"]
    assert row.id == 1


async def test_rows_counts_ids_and_many_come_back(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(things), [{"name": "a"}, {"name": "b"}, {"name": "c"}])  # executemany
        no_returning = await conn.execute(insert(things).values(name="d"))
        assert no_returning.inserted_primary_key == (4,)  # from the cursor's lastrowid
        changed = await conn.execute(update(things).where(things.c.id > 2).values(name=things.c.name + "!"))
        assert changed.rowcount == 2
        names = (await conn.execute(select(things.c.name).order_by(things.c.id))).scalars().all()
        assert names == ["a", "b", "c!", "d!"]
        assert (await conn.execute(select(things).where(things.c.id == 99))).first() is None
        assert (await conn.execute(select(things.c.id).order_by(things.c.id))).fetchmany(2) == [(1,), (2,)]


async def test_an_error_is_sqlalchemys_and_the_connection_goes_on(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(insert(things).values(name="a"))
        with pytest.raises(exc.IntegrityError):
            await conn.execute(insert(things).values(name="a"))
        await conn.rollback()
        with pytest.raises(exc.OperationalError):
            await conn.execute(text("SELECT no_such_column FROM things"))
        await conn.rollback()
        assert (await conn.execute(select(things.c.name))).scalars().all() == []


async def test_streams_keep_their_server_side_cursor(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(things), [{"name": f"n{i}"} for i in range(25)])
    async with engine.connect() as conn:
        result = await conn.stream(select(things.c.id).order_by(things.c.id))
        assert [row.id async for row in result] == list(range(1, 26))
