"""The PostgreSQL pool: a pooled connection is tried before each use, in one round trip."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from app.db.session import create_engine, is_sqlite


async def test_a_pooled_connection_is_tried_in_one_round_trip(database_url: str) -> None:
    if is_sqlite(database_url):
        pytest.skip("SQLite is a file in this process: there is no connection to try")
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    queries: list[str] = []
    try:
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            driver.add_query_logger(lambda record: queries.append(record.query))
        async with engine.connect() as conn:  # the same connection, from the pool
            await conn.execute(text("SELECT 2"))
    finally:
        await engine.dispose()
    # asyncpg logs the statements it sends without preparing them: the try, then the use's own
    # transaction. SQLAlchemy's pre-ping shows as one more BEGIN and ROLLBACK around its `;`.
    assert queries == ["SELECT 1", "BEGIN;", "ROLLBACK;"]


async def test_a_dead_pooled_connection_is_replaced_without_an_error(database_url: str) -> None:
    if is_sqlite(database_url):
        pytest.skip("SQLite is a file in this process: there is no connection to lose")
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            first: Any = (await conn.get_raw_connection()).driver_connection
            pid = first.get_server_pid()
        # The server ends it while it waits in the pool (a restart, an idle timeout).
        async with create_engine(database_url, null_pool=True).connect() as other:
            ended = await other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            assert ended.scalar_one() is True
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
    finally:
        await engine.dispose()
