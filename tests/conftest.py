"""Test harness.

Every test that touches the database runs on SQLite, and again on PostgreSQL when
HELPDESK_TEST_DATABASE_URL is set (CI sets it): the `database_url` fixture is parametrized per
session. The schema is built by the real migrations (alembic upgrade head); tables are emptied
before each test. Redis tests use HELPDESK_TEST_REDIS_URL.
"""

from __future__ import annotations

import gc
import io
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import AuthSettings, Settings
from app.core.logging import build_handler
from app.db import migrate
from app.db.session import create_engine, is_sqlite
from app.main import create_app
from app.models import Base, Role
from app.schemas.user import UserCreate

# `make test` runs the suite in parallel workers (pytest-xdist: gw0, gw1...). Each one gets a
# PostgreSQL database and a Redis database of its own on the servers named, so that one worker's
# TRUNCATE or pub/sub message never reaches another's test.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def worker_database_url(url: str | None) -> str | None:
    """`<database>_<worker>` on the same PostgreSQL server; created and dropped by `database_url`."""
    if url is None or WORKER is None:
        return url
    server = make_url(url)
    return server.set(database=f"{server.database}_{WORKER}").render_as_string(hide_password=False)


def worker_redis_url(url: str | None) -> str | None:
    """The Redis database numbered the given one minus the worker's index (of the server's 16).
    Pub/sub channels carry the database's number (app/jobs/wake.py, `database_channel`)."""
    if url is None or WORKER is None:
        return url
    parts = urlsplit(url)
    number = (int(parts.path.strip("/") or 0) - int(WORKER.removeprefix("gw"))) % 16
    return urlunsplit(parts._replace(path=f"/{number}"))


PG_SERVER_URL = os.environ.get("HELPDESK_TEST_DATABASE_URL")
PG_URL = worker_database_url(PG_SERVER_URL)
REDIS_URL = worker_redis_url(os.environ.get("HELPDESK_TEST_REDIS_URL"))
DATABASES = ["sqlite", *(["postgresql"] if PG_URL else [])]
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
PASSWORD = "correct horse battery"
CLIENT_IP = "203.0.113.9"


def pytest_collection_finish(session: pytest.Session) -> None:
    """What imports and collection made lives for the whole run: out of the collector's sight.
    Every test builds an app and drops it, so full collections come every few tests, and each
    one walked all of it (a quarter of the suite's time went to them)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 100)  # and a full pass every 100 middle ones, not 10


def pytest_report_header() -> list[str]:
    pg = make_url(PG_URL).render_as_string(hide_password=True) if PG_URL else "off (set HELPDESK_TEST_DATABASE_URL)"
    return [
        f"helpdesk databases: {', '.join(DATABASES)}; PostgreSQL: {pg}",
        f"helpdesk Redis: {REDIS_URL or 'off (set HELPDESK_TEST_REDIS_URL)'}",
    ]


def cheap_auth(**overrides: Any) -> AuthSettings:
    """argon2 parameters a test suite can afford; everything else as in production."""
    values: dict[str, Any] = {"argon2_time_cost": 1, "argon2_memory_kib": 64, "argon2_parallelism": 1}
    values.update(overrides)
    return AuthSettings(**values)


async def drop_everything(url: str) -> None:
    """Leave the database as a fresh one: PostgreSQL keeps what a previous run left."""
    if is_sqlite(url):
        return
    engine = create_engine(url, null_pool=True)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def recreate_database(server_url: str, name: str, *, create: bool = True) -> None:
    """Drops `name` on the server of `server_url` (a run that was killed leaves it behind) and,
    with `create`, makes it anew."""
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if create:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'helpdesk.db'}"
        await migrate.upgrade(url)
        yield url
        return
    assert PG_SERVER_URL is not None
    assert PG_URL is not None
    if PG_URL == PG_SERVER_URL:  # one process: the database named is ours
        await drop_everything(PG_URL)
        await migrate.upgrade(PG_URL)
        yield PG_URL
        return
    name = make_url(PG_URL).database
    assert name is not None
    await recreate_database(PG_SERVER_URL, name)
    await migrate.upgrade(PG_URL)
    yield PG_URL
    await recreate_database(PG_SERVER_URL, name, create=False)


@pytest.fixture(scope="session")
async def admin_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, null_pool=True)
    yield engine
    await engine.dispose()


async def empty_tables(engine: AsyncEngine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as conn:
        # Categories point at their parent (RESTRICT, checked row by row on SQLite); nesting is
        # one level deep, so children first.
        await conn.execute(text("DELETE FROM categories WHERE parent_id IS NOT NULL"))
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608  # our own table names


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        env="development",
        database_url=database_url,
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
        auto_migrate=False,
        log_json=False,
        auth=cheap_auth(),
        # Tests run jobs explicitly (tests/test_jobs); a background worker would race them.
        worker={"enabled": False},
    )


AppFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def app(settings: Settings, admin_engine: AsyncEngine) -> AsyncIterator[Any]:
    await empty_tables(admin_engine)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def make_client(application: Any, client_ip: str = CLIENT_IP) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def two_processes(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient, Any, httpx.AsyncClient]]:
    """Two apps on one database (and one Redis, when `settings` name it): what two API processes
    would be. Yields each app with a client of its own."""
    first, second = create_app(settings), create_app(settings)
    async with (
        first.router.lifespan_context(first),
        second.router.lifespan_context(second),
        make_client(first) as one,
        make_client(second) as two,
    ):
        yield first, one, second, two


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as c:
        yield c


async def create_user(app: Any, username: str, role: Role = Role.customer, password: str = PASSWORD) -> int:
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        user = await ctx.users.create(
            session, UserCreate(username=username, password=password, display_name=username.title(), role=role)
        )
        return int(user.id)


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


@contextmanager
def captured_logs(level: int = logging.DEBUG) -> Iterator[io.StringIO]:
    """What our own log handler (JSON lines, redaction) writes while the block runs."""
    output = io.StringIO()
    handler = build_handler(output, json_lines=True)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield output
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
async def customer(app: Any, client: httpx.AsyncClient) -> dict[str, Any]:
    user_id = await create_user(app, "customer1")
    return {"id": user_id, **await login(client, "customer1")}


@pytest.fixture
async def agent(app: Any, client: httpx.AsyncClient) -> dict[str, Any]:
    user_id = await create_user(app, "agent1", Role.agent)
    return {"id": user_id, **await login(client, "agent1")}


@pytest.fixture
async def admin(app: Any, client: httpx.AsyncClient) -> dict[str, Any]:
    user_id = await create_user(app, "admin1", Role.admin)
    return {"id": user_id, **await login(client, "admin1")}
