"""HTTP throughput of the main endpoints, printed beside two references served the same way in
the same run.

    make bench-http       (or: .venv/bin/python -m bench.http [--db sqlite postgresql] [--seconds 3])

The server is the real app (`create_app`, the settings `make run` uses, the job worker on)
served by uvicorn in a process of its own, on 127.0.0.1; the load comes from this process, on
the other core: `--connections` keep-alive HTTP/1.1 connections, each sending its next request
as soon as the previous answer is read (bench/_load.py). Each target gets `--seconds` of load
per round, in turn, `--rounds` times; the median round is printed (load from elsewhere weighs
on neighbouring targets alike). A ratio to the limit is the median of the rounds' ratios, each
endpoint against its limit measured just before it: on a shared machine the speed of both
drifts by a third between runs minutes apart, less within seconds.

References, mounted on the same app (`reference_routes`), so middleware, uvicorn and the client
are the same for every target:
- bare: `GET /api/v1/health`, the stack with no authentication and no database;
- limit: what the stack allows at best for the same work: the access token's signature checked
  (no database) and one SQLAlchemy Core statement on the same engine: the ticket row by id
  (detail), 20 rows newest first (list), one INSERT in a write transaction (create).

Ratios compare each endpoint with its limit. Targets (issue 9): detail >= 0.70, list >= 0.60,
create >= 0.50. `create sla` is a create in a category with an SLA policy (due dates, an SLA
row, the category checked): what most helpdesks' creates are, printed beside the limit create
without a target of its own. Nothing asserts: speed is measured and printed, never checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import Depends, FastAPI, Header, Request
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.core.config import load_settings
from app.core.context import AppContext
from app.core.errors import InvalidToken, NotAuthenticated
from app.db.base import utcnow
from app.db.session import WRITE_OPTION
from app.main import create_app
from app.models import Category, Role, SlaPolicy
from app.models.ticket import Channel, Priority, Ticket, TicketStatus
from app.schemas.user import UserCreate
from bench._load import Result, run_load

SECRET = "bench-http-secret-key-long-enough-0123456789"  # noqa: S105  # a throwaway database
PASSWORD = "bench password 0123"  # noqa: S105  # the bench's own throwaway accounts
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_http"
SEARCH_WORD = "打印机"
TITLES = ["宿舍 wifi 连不上", "打印机卡纸", "VPN 无法连接", "邮箱密码忘记了", "教室投影仪没有信号"]
TARGETS = {"detail": 0.70, "list": 0.60, "create": 0.50}


# --- the server side: our app plus the reference routes ------------------------------------


def server_app() -> FastAPI:
    """uvicorn's factory in the server process: the app from the environment, plus references."""
    application = create_app(load_settings())
    reference_routes(application)
    return application


async def verified_user_id(request: Request, authorization: Annotated[str | None, Header()] = None) -> int:
    """The limit's authentication: the access token's signature and claims, no database."""
    if not authorization or not authorization.startswith("Bearer "):
        raise NotAuthenticated
    ctx: AppContext = request.app.state.ctx
    try:
        return ctx.auth.signer.verify(authorization.removeprefix("Bearer ")).user_id
    except Exception:
        raise InvalidToken from None


TokenUserId = Annotated[int, Depends(verified_user_id)]


def reference_routes(application: FastAPI) -> None:
    """The limit: a signature check and one Core statement, on the app's own engine."""
    table = Ticket.__table__

    @application.get("/bench/limit/tickets/{ticket_id}")
    async def limit_detail(ticket_id: int, request: Request, _: TokenUserId) -> Any:
        async with request.app.state.ctx.db.engine.connect() as conn:
            row = (await conn.execute(select(table).where(table.c.id == ticket_id))).mappings().one()
        return dict(row)

    @application.get("/bench/limit/tickets")
    async def limit_list(request: Request, _: TokenUserId) -> Any:
        stmt = select(table).order_by(table.c.id.desc()).limit(20)
        async with request.app.state.ctx.db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return {"items": [dict(row) for row in rows]}

    @application.post("/bench/limit/tickets", status_code=201)
    async def limit_create(request: Request, user_id: TokenUserId) -> Any:
        body = await request.json()
        now = utcnow()
        values = {
            "number": f"B{secrets.token_hex(8)}",
            "title": body["title"],
            "status": TicketStatus.new,
            "priority": Priority.normal,
            "priority_rank": 2,
            "channel": Channel.api,
            "requester_id": user_id,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        engine = request.app.state.ctx.db.engine.execution_options(**{WRITE_OPTION: True})  # BEGIN IMMEDIATE
        async with engine.begin() as conn:
            row = (await conn.execute(table.insert().values(values).returning(table))).mappings().one()
        return dict(row)


# --- the bench side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    method: str
    path: str
    who: str  # whose token: "customer" or "agent"
    body: dict[str, Any] | None = None


def targets(ticket_id: int, category_id: int) -> list[Target]:
    create = {"title": "宿舍 wifi 连不上", "body": "手机和电脑都连不上宿舍的无线网络。"}
    return [
        Target("bare", "GET", "/api/v1/health", "customer"),
        Target("limit detail", "GET", f"/bench/limit/tickets/{ticket_id}", "customer"),
        Target("detail", "GET", f"/api/v1/tickets/{ticket_id}", "customer"),
        Target("limit list", "GET", "/bench/limit/tickets", "agent"),
        Target("list", "GET", "/api/v1/tickets?limit=20", "agent"),
        Target("search", "GET", f"/api/v1/tickets?limit=20&q={quote(SEARCH_WORD)}", "agent"),
        Target("limit create", "POST", "/bench/limit/tickets", "customer", create),
        Target("create", "POST", "/api/v1/tickets", "customer", create),
        Target("create sla", "POST", "/api/v1/tickets", "customer", create | {"category_id": category_id}),
    ]


def server_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HELPDESK_ENV": "production",
        "HELPDESK_DATABASE_URL": database_url,
        "HELPDESK_SECRET_KEY": SECRET,
        "HELPDESK_DATA_DIR": str(data_dir),
        "HELPDESK_LOG_LEVEL": "WARNING",
        "HELPDESK_AUTO_MIGRATE": "true",
        "HELPDESK_ONEBOT__INBOUND": "false",  # no QQ here (production wants a token otherwise)
    }


async def seed(env: dict[str, str]) -> int:
    """A customer, an agent, and a category with an SLA policy for its normal tickets, created
    in process before the server starts (migrations too); returns the category's id."""
    settings = load_settings(
        _env_file=None,
        env="production",
        database_url=env["HELPDESK_DATABASE_URL"],
        secret_key=SECRET,
        data_dir=Path(env["HELPDESK_DATA_DIR"]),
        worker={"enabled": False},
        onebot={"inbound": False},
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        ctx = application.state.ctx
        async with ctx.db.transaction() as session:
            for username, role in (("bench-customer", Role.customer), ("bench-agent", Role.agent)):
                user = UserCreate(username=username, password=PASSWORD, display_name=username, role=role)
                await ctx.users.create(session, user)
            category = Category(name="宿舍网络")
            session.add(category)
            await session.flush()
            targets_minutes = {"first_response_minutes": 240, "resolution_minutes": 2880}
            session.add(
                SlaPolicy(name="宿舍网络", priority=Priority.normal, category_id=category.id, **targets_minutes)
            )
            return category.id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.http:server_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)  # noqa: S603  # our argv
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url, process)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_up(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited before it answered")
        try:
            if httpx.get(f"{base_url}/api/v1/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in 30 s")


async def tokens_and_tickets(base_url: str, tickets: int) -> tuple[dict[str, str], int]:
    """Both users' access tokens, `tickets` tickets of the customer's; a ticket id to read."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        tokens = {}
        for who in ("customer", "agent"):
            response = await client.post("/api/v1/auth/login", json={"username": f"bench-{who}", "password": PASSWORD})
            response.raise_for_status()
            tokens[who] = response.json()["access_token"]
        headers = {"Authorization": f"Bearer {tokens['customer']}"}
        ids: list[int] = []

        async def create(start: int) -> None:
            for i in range(start, tickets, 8):
                body = {"title": f"{TITLES[i % len(TITLES)]} #{i}", "body": f"第 {i} 个工单：{TITLES[i % len(TITLES)]}"}
                response = await client.post("/api/v1/tickets", json=body, headers=headers)
                response.raise_for_status()
                ids.append(int(response.json()["id"]))

        await asyncio.gather(*(create(start) for start in range(8)))
    return tokens, sorted(ids)[len(ids) // 2]


def measure(
    base_url: str, plan: list[Target], tokens: dict[str, str], args: argparse.Namespace
) -> dict[str, list[Result]]:
    rounds: dict[str, list[Result]] = {target.name: [] for target in plan}
    for _ in range(args.rounds):
        for target in plan:
            headers = {"Authorization": f"Bearer {tokens[target.who]}"}
            body = json.dumps(target.body, ensure_ascii=False).encode() if target.body is not None else None
            result = run_load(
                base_url,
                target.method,
                target.path,
                headers=headers,
                body=body,
                connections=args.connections,
                seconds=args.seconds,
            )
            rounds[target.name].append(result)
            print(f"  {target.name}: {result.rate:.0f}/s", file=sys.stderr)
    return rounds


def limit_of(name: str) -> str | None:
    """The reference an endpoint is compared with (search: the list's; create sla: the create's)."""
    if name.startswith("limit") or name == "bare":
        return None
    return f"limit {_LIKE.get(name, name)}"


_LIKE = {"search": "list", "create sla": "create"}


def ratio_to_limit(rounds: dict[str, list[Result]], name: str) -> float:
    limit = rounds[limit_of(name) or name]
    return statistics.median(result.rate / base.rate for result, base in zip(rounds[name], limit, strict=True))


def report(db: str, rounds: dict[str, list[Result]]) -> None:
    results = {name: statistics.median_low(each) for name, each in rounds.items()}
    bare = results["bare"].rate
    print(f"\n{db}: requests/s (median of rounds), × limit (median of the rounds' ratios), p50 / p99 ms, errors")
    print(f"{'target':<14} {'req/s':>8} {'× bare':>7} {'× limit':>8} {'p50':>7} {'p99':>7} {'non-2xx':>8}")
    for name, result in results.items():
        versus = f"{ratio_to_limit(rounds, name):8.2f}" if limit_of(name) else f"{'':>8}"
        print(
            f"{name:<14} {result.rate:8.0f} {result.rate / bare:7.2f} {versus} "
            f"{result.p50_ms:7.1f} {result.p99_ms:7.1f} {result.failures:8d}"
        )
    for kind, target in TARGETS.items():
        ratio = ratio_to_limit(rounds, kind)
        print(f"  {kind}: {ratio:.2f} of the limit (target >= {target:.2f}): {'met' if ratio >= target else 'NOT met'}")
    print(f"  create sla: {ratio_to_limit(rounds, 'create sla'):.2f} of the limit (no target)")


def run_database(db: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        if db == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'helpdesk.db'}"
        else:
            url = args.pg_url
            recreate_database(url)
        env = server_env(url, Path(tmp) / "data")
        category_id = asyncio.run(seed(env))
        with running_server(env) as base_url:
            tokens, ticket_id = asyncio.run(tokens_and_tickets(base_url, args.tickets))
            rounds = measure(base_url, targets(ticket_id, category_id), tokens, args)
        report(db, rounds)


def recreate_database(url: str) -> None:
    name = make_url(url).database
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(  # noqa: S603  # fixed argv; the name is our own setting
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],  # noqa: S607  # psql from PATH
            check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="a database of its own: dropped and created")
    parser.add_argument("--seconds", type=float, default=3.0, help="load per target per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tickets", type=int, default=1000, help="tickets created before measuring")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.connections} connections, {args.seconds} s per target per round, {args.rounds} rounds")
    for db in args.db:
        run_database(db, args)


if __name__ == "__main__":
    main()
