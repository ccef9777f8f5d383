"""Reply drafts (GET /tickets/{id}/reply-suggestion, an SSE stream) against fake
OpenAI-compatible providers over real HTTP: pieces relayed in order, `done` with the provider
and the knowledge-base sources, grounding in the thread, canned responses and articles, a
provider breaking off mid-answer, fallback before the first piece, and the refusals (customer,
unknown ticket, AI off, every provider down) as problem+json before any stream starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.config import LlmSettings
from app.models.llm import LlmCall
from tests.conftest import bearer
from tests.fakes.openai_server import Fail, FakeOpenAI, Reply, StreamBreak, running_fake_openai
from tests.fakes.server import serving

TICKETS = "/api/v1/tickets"
PIECES = ["您好，", "请先在设置里", "忘记该网络，", "再重新连接。"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        server.default = Reply("".join(PIECES), chunks=PIECES)
        yield server


@pytest.fixture
async def backup() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        server.default = Reply("备用的回复", chunks=["备用的", "回复"])
        yield server


@pytest.fixture
def llm_config() -> str:
    """one | two | off | reply_off; a test parametrizes it to change the providers."""
    return "one"


@pytest.fixture
def settings(settings, fake, backup, llm_config):
    providers = {
        "one": [fake.provider()],
        "two": [fake.provider(), backup.provider("backup")],
        "off": [],
        "reply_off": [fake.provider()],
    }[llm_config]
    llm = LlmSettings(providers=providers, reply_suggestion=llm_config != "reply_off")
    return settings.model_copy(update={"llm": llm})


async def open_ticket(client, tokens, title: str, body: str) -> int:
    response = await client.post(TICKETS, json={"title": title, "body": body}, headers=bearer(tokens))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.fixture
async def ticket(client, customer) -> int:
    return await open_ticket(client, customer, "宿舍 wifi 连不上", "宿舍的无线网络从昨晚开始就连不上了，手机也不行。")


async def read_stream(client, tokens, ticket_id: int, **headers: str) -> tuple[Any, list[tuple[str, Any]]]:
    """The response and its events as (event, data) pairs, read as they arrive."""
    events: list[tuple[str, Any]] = []
    url = f"{TICKETS}/{ticket_id}/reply-suggestion"
    async with client.stream("GET", url, headers={**bearer(tokens), **headers}) as response:
        if response.headers["content-type"].startswith("text/event-stream"):
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((event, json.loads(line.removeprefix("data: "))))
        else:
            await response.aread()
    return response, events


def deltas(events: list[tuple[str, Any]]) -> list[str]:
    return [data["text"] for event, data in events if event == "delta"]


async def test_the_draft_streams_piece_by_piece_then_done(client, agent, ticket, fake):
    response, events = await read_stream(client, agent, ticket)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert deltas(events) == PIECES
    assert events[-1] == ("done", {"provider": "fake", "model": "fake-model", "sources": []})
    assert fake.requests[0]["stream"] is True


async def test_over_real_http_pieces_arrive_as_sent_and_no_connection_is_held(app, agent, ticket, fake):
    """Served by uvicorn: the first piece reaches the client while the provider still holds
    back the second (30 s away: a buffered relay would time out here), and meanwhile the app
    holds no database connection. Leaving early closes the stream."""
    fake.default = Reply("您好，稍等", chunks=["您好，", "稍等"], chunk_delay=30)
    url = f"{TICKETS}/{ticket}/reply-suggestion"
    async with (
        serving(app) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
        http.stream("GET", url, headers=bearer(agent)) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        async with asyncio.timeout(10):
            while await anext(lines) != 'data: {"text": "您好，"}':
                pass
        assert app.state.ctx.db.engine.pool.checkedout() == 0


async def test_done_names_the_knowledge_base_article_the_draft_used(client, agent, ticket, fake):
    articles = {
        "wifi": ("宿舍无线网络连不上", "先在设置里忘记该网络，再重新连接；仍不行请报修。"),
        "card": ("校园卡挂失", "校园卡丢了，请到一卡通中心挂失。"),
    }
    ids = {}
    for key, (title, body) in articles.items():
        created = await client.post(
            "/api/v1/kb/articles", json={"title": title, "body": body, "status": "published"}, headers=bearer(agent)
        )
        assert created.status_code == 201, created.text
        ids[key] = created.json()["id"]

    _, events = await read_stream(client, agent, ticket)

    done = dict(events)["done"]
    assert {"type": "kb", "id": ids["wifi"], "title": "宿舍无线网络连不上"} in done["sources"]
    assert all(source["id"] != ids["card"] for source in done["sources"] if source["type"] == "kb")
    sent = fake.all_text()
    assert "先在设置里忘记该网络" in sent
    assert "一卡通中心" not in sent


async def test_canned_responses_are_offered_rendered_for_the_ticket(client, admin, agent, ticket, fake):
    canned = {"title": "网络报修", "body": "{{requester.display_name}}您好，网络问题请先重启路由器。"}
    created = await client.post("/api/v1/canned-responses", json=canned, headers=bearer(admin))
    assert created.status_code == 201, created.text

    _, events = await read_stream(client, agent, ticket)

    sent = fake.all_text()
    assert "Customer1您好，网络问题请先重启路由器。" in sent  # rendered: the customer's display name
    assert {"type": "canned", "id": created.json()["id"], "title": "网络报修"} in dict(events)["done"]["sources"]


async def test_the_prompt_holds_the_thread_as_data_with_notes_marked_internal(client, agent, ticket, fake):
    await client.post(f"{TICKETS}/{ticket}/messages", json={"body": "交换机故障，明早更换"}, headers=bearer(agent))
    await client.post(
        f"{TICKETS}/{ticket}/messages", json={"body": "备件已到", "internal": True}, headers=bearer(agent)
    )

    await read_stream(client, agent, ticket)

    messages = fake.requests[0]["messages"]
    assert messages[0]["role"] == "system"
    assert "简体中文" in messages[0]["content"]  # the customer wrote Chinese
    data = messages[1]["content"]
    assert '<data source="工单标题">' in data
    assert "内部备注（客户看不到）" in data
    assert data.index("宿舍的无线网络") < data.index("交换机故障") < data.index("备件已到")


async def test_an_english_speaking_customer_gets_an_english_draft(client, customer, agent, fake):
    ticket = await open_ticket(
        client, customer, "VPN down", "I cannot connect to the campus VPN from home since Monday."
    )
    await read_stream(client, agent, ticket)
    assert "English" in fake.requests[0]["messages"][0]["content"]


async def test_a_phone_number_in_the_thread_never_reaches_the_provider(client, customer, agent, fake):
    ticket = await open_ticket(client, customer, "打印机卡纸", "三楼打印机卡纸了，联系我 138-0013-8000")
    response, _ = await read_stream(client, agent, ticket)
    assert response.status_code == 200
    assert "三楼打印机卡纸了" in fake.all_text()
    assert "0013" not in fake.all_text()


async def test_a_provider_breaking_off_mid_answer_ends_with_ai_interrupted(app, client, agent, ticket, fake):
    fake.script(StreamBreak(["您好，", "请先"]))

    response, events = await read_stream(client, agent, ticket)

    assert response.status_code == 200
    assert deltas(events) == ["您好，", "请先"]
    assert events[-1][0] == "error"
    assert events[-1][1]["code"] == "ai_interrupted"
    assert "done" not in dict(events)


@pytest.mark.parametrize("llm_config", ["two"])
async def test_a_provider_failing_before_its_first_piece_is_replaced(app, client, agent, ticket, fake, llm_config):
    fake.script(Fail(500))

    _, events = await read_stream(client, agent, ticket)

    assert deltas(events) == ["备用的", "回复"]
    assert dict(events)["done"]["provider"] == "backup"
    async with app.state.ctx.db.transaction(write=False) as session:
        rows = (await session.execute(select(LlmCall).order_by(LlmCall.id))).scalars()
        assert [(r.feature, r.provider, r.outcome, r.ticket_id) for r in rows] == [
            ("reply", "fake", "server_error", ticket),
            ("reply", "backup", "ok", ticket),
        ]


async def test_when_every_provider_fails_the_answer_is_503_before_any_stream(client, agent, ticket, fake):
    fake.script(Fail(500))
    response, events = await read_stream(client, agent, ticket)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "ai_unavailable"
    assert events == []


async def test_a_customer_may_not_ask_for_a_draft(client, customer, ticket, fake):
    response, _ = await read_stream(client, customer, ticket)
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    assert fake.calls == 0


async def test_a_draft_for_an_unknown_ticket_is_404(client, agent, fake):
    response, _ = await read_stream(client, agent, 999_999)
    assert (response.status_code, response.json()["code"]) == (404, "ticket_not_found")
    assert fake.calls == 0


@pytest.mark.parametrize("llm_config", ["off", "reply_off"])
async def test_with_ai_off_the_draft_is_503_ai_disabled(client, agent, ticket, fake, llm_config):
    response, _ = await read_stream(client, agent, ticket)
    assert (response.status_code, response.json()["code"]) == (503, "ai_disabled")
    assert fake.calls == 0
