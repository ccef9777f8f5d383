"""Search latency, printed: GET /api/v1/tickets?q= on generated Chinese tickets, per database
and corpus size, beside a bare endpoint and a reference endpoint of the same stack.

    make bench-search     (or: .venv/bin/python -m bench.search --tickets 10000 1000000 --db sqlite postgresql)

For each database and size: a fresh database (SQLite: a file in a temporary directory;
PostgreSQL: the database `bench_search`, created and dropped on the server of --pg-url), the
real migrations, a bulk load of the generated corpus (bench/corpus.py: users, tickets, 1-4
messages each with some internal notes, one search document per title and message), ANALYZE;
then the app, in process (httpx ASGITransport), signed in as an agent, times requests in
rounds (one of each endpoint in turn, so load from elsewhere on the machine weighs on all alike):

- bare: GET /api/v1/health (routing, middleware, no database);
- reference: GET /api/v1/tickets (the first page of the list, newest first: same auth, same
  session, same serialisation, no search);
- each query of QUERIES through GET /api/v1/tickets?q=...;
- GET /api/v1/stats/overview when the app has that route: its default window (the last 30
  days; the corpus ends today) and 360 days;
- a check: the rare query's results over all pages, by relevance and by date, against a LIKE
  scan of the texts.

Printed: p50 and p90 per request, each query's p50 against bare and reference, and with
several sizes the ratio largest/smallest per request. Nothing asserts: speed is measured and
printed, never checked against a wall clock. --explain prints the plan of each query's slowest
SQL statement (EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite); --keep keeps the
last database for a closer look. Load phases are timed and printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.engine import make_url

from app.core.config import AuthSettings, Settings
from app.db import migrate
from app.main import create_app
from app.models import Role
from app.schemas.user import UserCreate
from app.services.search import parse_query
from bench.corpus import Corpus, GenTicket

PG_DATABASE = "bench_search"
DEFAULT_PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DATABASE}"
SECRET = "bench-search-secret-key-long-enough-0123456789"  # noqa: S105  # a throwaway database
PASSWORD = "bench password 0123"  # noqa: S105
CHUNK = 10_000  # tickets generated and loaded per batch

# (query, what it exercises)
QUERIES: list[tuple[str, str]] = [
    ("密码", "2-char word"),
    ("蓝屏", "2-char helpdesk word (built-in dictionary)"),
    ("打印机", "3-char word"),
    ("卡", "1 char: newest-first LIKE scan"),
    ("VPN", "ASCII word"),
    ("wifi 连不上", "mixed, two terms"),
    ("碎纸机", "rare (~1 ticket in 2,000)"),
    ("打印机 VPN", "two common words, never in one ticket"),
    ("您好", "very common"),
]
STATS_PATH = "/api/v1/stats/overview"


# --- databases -------------------------------------------------------------------------------


@dataclass
class Target:
    kind: str  # sqlite | postgresql
    url: str
    directory: Path | None = None  # SQLite: the temporary directory holding the file

    @property
    def sqlite_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "helpdesk.db"


def _pg_connect_args(url: str, database: str | None = None) -> dict[str, Any]:
    parsed = make_url(url)
    return {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username or "postgres",
        "password": parsed.password,
        "database": database or parsed.database,
    }


@contextlib.asynccontextmanager
async def fresh_database(kind: str, pg_url: str, *, keep: bool = False) -> AsyncIterator[Target]:
    """A new, empty database, removed afterwards (unless `keep`: then how to remove it is printed)."""
    if kind == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="bench_search_"))
        try:
            yield Target(kind, f"sqlite+aiosqlite:///{directory / 'helpdesk.db'}", directory)
        finally:
            if keep:
                print(f"\nkept {directory / 'helpdesk.db'} (remove: rm -r {directory})")
            else:
                shutil.rmtree(directory, ignore_errors=True)
        return
    name = make_url(pg_url).database or ""
    if not name.startswith(PG_DATABASE):
        raise SystemExit(f"--pg-url must name a database {PG_DATABASE}* (it is dropped and created)")
    await _pg_admin(pg_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    try:
        yield Target(kind, pg_url)
    finally:
        if keep:
            print(f"\nkept the database {name} (remove: psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE {name}')")
        else:
            await _pg_admin(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _pg_admin(pg_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(**_pg_connect_args(pg_url, "postgres"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


# --- loading ---------------------------------------------------------------------------------


@dataclass
class LoadReport:
    phases: dict[str, float] = field(default_factory=dict)
    tickets: int = 0
    messages: int = 0
    documents: int = 0
    size_bytes: int = 0

    @property
    def total(self) -> float:
        return sum(self.phases.values())


class Timer:
    def __init__(self, report: LoadReport) -> None:
        self.report = report

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.report.phases[name] = self.report.phases.get(name, 0.0) + time.perf_counter() - started


def _rows(
    tickets: Sequence[GenTicket], next_message: int, next_doc: int, *, context: bool
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]], int, int]:
    """Rows of `tickets` for tickets, messages and search_docs (in that column order:
    TICKET_COLUMNS, MESSAGE_COLUMNS, doc_columns(context)), datetimes aware. With `context`, a
    message's document also holds its ticket's title tokens (`context_tokens`)."""
    ticket_rows: list[tuple[Any, ...]] = []
    message_rows: list[tuple[Any, ...]] = []
    doc_rows: list[tuple[Any, ...]] = []
    for t in tickets:
        ticket_rows.append(
            (
                t.id,
                t.number,
                t.title,
                t.status,
                t.priority,
                t.priority_rank,
                t.channel,
                t.requester_id,
                t.assignee_id,
                t.created_at,
                t.updated_at,
                t.resolved_at,
                t.closed_at,
                1,
            )
        )
        doc_rows.append(
            (next_doc, t.id, None, False, t.title_tokens, "")
            if context
            else (next_doc, t.id, None, False, t.title_tokens)
        )
        next_doc += 1
        for m in t.messages:
            message_rows.append((next_message, t.id, m.author_id, m.body, m.internal, m.channel, m.created_at))
            doc = (next_doc, t.id, next_message, m.internal, m.tokens)
            doc_rows.append((*doc, t.title_tokens) if context else doc)
            next_message += 1
            next_doc += 1
    return ticket_rows, message_rows, doc_rows, next_message, next_doc


TICKET_COLUMNS = (
    "id",
    "number",
    "title",
    "status",
    "priority",
    "priority_rank",
    "channel",
    "requester_id",
    "assignee_id",
    "created_at",
    "updated_at",
    "resolved_at",
    "closed_at",
    "version",
)
MESSAGE_COLUMNS = ("id", "ticket_id", "author_id", "body", "internal", "channel", "created_at")
DOC_COLUMNS = ("id", "ticket_id", "message_id", "internal", "tokens")


def doc_columns(context: bool) -> tuple[str, ...]:
    """The columns of search_docs we fill: `context_tokens` when the schema has it."""
    return (*DOC_COLUMNS, "context_tokens") if context else DOC_COLUMNS


USER_COLUMNS = (
    "id",
    "username",
    "display_name",
    "role",
    "is_active",
    "notification_preferences",
    "created_at",
    "updated_at",
)


def _batches(corpus: Corpus, timer: Timer, *, context: bool) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """(tickets, messages, search_docs) rows per CHUNK tickets, generation timed."""
    next_message = next_doc = 1
    for first in range(1, corpus.tickets + 1, CHUNK):
        with timer.phase("generate"):
            chunk = list(corpus.generate(first=first, count=CHUNK))
            tickets, messages, docs, next_message, next_doc = _rows(chunk, next_message, next_doc, context=context)
        timer.report.tickets += len(tickets)
        timer.report.messages += len(messages)
        timer.report.documents += len(docs)
        yield tickets, messages, docs


def _sqlite_time(value: Any) -> Any:
    """What SQLAlchemy's DateTime stores on SQLite (naive UTC, always with microseconds)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608


def load_sqlite(target: Target, corpus: Corpus, *, fts: str) -> LoadReport:
    """executemany in one connection, synchronous=OFF while loading. fts: "triggers" keeps the
    migration's insert trigger (the FTS index grows row by row), "rebuild" drops it for the
    load, rebuilds the FTS index in one pass and recreates the trigger with its own SQL."""
    report = LoadReport()
    timer = Timer(report)
    conn = sqlite3.connect(target.sqlite_path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-524288")  # 512 MiB
        conn.execute("PRAGMA temp_store=MEMORY")
        trigger_sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type='trigger' AND name='search_docs_fts_insert'"
        ).fetchone()[0]
        if fts == "rebuild":
            conn.execute("DROP TRIGGER search_docs_fts_insert")
        now = _sqlite_time(datetime.now(UTC))
        with timer.phase("users"):
            conn.execute("BEGIN")
            conn.executemany(
                _insert("users", USER_COLUMNS),
                ((i, u, n, r, 1, "{}", now, now) for i, u, n, r in corpus.users()),
            )
            conn.execute("COMMIT")
        context = any(row[1] == "context_tokens" for row in conn.execute("PRAGMA table_info(search_docs)"))
        for tickets, messages, docs in _batches(corpus, timer, context=context):
            with timer.phase("insert"):
                conn.execute("BEGIN")
                conn.executemany(_insert("tickets", TICKET_COLUMNS), (tuple(map(_sqlite_time, r)) for r in tickets))
                conn.executemany(_insert("messages", MESSAGE_COLUMNS), (tuple(map(_sqlite_time, r)) for r in messages))
                conn.executemany(_insert("search_docs", doc_columns(context)), docs)
                conn.execute("COMMIT")
        if fts == "rebuild":
            with timer.phase("fts rebuild"):
                conn.execute("INSERT INTO search_docs_fts(search_docs_fts) VALUES('rebuild')")
                conn.execute(trigger_sql)
        else:
            with timer.phase("fts optimize"):
                conn.execute("INSERT INTO search_docs_fts(search_docs_fts) VALUES('optimize')")
        with timer.phase("analyze"):
            conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    report.size_bytes = sum(p.stat().st_size for p in target.sqlite_path.parent.iterdir())
    return report


async def _pg_has_column(conn: asyncpg.Connection, table: str, column: str) -> bool:
    found = await conn.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2", table, column
    )
    return bool(found)


async def load_postgresql(target: Target, corpus: Corpus) -> LoadReport:
    """COPY through asyncpg, per batch; the GIN index is dropped for the load and created
    again from its own definition afterwards (one sorted build instead of 3 million inserts);
    then VACUUM ANALYZE."""
    report = LoadReport()
    timer = Timer(report)
    conn = await asyncpg.connect(**_pg_connect_args(target.url))
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        gin = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'search_docs_fts_gin'")
        assert gin, "the migration's GIN index is missing"
        await conn.execute("DROP INDEX search_docs_fts_gin")
        now = datetime.now(UTC)
        with timer.phase("users"):
            await conn.copy_records_to_table(
                "users",
                records=[(i, u, n, r, True, "{}", now, now) for i, u, n, r in corpus.users()],
                columns=USER_COLUMNS,
            )
        context = await _pg_has_column(conn, "search_docs", "context_tokens")
        for tickets, messages, docs in _batches(corpus, timer, context=context):
            with timer.phase("insert"):
                async with conn.transaction():
                    await conn.copy_records_to_table("tickets", records=tickets, columns=TICKET_COLUMNS)
                    await conn.copy_records_to_table("messages", records=messages, columns=MESSAGE_COLUMNS)
                    await conn.copy_records_to_table("search_docs", records=docs, columns=doc_columns(context))
        with timer.phase("gin index"):
            await conn.execute(gin)
        for table in ("users", "tickets", "messages", "search_docs"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")  # noqa: S608
        with timer.phase("vacuum analyze"):
            await conn.execute("VACUUM ANALYZE")
        report.size_bytes = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()
    return report


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Timing:
    name: str
    note: str
    samples: list[float]  # seconds
    items: int | None = None
    more: bool | None = None
    docs: int | None = None  # documents holding any term (what the index scan returns)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))] * 1000


@dataclass
class Endpoint:
    name: str
    note: str
    path: str
    headers: dict[str, str]
    samples: list[float] = field(default_factory=list)
    last: httpx.Response | None = None


async def interleaved(client: httpx.AsyncClient, endpoints: Sequence[Endpoint], *, runs: int, budget: float) -> None:
    """Rounds of one GET per endpoint, in turn, so that whatever else the (shared) machine is
    doing weighs on every endpoint alike: 2 unrecorded rounds, then `runs` rounds (fewer, but
    at least 5, once `budget` seconds per endpoint are spent)."""

    async def get(endpoint: Endpoint) -> float:
        started = time.perf_counter()
        response = await client.get(endpoint.path, headers=endpoint.headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {endpoint.path}: {response.status_code} {response.text[:300]}")
        endpoint.last = response
        return elapsed

    for _ in range(2):
        for endpoint in endpoints:
            await get(endpoint)
    deadline = time.perf_counter() + budget * len(endpoints)
    for round_ in range(runs):
        if round_ >= 5 and time.perf_counter() > deadline:
            break
        for endpoint in endpoints:
            endpoint.samples.append(await get(endpoint))


class StatementLog:
    """The SQL statements of one request, with their durations (sqlalchemy engine events)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine.sync_engine
        self.entries: list[tuple[float, str, Any]] = []
        self.active = False
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if self.active:
            self.entries.append((time.perf_counter() - conn.info.pop("bench_started"), statement, parameters))

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


async def explain(target: Target, statement: str, parameters: Any) -> str:
    params = list(parameters) if isinstance(parameters, list | tuple) else parameters
    if target.kind == "sqlite":
        conn = sqlite3.connect(target.sqlite_path)
        try:
            rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
        finally:
            conn.close()
        return "\n".join(f"  {row[0]:>3} {row[1]:>3} {row[3]}" for row in rows)
    conn = await asyncpg.connect(**_pg_connect_args(target.url))
    try:
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *params)
    finally:
        await conn.close()
    return "\n".join(f"  {row[0]}" for row in rows)


async def docs_scanned(target: Target, terms: Sequence[str]) -> int | None:
    """Documents holding at least one of `terms`: what the full-text index hands the query."""
    if not terms:
        return None
    if target.kind == "sqlite":
        conn = sqlite3.connect(target.sqlite_path)
        try:
            query = " OR ".join(f'"{term}"' for term in terms)
            sql = "SELECT count(*) FROM search_docs_fts WHERE search_docs_fts MATCH ?"
            row = conn.execute(sql, (query,)).fetchone()
            return int(row[0])
        finally:
            conn.close()
    conn = await asyncpg.connect(**_pg_connect_args(target.url))
    try:
        tsquery = " || ".join(f"plainto_tsquery('simple', ${i + 1})" for i in range(len(terms)))
        stored = await _pg_has_column(conn, "search_docs", "tokens_fts")
        vector = "tokens_fts" if stored else "to_tsvector('simple', tokens)"
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM search_docs WHERE {vector} @@ ({tsquery})",  # noqa: S608
                *terms,
            )
        )
    finally:
        await conn.close()


async def tickets_containing(target: Target, text: str) -> int:
    """Tickets whose title or any message contains `text` (a scan of the base tables)."""
    sql = (
        "SELECT count(*) FROM (SELECT id FROM tickets WHERE title LIKE {p} "
        "UNION SELECT ticket_id FROM messages WHERE body LIKE {p}) AS found"
    )
    if target.kind == "sqlite":
        conn = sqlite3.connect(target.sqlite_path)
        try:
            return int(conn.execute(sql.format(p="?"), (f"%{text}%", f"%{text}%")).fetchone()[0])
        finally:
            conn.close()
    pg = await asyncpg.connect(**_pg_connect_args(target.url))
    try:
        return int(await pg.fetchval(sql.format(p="$1"), f"%{text}%"))
    finally:
        await pg.close()


async def every_result(
    client: httpx.AsyncClient, query: str, headers: dict[str, str], sort: str | None = None
) -> set[int]:
    """The ids of all the pages of GET /api/v1/tickets?q=`query` (in `sort` order)."""
    found: set[int] = set()
    params: dict[str, Any] = {"q": query, "limit": 100} | ({"sort": sort} if sort else {})
    while True:
        response = await client.get("/api/v1/tickets", params=params, headers=headers)
        response.raise_for_status()
        body = response.json()
        found |= {item["id"] for item in body["items"]}
        if not body.get("next_cursor"):
            return found
        params["cursor"] = body["next_cursor"]


async def measure(target: Target, args: argparse.Namespace) -> list[Timing]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench_search_data_"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env="development",
        database_url=target.url,
        secret_key=SECRET,  # type: ignore[arg-type]
        data_dir=data_dir,
        auto_migrate=False,
        log_json=False,
        log_level="WARNING",
        auth=AuthSettings(argon2_time_cost=1, argon2_memory_kib=64, argon2_parallelism=1),
        worker={"enabled": False},  # type: ignore[arg-type]
    )
    app = create_app(settings)
    results: list[Timing] = []
    try:
        async with app.router.lifespan_context(app):
            ctx = app.state.ctx
            async with ctx.db.transaction() as session:
                for username, role in (("bench-agent", Role.agent), ("bench-admin", Role.admin)):
                    await ctx.users.create(
                        session, UserCreate(username=username, password=PASSWORD, display_name=username, role=role)
                    )
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                headers = {}
                for username in ("bench-agent", "bench-admin"):
                    response = await client.post(
                        "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
                    )
                    response.raise_for_status()
                    headers[username] = {"Authorization": f"Bearer {response.json()['access_token']}"}
                agent = headers["bench-agent"]
                endpoints = [
                    Endpoint("bare", "GET /api/v1/health", "/api/v1/health", agent),
                    Endpoint("reference", "GET /api/v1/tickets (no q)", "/api/v1/tickets", agent),
                ]
                for query, note in QUERIES:
                    path = str(httpx.URL("/api/v1/tickets", params={"q": query}))
                    endpoints.append(Endpoint(f"q={query}", note, path, agent))
                if STATS_PATH in app.openapi()["paths"]:  # (included routers are nested: not in app.routes)
                    probe = await client.get(STATS_PATH, headers=agent)
                    who = agent if probe.status_code == 200 else headers["bench-admin"]
                    endpoints.append(Endpoint("stats 30 d", "stats overview, default (30 days)", STATS_PATH, who))
                    year = (datetime.now(UTC) - timedelta(days=360)).date().isoformat()
                    path = f"{STATS_PATH}?from={year}"
                    endpoints.append(Endpoint("stats 1 y", "stats overview, from= 360 days ago", path, who))
                await interleaved(client, endpoints, runs=args.runs, budget=args.budget)
                for endpoint in endpoints:
                    timing = Timing(endpoint.name, endpoint.note, endpoint.samples)
                    if endpoint.path.startswith("/api/v1/tickets"):
                        assert endpoint.last is not None
                        body = endpoint.last.json()
                        timing.items, timing.more = len(body["items"]), body.get("next_cursor") is not None
                    if endpoint.name.startswith("q="):
                        parsed = parse_query(ctx.search.segmenter, endpoint.name[2:])
                        timing.docs = await docs_scanned(target, parsed.terms)
                    results.append(timing)

                plans: list[tuple[str, float, str]] = []
                if args.explain:
                    log = StatementLog(ctx.db.engine)
                    for endpoint in endpoints:
                        if not endpoint.name.startswith(("q=", "stats")):
                            continue
                        log.entries.clear()
                        log.active = True
                        await client.get(endpoint.path, headers=endpoint.headers)
                        log.active = False
                        seconds, statement, parameters = max(log.entries, key=lambda entry: entry[0])
                        plan = await explain(target, statement, parameters)
                        shown = statement if len(statement) < 400 else statement[:400] + " …"
                        each = ", ".join(f"{ms * 1000:.1f}" for ms, _, _ in log.entries)
                        plans.append((endpoint.name, seconds * 1000, f"statements (ms): {each}\n{shown}\n{plan}"))
                    log.close()
                rare = next(query for query, note in QUERIES if note.startswith("rare"))
                by_relevance = len(await every_result(client, rare, agent))
                by_date = len(await every_result(client, rare, agent, "-updated_at"))
                print(
                    f"\ncheck: q={rare} returns {by_relevance} tickets over all pages by relevance, {by_date} with "
                    f"sort=-updated_at; {await tickets_containing(target, rare)} tickets contain it (LIKE on the texts)"
                )
                for name, ms, plan in plans:
                    print(f"\n## slowest statement of {name}: {ms:.1f} ms\n{plan}")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


# --- printing --------------------------------------------------------------------------------


def print_load(kind: str, report: LoadReport) -> None:
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.phases.items())
    print(
        f"\nload ({kind}): {report.tickets:,} tickets, {report.messages:,} messages, {report.documents:,} search docs"
        f" in {report.total:.1f} s ({phases}); database {report.size_bytes / 2**20:,.0f} MiB"
    )


def print_timings(results: Sequence[Timing]) -> None:
    bare = next(r for r in results if r.name == "bare").p50
    reference = next(r for r in results if r.name == "reference").p50
    print("\n| request | what | p50 ms | p90 ms | p50 / bare | p50 / reference | page items | docs scanned |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        items = "" if r.items is None else f"{r.items}{'+' if r.more else ''}"
        docs = "" if r.docs is None else f"{r.docs:,}"
        print(
            f"| {r.name} | {r.note} | {r.p50:.2f} | {r.p90:.2f} | {r.p50 / bare:.1f} | {r.p50 / reference:.2f} "
            f"| {items} | {docs} |"
        )


def print_scale(kind: str, by_size: dict[int, list[Timing]]) -> None:
    sizes = sorted(by_size)
    small, large = sizes[0], sizes[-1]
    print(f"\n| {kind}: p50 ms | {small:,} tickets | {large:,} tickets | ratio {large:,} / {small:,} |")
    print("|---|---:|---:|---:|")
    large_by_name = {r.name: r for r in by_size[large]}
    for r in by_size[small]:
        other = large_by_name.get(r.name)
        if other is not None:
            print(f"| {r.name} | {r.p50:.2f} | {other.p50:.2f} | {other.p50 / r.p50:.2f} |")


async def run(kind: str, tickets: int, args: argparse.Namespace) -> list[Timing]:
    print(f"\n# Search benchmark: {kind}, {tickets:,} tickets (load average {os.getloadavg()[0]:.1f})")
    # The newest tickets are from today, so the default windows (stats: the last 30 days) see them.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    corpus = Corpus(tickets, seed=args.seed, end=today)
    async with fresh_database(kind, args.pg_url, keep=args.keep) as target:
        started = time.perf_counter()
        await migrate.upgrade(target.url)
        migrated = time.perf_counter() - started
        if kind == "sqlite":
            report = await asyncio.to_thread(load_sqlite, target, corpus, fts=args.sqlite_fts)
        else:
            report = await load_postgresql(target, corpus)
        report.phases = {"migrate": migrated, **report.phases}
        print_load(kind, report)
        print(f"measuring (load average {os.getloadavg()[0]:.1f}; 2 cores shared: compare ratios, not raw ms)")
        if args.load_only:
            return []
        results = await measure(target, args)
        print_timings(results)
        return results


async def main(args: argparse.Namespace) -> None:
    versions = f"CPython {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    if "postgresql" in args.db:
        conn = await asyncpg.connect(**_pg_connect_args(args.pg_url, "postgres"))
        versions += ", PostgreSQL " + str(await conn.fetchval("SHOW server_version"))
        await conn.close()
    print(f"# Search benchmark ({versions}; {args.runs} runs per request, seed {args.seed})")
    print(f"# code: {_code_state()}")
    for kind in args.db:
        by_size = {size: await run(kind, size, args) for size in args.tickets}
        if len(by_size) > 1 and not args.load_only:
            print_scale(kind, by_size)


def _code_state() -> str:
    """The commit measured, and whether app/ or alembic/ differ from it (read-only git)."""
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    try:
        head = subprocess.run(  # noqa: S603  # fixed arguments
            [git, "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        # --no-optional-locks: never write the index of a shared checkout.
        dirty = subprocess.run(  # noqa: S603
            [git, "--no-optional-locks", "status", "--porcelain", "--", "app", "alembic"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = len([line for line in dirty if line.strip()])
    return f"{head[:90]}" + (f" + {changed} uncommitted files in app/ and alembic/" if changed else "")


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tickets", type=int, nargs="+", default=[10_000], help="corpus sizes, each in a fresh database"
    )
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite"])
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help=f"must name a database {PG_DATABASE}*")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per endpoint")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per endpoint before stopping early")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sqlite-fts", choices=["rebuild", "triggers"], default="rebuild")
    parser.add_argument("--load-only", action="store_true", help="load and print the load time, measure nothing")
    parser.add_argument("--keep", action="store_true", help="keep the (last) database for a closer look")
    parser.add_argument("--explain", action="store_true", help="print the plan of each query's slowest statement")
    return parser.parse_args(None if argv is None else list(argv))


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
