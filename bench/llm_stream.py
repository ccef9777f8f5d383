"""The overhead our relay adds to a streamed reply, printed: time to first token (TTFT) through
GET /api/v1/tickets/{id}/reply-suggestion against the same provider asked directly.

    make bench-llm        (or: .venv/bin/python -m bench.llm_stream [--iterations 300])

Everything runs in one process and one event loop, one request at a time, on 127.0.0.1:

- the provider: the tests' fake OpenAI-compatible server (tests/fakes/openai_server.py) served
  by uvicorn, answering every request with the same streamed reply (--pieces chunks);
- direct: httpx streaming `POST /v1/chat/completions` to it, with the very body our endpoint
  sent (captured once), so both ask for the same prompt;
- reference: a minimal FastAPI app, served by uvicorn, whose one route opens the stream with the
  openai SDK and relays it as SSE (`StreamingResponse`): the stack without our code;
- ours: the app (SQLite in a temporary directory, real migrations, signed in as an agent)
  served by uvicorn; a ticket with a short thread, canned responses and published articles,
  so authentication, the read transaction, the knowledge-base retrieval, the prompt, masking
  and the usage accounting all run as in production (the job worker is off; logs at WARNING).

Each round times one request to each target, in turn (load from elsewhere weighs on all alike).
TTFT is measured at the client: from sending the request to reading the first piece of text.
Printed: p50 and p95 per target, ours minus direct and ours minus reference (of the p50s and
p95s, and the median of the per-round differences), and how long our read-before-streaming
takes in process. Nothing asserts: speed is measured and printed, never checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI

from app.core.config import AuthSettings, LlmProviderSettings, LlmSettings, Settings
from app.crud import crud_user
from app.db import migrate
from app.llm import reply
from app.llm.client import LlmClient
from app.main import create_app
from app.models import Role
from app.schemas.user import UserCreate
from tests.fakes.openai_server import FakeOpenAI, Reply, running_fake_openai
from tests.fakes.server import serving

SECRET = "bench-llm-secret-key-long-enough-0123456789"  # noqa: S105  # a throwaway database
PASSWORD = "bench password 0123"  # noqa: S105
ANSWER = (
    "您好，请先在手机的无线设置里忘记宿舍网络，再重新连接并输入校园账号。"
    "如果仍然连不上，请告诉我们房间号，我们安排上门检查。"
)

ARTICLES = [
    ("宿舍无线网络连不上", "先在设置里忘记该网络，再重新连接；仍不行请报修。"),
    ("校园网账号密码重置", "登录自助服务平台，点击忘记密码，按提示重置。"),
    ("VPN 使用指南", "在校外访问教务系统，需要先连接 VPN。"),
    ("打印机卡纸处理", "打开前盖，取出卡住的纸张，再合上前盖。"),
    ("校园卡挂失", "校园卡丢了，请到一卡通中心挂失。"),
]
CANNED = [
    ("网络报修", "{{requester.display_name}}您好，网络问题请先重启路由器；仍不行我们安排上门。"),
    ("请补充信息", "您好，请告诉我们您的房间号和设备型号，方便排查。"),
    ("已解决确认", "您好，问题已处理，如还有疑问请随时回复。"),
]
THREAD = [
    ("customer", "宿舍的 wifi 从昨晚开始就连不上了，手机和电脑都不行。"),
    ("agent", "您好，请问是整栋楼都连不上，还是只有您的房间？"),
    ("customer", "隔壁也连不上，路由器我重启过了，还是不行。"),
]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def is_openai_text(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    choices = json.loads(line[6:]).get("choices") or []
    return any((c.get("delta") or {}).get("content") for c in choices)


def is_relayed_text(line: str) -> bool:
    return line.startswith('data: {"text"')


async def timed(client: httpx.AsyncClient, method: str, url: str, matches: Callable[[str], bool], **kw: Any) -> float:
    """Milliseconds from sending the request to reading the first line that carries text (the
    rest of the stream is read too, so the connection is reused)."""
    started = time.perf_counter()
    ttft: float | None = None
    async with client.stream(method, url, **kw) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
        async for line in response.aiter_lines():
            if ttft is None and matches(line):
                ttft = time.perf_counter() - started
    if ttft is None:
        raise RuntimeError(f"{url}: the stream ended without text")
    return ttft * 1000


def reference_app(fake: FakeOpenAI, body: dict[str, Any]) -> FastAPI:
    """The same stack without our code: FastAPI, the openai SDK, a StreamingResponse relay."""
    app = FastAPI()
    sdk = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0, timeout=30)

    @app.get("/relay")
    async def relay() -> StreamingResponse:
        chunks = await sdk.chat.completions.create(model=body["model"], messages=body["messages"], stream=True)

        async def events() -> AsyncIterator[str]:
            async with chunks:
                async for chunk in chunks:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield f"event: delta\ndata: {json.dumps({'text': choice.delta.content})}\n\n"
            yield "event: done\ndata: {}\n\n"

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return app


def layer_app(llm: LlmClient, plan: reply.ReplyPlan) -> FastAPI:
    """Our provider layer alone (masking, fallback, accounting, our SSE frames), relaying a
    prompt prepared once: ours without authentication and the read before streaming."""
    app = FastAPI()

    @app.get("/relay")
    async def relay() -> StreamingResponse:
        stream = reply.ReplyStream(llm, plan)
        await stream.start()
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream.events(), media_type="text/event-stream", headers=headers)

    return app


async def seed(app: Any, client: httpx.AsyncClient) -> tuple[dict[str, str], int]:
    """An agent's tokens and a ticket with a thread; canned responses and articles."""
    ctx = app.state.ctx
    users = {"bench-agent": Role.agent, "bench-customer": Role.customer, "bench-admin": Role.admin}
    async with ctx.db.transaction() as session:
        for username, role in users.items():
            await ctx.users.create(
                session, UserCreate(username=username, password=PASSWORD, display_name=username, role=role)
            )
    headers = {}
    for username in users:
        response = await client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        response.raise_for_status()
        headers[username] = {"Authorization": f"Bearer {response.json()['access_token']}"}
    agent, customer, admin = headers["bench-agent"], headers["bench-customer"], headers["bench-admin"]
    (_, first), *rest = THREAD
    created = await client.post("/api/v1/tickets", json={"title": "宿舍 wifi 连不上", "body": first}, headers=customer)
    created.raise_for_status()
    ticket_id = int(created.json()["id"])
    for who, text in rest:
        author = agent if who == "agent" else customer
        posted = await client.post(f"/api/v1/tickets/{ticket_id}/messages", json={"body": text}, headers=author)
        posted.raise_for_status()
    for title, text in ARTICLES:
        article = {"title": title, "body": text, "status": "published"}
        (await client.post("/api/v1/kb/articles", json=article, headers=agent)).raise_for_status()
    for title, text in CANNED:
        canned = {"title": title, "body": text}
        (await client.post("/api/v1/canned-responses", json=canned, headers=admin)).raise_for_status()
    return agent, ticket_id


async def bench_agent(app: Any) -> Any:
    async with app.state.ctx.db.transaction(write=False) as session:
        agent = await crud_user.get_by_username(session, "bench-agent")
    assert agent is not None
    return agent


async def prepare_ms(app: Any, ticket_id: int, iterations: int) -> list[float]:
    """Our read before streaming (ticket, thread, articles, canned responses, prompt), in process."""
    agent = await bench_agent(app)
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        await reply.prepare(app.state.ctx, ticket_id, agent=agent)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def app_settings(url: str, data_dir: Path, fake: FakeOpenAI) -> Settings:
    return Settings(
        _env_file=None,
        env="development",
        database_url=url,
        secret_key=SECRET,  # type: ignore[arg-type]
        data_dir=data_dir,
        auto_migrate=False,
        log_json=False,
        log_level="WARNING",
        auth=AuthSettings(argon2_time_cost=1, argon2_memory_kib=64, argon2_parallelism=1),
        worker={"enabled": False},  # type: ignore[arg-type]
        llm=LlmSettings(providers=[LlmProviderSettings(**fake.provider())]),
    )


Target = Callable[[], Awaitable[float]]


async def rounds(targets: dict[str, Target], *, warmup: int, iterations: int) -> dict[str, list[float]]:
    """One request to each target per round, the order rotating; warm-up rounds discarded."""
    samples: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    for round_ in range(warmup + iterations):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            value = await targets[name]()
            if round_ >= warmup:
                samples[name].append(value)
    return samples


async def main(args: argparse.Namespace) -> None:
    pieces = [ANSWER[i : i + args.piece_chars] for i in range(0, len(ANSWER), args.piece_chars)]
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'helpdesk.db'}"
        await migrate.upgrade(url)
        async with running_fake_openai() as fake:
            fake.default = Reply(ANSWER, chunks=pieces)
            app = create_app(app_settings(url, Path(tmp) / "data", fake))
            async with (
                app.router.lifespan_context(app),
                serving(app) as ours_url,
                httpx.AsyncClient(base_url=ours_url, timeout=30) as ours,
            ):
                agent, ticket_id = await seed(app, ours)
                path = f"/api/v1/tickets/{ticket_id}/reply-suggestion"
                await timed(ours, "GET", path, is_relayed_text, headers=agent)
                body = fake.requests[-1]  # what our endpoint asks the provider: the same for all
                plan = await reply.prepare(app.state.ctx, ticket_id, agent=await bench_agent(app))
                async with (
                    serving(reference_app(fake, body)) as reference_url,
                    serving(layer_app(app.state.ctx.llm, plan)) as layer_url,
                    httpx.AsyncClient(base_url=reference_url, timeout=30) as reference,
                    httpx.AsyncClient(base_url=layer_url, timeout=30) as layer,
                    httpx.AsyncClient(base_url=fake.base_url.removesuffix("/v1"), timeout=30) as direct,
                ):
                    auth = {"Authorization": "Bearer sk-test"}
                    targets: dict[str, Target] = {
                        "direct": lambda: timed(
                            direct, "POST", "/v1/chat/completions", is_openai_text, json=body, headers=auth
                        ),
                        "reference": lambda: timed(reference, "GET", "/relay", is_relayed_text),
                        "layer": lambda: timed(layer, "GET", "/relay", is_relayed_text),
                        "ours": lambda: timed(ours, "GET", path, is_relayed_text, headers=agent),
                    }
                    samples = await rounds(targets, warmup=args.warmup, iterations=args.iterations)
                prepared = await prepare_ms(app, ticket_id, args.iterations)
            prompt_chars = sum(len(m["content"]) for m in body["messages"])
            report(args, samples, prepared, pieces=len(pieces), prompt_chars=prompt_chars)


LABELS = {
    "direct": "direct from the fake provider (httpx)",
    "reference": "reference relay (FastAPI + openai SDK + StreamingResponse)",
    "layer": "our provider layer + SSE relay (LlmClient.stream, no reads)",
    "ours": "ours: GET /tickets/{id}/reply-suggestion",
}
DIFFERENCES = (
    ("ours", "direct", "ours − direct (the target: < 5 ms)"),
    ("reference", "direct", "reference − direct (the stack: SDK, FastAPI, one more hop)"),
    ("layer", "reference", "layer − reference (our provider layer)"),
    ("ours", "layer", "ours − layer (auth + the read before streaming)"),
)


def report(
    args: argparse.Namespace,
    samples: dict[str, list[float]],
    prepared: list[float],
    *,
    pieces: int,
    prompt_chars: int,
) -> None:
    print(
        f"# bench.llm_stream: {args.iterations} rounds (+{args.warmup} warm-up); reply in {pieces} pieces; "
        f"prompt {prompt_chars} characters; SQLite"
    )
    print(f"# Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print()
    print("| time to first token, ms | p50 | p95 |")
    print("|---|---:|---:|")
    for name, label in LABELS.items():
        print(f"| {label} | {percentile(samples[name], 50):.2f} | {percentile(samples[name], 95):.2f} |")
    print()
    print("| difference, ms | of the p50s | of the p95s | median per round |")
    print("|---|---:|---:|---:|")
    for a, b, label in DIFFERENCES:
        paired = statistics.median(x - y for x, y in zip(samples[a], samples[b], strict=True))
        p50 = percentile(samples[a], 50) - percentile(samples[b], 50)
        p95 = percentile(samples[a], 95) - percentile(samples[b], 95)
        print(f"| {label} | {p50:.2f} | {p95:.2f} | {paired:.2f} |")
    print()
    print(
        f"read before streaming (reply.prepare, in process): p50 {percentile(prepared, 50):.2f} ms, "
        f"p95 {percentile(prepared, 95):.2f} ms"
    )
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=300, help="timed rounds (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed rounds first (default 30)")
    parser.add_argument("--piece-chars", type=int, default=4, help="characters per streamed piece (default 4)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
