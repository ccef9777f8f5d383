"""SQLite through aiosqlite, one trip to its thread per statement.

aiosqlite runs every sqlite3 call in a thread of the connection's own and hands the result back
to the event loop: a trip costs two thread switches, about 0.1 ms on this machine, more than
most of our statements take in SQLite. SQLAlchemy's adapter makes four trips per statement
(open a cursor, execute, fetch the rows, close it), so a create's seven statements cost 27 trips
(docs/benchmarks.md, session 11). This cursor makes one: the statement, its rows and the close
run together in that thread. A rollback with no transaction open (the pool's reset after a
commit) makes none.

The adapter is SQLAlchemy's (`sqlalchemy.dialects.sqlite.aiosqlite`) with its cursor replaced;
errors, the per-connection lock and result handling are its own. Server-side cursors (`stream`)
are unchanged. It reaches into aiosqlite's `_execute` and `_conn`, as SQLAlchemy's adapter does
for its isolation level: the versions are pinned in the lock files and tests/test_db covers both.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)


class _Ran:
    """What SQLAlchemy reads of a DB-API cursor once its statement has run."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self, description: Any = None, rowcount: int = -1, lastrowid: int | None = None) -> None:
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.arraysize = 1

    def close(self) -> None:
        """Closed in the thread already."""


def _run(connection: sqlite3.Connection, operation: str, parameters: Any) -> tuple[_Ran, list[Any]]:
    """In aiosqlite's thread: the whole life of one cursor."""
    cursor = connection.cursor()
    try:
        cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return _Ran(cursor.description, cursor.rowcount, cursor.lastrowid), rows
    finally:
        cursor.close()


def _run_many(connection: sqlite3.Connection, operation: str, seq_of_parameters: Sequence[Any]) -> _Ran:
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return _Ran(None, cursor.rowcount, cursor.lastrowid)
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False  # `_Ran.close` is plain

    def _make_new_cursor(self, connection: Any) -> Any:
        return None  # opened in the thread, by the statement

    def _aenter_cursor(self, cursor: Any) -> Any:
        return _Ran()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            self._cursor, rows = await self._in_thread(_run, operation, parameters)
            self._rows = collections.deque(rows)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            self._cursor = await self._in_thread(_run_many, operation, seq_of_parameters)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        driver = cast(aiosqlite.Connection, self._connection)
        return await driver._execute(fn, driver._conn, *args)  # type: ignore[no-untyped-call]


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor

    def rollback(self) -> None:
        driver = cast(aiosqlite.Connection, self._connection)
        if driver._connection is not None and not driver.in_transaction:
            return  # nothing to roll back: sqlite3 would do nothing, after a trip
        super().rollback()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """Pass as `module=` to create_async_engine for a `sqlite+aiosqlite` URL."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)


def one_trip_dbapi() -> OneTripDBAPI:
    return OneTripDBAPI(aiosqlite, sqlite3)
