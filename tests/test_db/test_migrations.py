"""The migration chain: it keeps existing rows, serialises concurrent runs, and ends at the
schema the models describe. Each test gets a database of its own, on SQLite and (when
HELPDESK_TEST_DATABASE_URL is set) on a throwaway PostgreSQL database."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Boolean, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.db import migrate
from app.db.session import create_engine
from app.models import Base
from tests.conftest import DATABASES, PG_URL

FIRST = "0001_users"
(HEAD,) = migrate.known_heads()

USERS = [
    {"id": 1, "username": "zhangsan", "display_name": "张三", "role": "customer", "prefs": '{"qq": true}'},
    {"id": 2, "username": "lisi", "display_name": "李四", "role": "agent", "prefs": "{}"},
    {"id": 3, "username": "wangwu", "display_name": "王五", "role": "admin", "prefs": "{}"},
]
IDENTITIES = [
    {"id": 1, "user_id": 1, "provider": "qq", "external_id": "10001", "nickname": "小张"},
    {"id": 2, "user_id": 1, "provider": "wechat", "external_id": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "nickname": None},
    {"id": 3, "user_id": 2, "provider": "qq", "external_id": "20002", "nickname": "李四的QQ"},
]


@pytest.fixture(params=DATABASES)
async def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database nobody has touched: a new SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    assert PG_URL is not None
    server = make_url(PG_URL)
    name = f"helpdesk_mig_{secrets.token_hex(6)}"
    maintenance = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with maintenance.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        async with maintenance.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await maintenance.dispose()


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    """A normal application engine (foreign keys on for SQLite) on the fresh database."""
    engine = create_engine(fresh_database_url, null_pool=True)
    yield engine
    await engine.dispose()


async def insert_users_and_identities(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, username, display_name, role, is_active, notification_preferences) "
                "VALUES (:id, :username, :display_name, :role, TRUE, :prefs)"
            ),
            USERS,
        )
        await conn.execute(
            text(
                "INSERT INTO external_identities (id, user_id, provider, external_id, nickname) "
                "VALUES (:id, :user_id, :provider, :external_id, :nickname)"
            ),
            IDENTITIES,
        )


async def stored_rows(engine: AsyncEngine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with engine.connect() as conn:
        users = (await conn.execute(text("SELECT id, username, display_name, role FROM users ORDER BY id"))).all()
        identities = (
            await conn.execute(
                text("SELECT id, user_id, provider, external_id, nickname FROM external_identities ORDER BY id")
            )
        ).all()
    return [tuple(r) for r in users], [tuple(r) for r in identities]


EXPECTED_USERS = [(u["id"], u["username"], u["display_name"], u["role"]) for u in USERS]
EXPECTED_IDENTITIES = [(i["id"], i["user_id"], i["provider"], i["external_id"], i["nickname"]) for i in IDENTITIES]


async def version_rows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())


async def test_upgrade_and_downgrade_keep_users_and_their_identities(fresh_database_url, engine):
    await migrate.upgrade(fresh_database_url, FIRST)
    await insert_users_and_identities(engine)

    # On SQLite, 0002 rebuilds `users`: with foreign keys on, its DROP TABLE would cascade.
    await migrate.upgrade(fresh_database_url)
    assert await stored_rows(engine) == (EXPECTED_USERS, EXPECTED_IDENTITIES)

    await migrate.downgrade(fresh_database_url, FIRST)
    assert await migrate.current_revision(engine) == FIRST
    assert await stored_rows(engine) == (EXPECTED_USERS, EXPECTED_IDENTITIES)

    await migrate.upgrade(fresh_database_url)
    assert await migrate.current_revision(engine) == HEAD
    assert await stored_rows(engine) == (EXPECTED_USERS, EXPECTED_IDENTITIES)


async def test_identities_still_cascade_with_their_user_after_users_is_rebuilt(fresh_database_url, engine):
    await migrate.upgrade(fresh_database_url, FIRST)
    await insert_users_and_identities(engine)
    await migrate.upgrade(fresh_database_url)

    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM users WHERE id = 1"))
    _, identities = await stored_rows(engine)
    assert identities == [i for i in EXPECTED_IDENTITIES if i[1] != 1]


async def test_concurrent_upgrades_both_succeed_and_record_the_head_once(fresh_database_url, engine):
    # Without the lock, on PostgreSQL the two runs can deadlock inside this process instead of
    # failing (alembic's `context` and `op` proxies are process-wide): the timeout makes it fail.
    async with asyncio.timeout(10):
        results = await asyncio.gather(
            migrate.upgrade(fresh_database_url), migrate.upgrade(fresh_database_url), return_exceptions=True
        )

    assert results == [None, None]
    assert await version_rows(engine) == [HEAD]


async def test_upgrades_of_two_databases_in_one_process_do_not_interfere(tmp_path):
    # Alembic's context is process-wide: two runs interleaving on one loop would swap connections.
    urls = [f"sqlite+aiosqlite:///{tmp_path / name}" for name in ("a.db", "b.db")]
    async with asyncio.timeout(20):
        await asyncio.gather(*(migrate.upgrade(url) for url in urls))
    for url in urls:
        engine = create_engine(url, null_pool=True)
        try:
            assert await migrate.current_revision(engine) == HEAD
        finally:
            await engine.dispose()


async def test_processes_starting_together_migrate_once(fresh_database_url, engine):
    """Several processes (API workers) starting at once: the database lock serialises them."""
    script = "import asyncio, sys; from app.db import migrate; asyncio.run(migrate.upgrade(sys.argv[1]))"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            fresh_database_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    async with asyncio.timeout(60):
        outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err.decode()[-500:] for _, err in outputs]
    assert await version_rows(engine) == [HEAD]


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # The rule of alembic/env.py: FTS shadow tables are made by migrations, not by models.
    return not (type_ in ("table", "index", "column") and name is not None and "_fts" in name)


async def test_migrated_schema_matches_the_models(fresh_database_url, engine):
    await migrate.upgrade(fresh_database_url)

    def differences(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object, "target_metadata": Base.metadata}
        )
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        diff = await conn.run_sync(differences)
    assert diff == []


async def test_current_revision_is_none_before_migrating_and_head_after(fresh_database_url, engine):
    assert await migrate.current_revision(engine) is None

    await migrate.upgrade(fresh_database_url)

    assert await migrate.current_revision(engine) == HEAD


async def test_tickets_from_before_search_are_indexed_by_the_backfill_the_migration_queues(
    fresh_database_url, engine, tmp_path
):
    from sqlalchemy import Integer, String, column, func, select, table

    from app.core.config import SearchSettings, Settings
    from app.db.base import UTCDateTime
    from app.db.session import Database
    from app.jobs.handlers import build_worker
    from app.models.search import SearchDoc
    from app.services.search import build_search_index
    from app.services.ticket import TicketService
    from app.services.webhook import WebhookService
    from tests.conftest import TEST_SECRET

    await migrate.upgrade(fresh_database_url, FIRST)
    await insert_users_and_identities(engine)
    await migrate.upgrade(fresh_database_url, "0008_qq_helpdesk")
    now = datetime.now(UTC)
    tickets = table(
        "tickets",
        *(column(name, String) for name in ("number", "title", "status", "priority", "channel")),
        *(column(name, Integer) for name in ("id", "priority_rank", "requester_id", "version")),
        column("created_at", UTCDateTime()),
        column("updated_at", UTCDateTime()),
    )
    messages = table(
        "messages",
        column("ticket_id", Integer),
        column("author_id", Integer),
        column("body", String),
        column("internal", Boolean),
        column("channel", String),
        column("created_at", UTCDateTime()),
    )
    old = {"status": "new", "priority": "normal", "priority_rank": 1, "channel": "web", "requester_id": 1, "version": 1}
    async with engine.begin() as conn:
        await conn.execute(
            tickets.insert(),
            [
                {**old, "id": n, "number": f"T{n}", "title": f"打印机卡纸 {n}", "created_at": now, "updated_at": now}
                for n in (1, 2, 3)
            ],
        )
        await conn.execute(
            messages.insert(),
            [
                {
                    "ticket_id": n,
                    "author_id": 1,
                    "body": "提示密码错误",
                    "internal": n == 3,
                    "channel": "web",
                    "created_at": now,
                }
                for n in (1, 2, 3)
            ],
        )

    await migrate.upgrade(fresh_database_url)

    settings = Settings(_env_file=None, database_url=fresh_database_url, secret_key=TEST_SECRET, data_dir=tmp_path)  # type: ignore[call-arg,arg-type]
    db = Database(fresh_database_url)
    http = httpx.AsyncClient()
    try:
        service = TicketService(settings.tickets, timezone=settings.tz, search=build_search_index(SearchSettings()))
        worker = build_worker(settings, db, service, WebhookService(settings.webhooks, http))
        assert await worker.run_until_idle() >= 1
        async with db.transaction(write=False) as session:
            docs = (await session.execute(select(func.count()).select_from(SearchDoc))).scalar_one()
            internal = (await session.execute(select(func.count()).where(SearchDoc.internal))).scalar_one()
    finally:
        await http.aclose()
        await db.dispose()
    assert (docs, internal) == (6, 1)
