"""Runs Alembic migrations safely on both databases.

- One transaction for the whole upgrade. On PostgreSQL it first takes an advisory lock, so
  processes starting together migrate one after the other (the later ones find nothing to do).
  On SQLite the transaction starts with BEGIN IMMEDIATE, which serialises them the same way.
- On SQLite, foreign keys are off for the migration connection: batch mode copies a table,
  drops the old one and renames the copy, and with foreign keys on that DROP would cascade
  and silently delete child rows. `PRAGMA foreign_key_check` runs before the commit and
  aborts the migration if anything dangles.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import WRITE_OPTION, create_engine, is_sqlite

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"
# Any fixed 64-bit number shared by every process of this app.
MIGRATION_LOCK_ID = 0x48454C50_4445534B  # "HELPDESK"


# Alembic's `context` and `op` are process-wide proxies: two runs interleaving on one event loop
# (even on different databases, which the database locks do not serialise) would send one
# run's DDL through the other's connection. One run at a time per event loop.
_RUN_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _run_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _RUN_LOCKS.get(loop)
    if lock is None:
        lock = _RUN_LOCKS[loop] = asyncio.Lock()
    return lock


class ForeignKeyViolation(RuntimeError):
    pass


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    return cfg


@cache
def known_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


async def run_locked(url: str, work: Callable[[Connection], Any]) -> None:
    """Open a migration connection, take the lock, run `work(connection)`, check, commit."""
    async with _run_lock():
        engine = create_engine(url, foreign_keys=False, null_pool=True)
        try:
            async with engine.connect() as conn:
                await conn.execution_options(**{WRITE_OPTION: True})
                await conn.run_sync(_locked_sync, work)
        finally:
            await engine.dispose()


def _locked_sync(conn: Connection, work: Callable[[Connection], Any]) -> None:
    sqlite = is_sqlite(str(conn.engine.url))
    if not sqlite:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})
    else:
        conn.execute(text("SELECT 1"))  # starts the BEGIN IMMEDIATE transaction
    try:
        work(conn)
        if sqlite:
            dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise ForeignKeyViolation(f"migration left dangling foreign keys: {dangling[:5]}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _with_connection(conn: Connection) -> Config:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    await run_locked(url, lambda conn: command.upgrade(_with_connection(conn), revision))


async def downgrade(url: str, revision: str) -> None:
    await run_locked(url, lambda conn: command.downgrade(_with_connection(conn), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision, or None when it was never migrated."""
    async with engine.connect() as conn:
        try:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        except Exception:  # no alembic_version table yet
            return None
    return rows[0] if len(rows) == 1 else None
