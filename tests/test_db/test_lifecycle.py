"""A disposed Database is freed: nothing global keeps it (or its engine) alive."""

from __future__ import annotations

import gc
import weakref

from sqlalchemy import text

from app.db.session import Database


async def test_a_disposed_database_and_its_engine_are_freed(database_url: str) -> None:
    db = Database(database_url)
    async with db.transaction() as session:  # its session listeners have run
        await session.execute(text("SELECT 1"))
    database, engine = weakref.ref(db), weakref.ref(db.engine.sync_engine)
    await db.dispose()
    del db, session
    gc.collect()
    # SQLAlchemy's registry of listeners on its session class held it before (one per test app).
    assert database() is None
    assert engine() is None
