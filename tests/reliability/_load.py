"""The load scenario (tests/reliability/test_load.py): the API served by uvicorn in a process of
its own, and the clients that create tickets against it through dropped connections.

`python -m tests.reliability._load '<settings JSON>'` builds the app from those settings, serves
it on 127.0.0.1 on a port the kernel picks, and prints that port on stdout once it accepts
connections. It stops on SIGTERM, or when its stdin closes (the test that started it is gone).
A process of its own gives the server and the load generator a core each, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
TICKETS = "/api/v1/tickets"
# 409 idempotency_key_in_progress carries no Retry-After: a client backs off on its own.
IN_PROGRESS_FIRST_PAUSE = 0.05
IN_PROGRESS_MAX_PAUSE = 1.0
# A client's patience per attempt: far above the queueing 200 clients cause (seconds at the
# 99th percentile); running out is a transport error, retried like any other.
REQUEST_TIMEOUT = 120


# --- the server process -------------------------------------------------------------------


async def _serve(server: Any) -> None:
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn has no "started" event to await
        if task.done():
            task.result()
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.01)
    print(server.servers[0].sockets[0].getsockname()[1], flush=True)  # noqa: T201  # the port, for the test
    await task


def _exit_when_stdin_closes() -> None:
    """An orphaned server would hold the database: the parent's end of stdin closes when it dies."""
    sys.stdin.read()
    os.kill(os.getpid(), signal.SIGTERM)


def main(settings_json: str) -> None:
    import uvicorn

    from app.cli import GoingAwayServer
    from app.core.config import Settings
    from app.main import create_app

    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    settings = Settings(_env_file=None, **json.loads(settings_json))
    application = create_app(settings)
    # As `helpdesk serve` configures it (uvloop when installed), on a port of the kernel's
    # choosing: no race for a free one.
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve(GoingAwayServer(config, application)))


async def start_server(settings: dict[str, Any], log_path: Path) -> tuple[asyncio.subprocess.Process, str]:
    """Start the server process; returns it and its base URL once it accepts connections."""
    with log_path.open("wb") as stderr:  # a file, not a pipe: nobody drains a pipe during the load
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability._load",
            json.dumps(settings),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = await process.stdout.readline()
    except TimeoutError:
        line = b""
    if not line.strip().isdigit():
        await stop_server(process)
        log = await asyncio.to_thread(log_path.read_text, errors="replace")
        raise RuntimeError(f"the server did not start: {log[-4000:]}")
    return process, f"http://127.0.0.1:{int(line)}"


async def stop_server(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(20):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


# --- the clients --------------------------------------------------------------------------


class Cut(enum.Enum):
    """How the first attempt of a create loses its connection."""

    # Closed right after the whole request is written: the server has it, and its app (which does
    # not watch the connection once it has read the body) creates the ticket for a client that
    # is gone, unless the retry, on a new connection, gets there first.
    at_once = "at_once"
    # Closed as the answer comes back, unread: the server committed the ticket, the client never
    # learns its id (the lost-response case idempotency keys exist for).
    on_answer = "on_answer"


@dataclass(frozen=True)
class Create:
    index: int
    customer: int
    cut: Cut | None

    @property
    def key(self) -> str:
        return f"load-{self.index:06d}"

    @property
    def title(self) -> str:
        return f"负载测试 {self.key}"

    def body(self) -> dict[str, str]:
        return {"title": self.title, "body": f"打印机又卡纸了，第 {self.index} 次报修，麻烦尽快处理。"}


def plan(count: int, customers: int, cut_every: int = 10) -> list[Create]:
    """`count` creates spread over the customers; one in `cut_every` is cut, alternating the ways."""
    creates = []
    for index in range(count):
        cut = None
        if index % cut_every == 0:
            cut = Cut.at_once if (index // cut_every) % 2 == 0 else Cut.on_answer
        creates.append(Create(index, index % customers, cut))
    return creates


@dataclass
class Answer:
    status: int
    ticket_id: int | None
    replayed: bool


@dataclass
class KeyLog:
    """Everything one key's client saw."""

    create: Create
    answers: list[Answer] = field(default_factory=list)
    cut_status_line: bytes | None = None
    in_progress: int = 0
    transport_errors: int = 0

    @property
    def created(self) -> Answer | None:
        return next((a for a in self.answers if a.status == 201), None)


@dataclass
class LoadRun:
    logs: list[KeyLog]
    # POSTs written to a socket (httpx attempts and the raw cut ones); those that failed with a
    # transport error may or may not have reached the app.
    sent: int = 0
    transport_errors: int = 0
    # Seconds each answered httpx attempt took (queueing in the server included).
    latencies: list[float] = field(default_factory=list)

    def statuses(self) -> Counter[int]:
        seen: Counter[int] = Counter(a.status for log in self.logs for a in log.answers)
        for log in self.logs:
            if log.cut_status_line:
                seen[int(log.cut_status_line.split()[1])] += 1
        return seen

    def cut_keys(self, *, created_by_cut: bool) -> list[KeyLog]:
        """Cut keys whose ticket the cut attempt created (the retry that settled the key got the
        replay), or the retry did (a fresh 201: the cut attempt, if the app ran it, came second)."""
        return [
            log
            for log in self.logs
            if log.create.cut is not None and log.created is not None and log.created.replayed == created_by_cut
        ]


def raw_create_request(create: Create, host: str, port: int, token: str) -> bytes:
    body = json.dumps(create.body(), ensure_ascii=False).encode()
    head = (
        f"POST {TICKETS} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Idempotency-Key: {create.key}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


async def send_and_drop(host: str, port: int, request: bytes, cut: Cut) -> bytes | None:
    """Write a whole request on a connection of its own and close it without reading the
    answer. For `on_answer`, waits for the answer's status line (kept only so that the test can
    count a 5xx the client never saw) and drops the rest, the ticket's id with it."""
    reader, writer = await asyncio.open_connection(host, port)
    status_line = None
    try:
        writer.write(request)
        await writer.drain()
        if cut is Cut.on_answer:
            status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return status_line


class LoadClients:
    def __init__(self, base_url: str, tokens: list[str], clients: int) -> None:
        self.base_url = base_url
        url = httpx.URL(base_url)
        self.host, self.port = str(url.host), int(url.port or 80)
        self.tokens = tokens
        self.clients = clients

    async def run(self, creates: list[Create]) -> LoadRun:
        run = LoadRun([KeyLog(c) for c in creates])
        pending: Iterator[KeyLog] = iter(run.logs)  # shared: each client takes the next key
        async with self._http() as http, asyncio.TaskGroup() as clients:
            for _ in range(self.clients):
                clients.create_task(self._client(http, pending, run))
        return run

    async def replay(self, logs: list[KeyLog]) -> list[httpx.Response]:
        """Sends these keys' requests once more, each once."""
        async with self._http() as http:
            return list(await asyncio.gather(*(self._post(http, log.create) for log in logs)))

    def _http(self) -> httpx.AsyncClient:
        # One connection per client task, opened as the tasks start.
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        return httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=REQUEST_TIMEOUT)

    async def _post(self, http: httpx.AsyncClient, create: Create) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[create.customer]}", "Idempotency-Key": create.key}
        return await http.post(TICKETS, json=create.body(), headers=headers)

    async def _client(self, http: httpx.AsyncClient, pending: Iterator[KeyLog], run: LoadRun) -> None:
        for log in pending:
            if log.create.cut is not None:
                run.sent += 1
                token = self.tokens[log.create.customer]
                request = raw_create_request(log.create, self.host, self.port, token)
                log.cut_status_line = await send_and_drop(self.host, self.port, request, log.create.cut)
            await self._create_until_answered(http, log, run)

    async def _create_until_answered(self, http: httpx.AsyncClient, log: KeyLog, run: LoadRun) -> None:
        """What a careful client does: the same request with the same key, again on a transport
        error or while the key is in progress, until it has an answer."""
        pause = IN_PROGRESS_FIRST_PAUSE
        while True:
            run.sent += 1
            try:
                response = await self._post(http, log.create)
            except httpx.TransportError:
                log.transport_errors += 1
                run.transport_errors += 1
                await asyncio.sleep(pause)
                continue
            run.latencies.append(response.elapsed.total_seconds())
            data = response.json()
            if response.status_code == 409 and data.get("code") == "idempotency_key_in_progress":
                log.in_progress += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, IN_PROGRESS_MAX_PAUSE)
                continue
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            ticket_id = data.get("id") if response.status_code == 201 else None
            log.answers.append(Answer(response.status_code, ticket_id, replayed))
            return


async def customer_tokens(base_url: str, count: int, password: str) -> list[str]:
    """Registers `count` customers and logs each in through the API."""
    tokens = []
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
        for index in range(count):
            username = f"load{index}"
            registered = await http.post("/api/v1/auth/register", json={"username": username, "password": password})
            assert registered.status_code == 201, registered.text
            login = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
            assert login.status_code == 200, login.text
            tokens.append(login.json()["access_token"])
    return tokens


async def server_post_counts(base_url: str, metrics_token: str) -> Counter[str]:
    """POST /api/v1/tickets requests the server's app handled, by status class (from /metrics)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert response.status_code == 200, response.text
    counts: Counter[str] = Counter()
    prefix = "helpdesk_http_request_duration_seconds_count{"
    for line in response.text.splitlines():
        if line.startswith(prefix) and 'method="POST"' in line and f'route="{TICKETS}"' in line:
            labels, value = line[len(prefix) :].rsplit("} ", 1)
            status = dict(part.split("=", 1) for part in labels.split(","))["status"].strip('"')
            counts[status] += int(float(value))
    return counts


if __name__ == "__main__":
    main(sys.argv[1])
