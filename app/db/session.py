"""Engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg).

SQLite: WAL, busy_timeout and foreign keys on every connection. Transactions that may write
start with BEGIN IMMEDIATE, so concurrent writers queue for the lock (up to busy_timeout)
instead of failing with "database is locked" when a deferred read transaction tries to
upgrade; reads stay deferred. This uses SQLAlchemy's documented recipe of taking BEGIN over
from the sqlite3 driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_

from app.db.sqlite_driver import one_trip_dbapi

# Execution option that marks a connection whose transactions may write.
WRITE_OPTION = "helpdesk_write"
# Session.info flag: "run the commit hooks after this transaction commits" (set by enqueue).
WAKE_AFTER_COMMIT = "helpdesk_wake_after_commit"
# Session.info list: realtime frames to publish once (and only if) this transaction commits.
PUBLISH_AFTER_COMMIT = "helpdesk_publish_after_commit"
# Indexes into Database.change_hooks of the watched models a transaction wrote.
_CHANGED = "helpdesk_changed_models"
_SAVEPOINTS = "helpdesk_savepoints"
# Connection.info flag: this connection's transaction holds its engine's writer turn (SQLite).
_WRITER_TURN = "helpdesk_writer_turn"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str,
    *,
    busy_timeout_ms: int = 30_000,
    foreign_keys: bool = True,
    pool_size: int = 10,
    max_overflow: int = 10,
    null_pool: bool = False,
) -> AsyncEngine:
    # hide_parameters: SQL parameters (password hashes, token digests) stay out of exception
    # messages and therefore out of logs.
    kwargs: dict[str, Any] = {"pool_pre_ping": False, "hide_parameters": True}
    if null_pool:
        kwargs["poolclass"] = NullPool
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000}
        if make_url(url).get_driver_name() == "aiosqlite":
            kwargs["module"] = one_trip_dbapi()  # a statement in one trip to aiosqlite's thread
        if not null_pool:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
        engine = create_async_engine(url, **kwargs)
        _install_sqlite_hooks(engine, busy_timeout_ms=busy_timeout_ms, foreign_keys=foreign_keys)
        return engine
    if null_pool:
        return create_async_engine(url, **kwargs)
    kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800)
    engine = create_async_engine(url, **kwargs)
    _install_postgresql_ping(engine)
    return engine


def _install_postgresql_ping(engine: AsyncEngine) -> None:
    """A pooled connection is tried before each use, in one round trip.

    SQLAlchemy's `pool_pre_ping` on asyncpg wraps its probe in a transaction of its own (BEGIN,
    a prepared `;`, ROLLBACK: three round trips, for PgBouncer's transaction mode), so every
    request paid three round trips before its first statement; on this machine a round trip
    costs more than most statements (docs/benchmarks.md). A query without parameters goes by
    the simple query protocol and prepares nothing, so it is safe behind PgBouncer outside a
    transaction too (asyncpg 0.32 fails on an empty query's answer, hence `SELECT 1`).
    A connection that fails it is discarded and the pool hands out a new one: a database that
    restarted while the pool was idle is invisible to clients (tests/reliability)."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        try:
            dbapi_connection.run_async(lambda driver: driver.execute("SELECT 1"))
        except Exception as error:  # whatever the cause, this connection cannot be trusted
            raise exc.DisconnectionError(f"ping failed: {type(error).__name__}") from error


def _install_sqlite_hooks(engine: AsyncEngine, *, busy_timeout_ms: int, foreign_keys: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when BEGIN is sent (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # This engine's writers take turns, first come first served, before BEGIN IMMEDIATE.
    # SQLite's busy handler retries at growing intervals (up to 100 ms apart): under a steady
    # stream of writers, one that has waited long keeps losing the lock to newcomers until
    # busy_timeout ends it with "database is locked", a 500 (tests/reliability/test_load.py).
    # Between processes the busy handler still decides.
    turns = asyncio.Lock()

    def _end_turn(info: dict[Any, Any]) -> None:
        if info.pop(_WRITER_TURN, False):
            turns.release()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(WRITE_OPTION):
            if await_(_take_turn(turns, busy_timeout_ms / 1000)):
                connection.info[_WRITER_TURN] = True
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _end_turn(connection.info)
                raise
        else:
            connection.exec_driver_sql("BEGIN")

    # The turn ends with the transaction (these fire just before COMMIT or ROLLBACK: the next
    # writer's BEGIN IMMEDIATE waits the moment that takes), and never outlives the checkout.
    def _end_turn_of(connection: Connection) -> None:
        try:
            info = connection.info
        except exc.SQLAlchemyError:
            # Invalidated mid-transaction (a task cancelled at shutdown): its info cannot be
            # reached now; the pool's checkin below ends the turn when the connection returns.
            return
        _end_turn(info)

    event.listen(engine.sync_engine, "commit", _end_turn_of)
    event.listen(engine.sync_engine, "rollback", _end_turn_of)
    event.listen(engine.sync_engine.pool, "checkin", lambda _dbapi, record: _end_turn(record.info) if record else None)
    event.listen(engine.sync_engine.pool, "invalidate", lambda _dbapi, record, _exc: _end_turn(record.info))


async def _take_turn(turns: asyncio.Lock, seconds: float) -> bool:
    """Waits for this process's previous writers; False if that took longer than busy_timeout
    (a writer that never ends its transaction): SQLite's busy wait decides then, as without turns."""
    try:
        async with asyncio.timeout(seconds):
            await turns.acquire()
    except TimeoutError:
        return False
    return True


class Database:
    """Owns the engine and the session factories; created and disposed in the app lifespan.

    `commit_hooks` run after a transaction that set WAKE_AFTER_COMMIT commits (the job worker
    is woken that way the moment a job it could run exists, not at its next poll)."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        self.commit_hooks: list[Callable[[], None]] = []
        self.publishers: list[Callable[[list[Any]], None]] = []
        self.change_hooks: list[tuple[tuple[type, ...], Callable[[], None]]] = []
        # A Session class of our own, so these listeners concern this Database only.
        self._session_class = session_class = type("HelpdeskSession", (Session,), {})
        self._session_listeners: list[tuple[str, Callable[..., Any]]] = [
            ("after_commit", self._after_commit),
            ("after_transaction_create", self._after_transaction_create),
            ("after_soft_rollback", self._after_soft_rollback),
            ("after_rollback", self._after_rollback),
            ("after_flush", self._after_flush),
            ("do_orm_execute", self._on_orm_execute),
        ]
        for name, listener in self._session_listeners:
            event.listen(session_class, name, listener)
        self._read_sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, autoflush=False, sync_session_class=session_class
        )
        writer = self.engine.execution_options(**{WRITE_OPTION: True})
        self._write_sessions = async_sessionmaker(
            writer, expire_on_commit=False, autoflush=False, sync_session_class=session_class
        )

    def on_commit_changing(self, models: tuple[type, ...], hook: Callable[[], None]) -> None:
        """Calls `hook` after every commit of a transaction that wrote rows of `models`, through
        the unit of work or an ORM UPDATE/DELETE statement (caches of those rows are cleared so)."""
        self.change_hooks.append((models, hook))

    def _after_flush(self, session: Session, _flush_context: Any) -> None:
        # Still the state before the flush here: what is about to be written.
        for index, (models, _hook) in enumerate(self.change_hooks):
            if any(isinstance(obj, models) for obj in (*session.new, *session.dirty, *session.deleted)):
                session.info.setdefault(_CHANGED, set()).add(index)

    def _on_orm_execute(self, state: ORMExecuteState) -> None:
        if not (state.is_update or state.is_delete) or state.bind_mapper is None:
            return
        for index, (models, _hook) in enumerate(self.change_hooks):
            if issubclass(state.bind_mapper.class_, models):
                state.session.info.setdefault(_CHANGED, set()).add(index)

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # SQLAlchemy calls this on a savepoint's release too: wait for the real commit
        for index in sorted(session.info.pop(_CHANGED, ())):
            self.change_hooks[index][1]()
        session.info.pop(_SAVEPOINTS, None)
        if session.info.pop(WAKE_AFTER_COMMIT, False):
            for hook in self.commit_hooks:
                hook()
        frames = session.info.pop(PUBLISH_AFTER_COMMIT, None)
        if frames:
            for publish in self.publishers:
                publish(frames)

    @staticmethod
    def _after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
        """A savepoint remembers what was queued before it, to forget only its own on rollback."""
        if transaction.nested:
            frames = session.info.get(PUBLISH_AFTER_COMMIT) or []
            session.info.setdefault(_SAVEPOINTS, {})[id(transaction)] = (
                len(frames),
                session.info.get(WAKE_AFTER_COMMIT, False),
            )

    @staticmethod
    def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
        if previous_transaction.nested:
            # A rolled-back savepoint (a refused QQ command) drops what it queued, and only that.
            kept, wake = session.info.get(_SAVEPOINTS, {}).pop(id(previous_transaction), (None, False))
            if kept is not None:
                frames = session.info.get(PUBLISH_AFTER_COMMIT)
                if frames is not None:
                    del frames[kept:]
                session.info[WAKE_AFTER_COMMIT] = wake
            return
        if previous_transaction.parent is None:
            _forget_queued(session)

    @staticmethod
    def _after_rollback(session: Session) -> None:
        """The database transaction is gone (however the session ended): nothing it queued goes out."""
        if not session.in_nested_transaction():
            _forget_queued(session)

    def session(self, *, write: bool) -> AsyncSession:
        return (self._write_sessions if write else self._read_sessions)()

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A unit of work outside a request (start-up, CLI, jobs): commit or roll back."""
        async with self.session(write=write) as session, session.begin():
            yield session

    async def dispose(self) -> None:
        # SQLAlchemy's registry keeps a class's listeners for as long as the class lives, and
        # the listeners (our bound methods) keep this Database and its session factories, which
        # keep the class: without this, every disposed Database and its engine lived for ever
        # (a test run held hundreds, and the collector's full passes stopped it for seconds).
        for name, listener in self._session_listeners:
            event.remove(self._session_class, name, listener)
        self._session_listeners = []
        await self.engine.dispose()


def _forget_queued(session: Session) -> None:
    session.info.pop(WAKE_AFTER_COMMIT, None)
    session.info.pop(PUBLISH_AFTER_COMMIT, None)
    session.info.pop(_SAVEPOINTS, None)
    session.info.pop(_CHANGED, None)
