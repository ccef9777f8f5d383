"""Ticket summaries (POST /tickets/{id}/summary) and the stored triage suggestion
(GET /tickets/{id}/triage), against fake OpenAI-compatible providers over real HTTP: generated,
cached until the ticket changes, regenerated, refused to customers, degraded cleanly when AI is
off or every provider fails, falling back to a second provider, and masking personal data."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from app.core.config import LlmSettings
from app.crud import crud_llm
from app.models.llm import LlmCall, TicketAi
from tests.conftest import bearer
from tests.fakes.openai_server import Fail, FakeOpenAI, Reply, running_fake_openai

TICKETS = "/api/v1/tickets"
PHONE = "13800138000"
DRAFT = {
    "intent": "恢复宿舍网络",
    "summary": "客户的宿舍 wifi 连不上，已重启路由器，问题仍在。",
    "open_questions": ["是否只有这一台设备连不上？"],
    "mood": "frustrated",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        server.default = Reply(json.dumps(DRAFT, ensure_ascii=False), prompt_tokens=120, completion_tokens=40)
        yield server


@pytest.fixture
async def backup() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        server.default = Reply(json.dumps(DRAFT, ensure_ascii=False))
        yield server


@pytest.fixture
def llm_config() -> str:
    """one | two | off | summary_off; a test parametrizes it to change the providers."""
    return "one"


@pytest.fixture
def settings(settings, fake, backup, llm_config):
    providers = {
        "one": [fake.provider()],
        "two": [fake.provider(), backup.provider("backup")],
        "off": [],
        "summary_off": [fake.provider()],
    }[llm_config]
    llm = LlmSettings(providers=providers, summary=llm_config != "summary_off")
    return settings.model_copy(update={"llm": llm})


@pytest.fixture
async def ticket(client, customer) -> int:
    body = {"title": "宿舍 wifi 连不上", "body": f"宿舍网络从昨晚开始连不上，我的电话 {PHONE}，路由器重启过了。"}
    response = await client.post(TICKETS, json=body, headers=bearer(customer))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def summarize(client, tokens, ticket_id: int, **params: Any) -> Any:
    return await client.post(f"{TICKETS}/{ticket_id}/summary", params=params, headers=bearer(tokens))


async def calls(app) -> list[tuple[str, str, str, int | None]]:
    async with app.state.ctx.db.transaction(write=False) as session:
        rows = (await session.execute(select(LlmCall).order_by(LlmCall.id))).scalars()
        return [(r.feature, r.provider, r.outcome, r.ticket_id) for r in rows]


async def test_summary_is_generated_then_served_from_the_cache(client, agent, ticket, fake):
    first = await summarize(client, agent, ticket)
    assert first.status_code == 200, first.text
    body = first.json()
    assert {k: body[k] for k in DRAFT} == DRAFT
    assert (body["cached"], body["provider"], body["model"]) == (False, "fake", "fake-model")
    assert fake.calls == 1

    again = await summarize(client, agent, ticket)
    assert again.status_code == 200
    assert again.json() == {**body, "cached": True}
    assert fake.calls == 1  # no provider call for an unchanged ticket


async def test_the_summary_request_asks_for_json_and_carries_the_thread_as_data(client, agent, ticket, fake):
    note = await client.post(
        f"{TICKETS}/{ticket}/messages", json={"body": "机房今晚维护交换机", "internal": True}, headers=bearer(agent)
    )
    assert note.status_code == 201

    assert (await summarize(client, agent, ticket)).status_code == 200

    sent = fake.requests[0]
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][0]["role"] == "system"
    user = next(m["content"] for m in sent["messages"] if m["role"] == "user")
    assert '<data source="工单标题">\n宿舍 wifi 连不上\n</data>' in user
    assert "机房今晚维护交换机" in user  # agents' notes are part of what is summarised
    assert "内部备注" in user
    assert user.index("宿舍网络从昨晚开始连不上") < user.index("机房今晚维护交换机")  # newest last


@pytest.mark.parametrize(
    "change",
    [
        {"path": "messages", "json": {"body": "还是连不上，手机也不行"}, "who": "customer"},
        {"path": "messages", "json": {"body": "已联系网络组", "internal": True}, "who": "agent"},
        {"path": "", "json": {"status": "pending"}, "who": "agent"},
    ],
    ids=["customer_message", "internal_note", "status"],
)
async def test_any_change_of_the_ticket_makes_a_new_summary(client, agent, customer, ticket, fake, change):
    assert (await summarize(client, agent, ticket)).json()["cached"] is False
    tokens = agent if change["who"] == "agent" else customer
    url = f"{TICKETS}/{ticket}/{change['path']}".rstrip("/")
    method = client.post if change["path"] else client.patch
    assert (await method(url, json=change["json"], headers=bearer(tokens))).status_code in (200, 201)
    fake.default = Reply(json.dumps({**DRAFT, "mood": "angry"}))

    response = await summarize(client, agent, ticket)

    assert response.status_code == 200
    assert (response.json()["cached"], response.json()["mood"]) == (False, "angry")
    assert fake.calls == 2
    assert (await summarize(client, agent, ticket)).json()["cached"] is True
    assert fake.calls == 2


async def test_refresh_makes_a_new_summary_of_an_unchanged_ticket(client, agent, ticket, fake):
    await summarize(client, agent, ticket)
    response = await summarize(client, agent, ticket, refresh="true")
    assert (response.status_code, response.json()["cached"]) == (200, False)
    assert fake.calls == 2


async def test_an_english_speaking_agent_gets_an_english_summary(client, agent, ticket, fake):
    await summarize(client, agent, ticket)
    headers = {**bearer(agent), "Accept-Language": "en"}
    response = await client.post(f"{TICKETS}/{ticket}/summary", headers=headers)
    assert (response.status_code, response.json()["cached"]) == (200, False)
    assert "in English" in fake.requests[1]["messages"][0]["content"]
    assert "用简体中文" in fake.requests[0]["messages"][0]["content"]


async def test_a_phone_number_in_the_ticket_never_reaches_the_provider(client, agent, ticket, fake):
    assert (await summarize(client, agent, ticket)).status_code == 200
    sent = fake.all_text()
    assert "宿舍网络从昨晚开始连不上" in sent
    assert PHONE not in sent
    assert "138 0013 8000" not in sent


async def test_a_customer_may_not_ask_for_a_summary(client, customer, ticket, fake):
    response = await summarize(client, customer, ticket)
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    assert fake.calls == 0


async def test_an_unknown_ticket_is_404(client, agent, fake):
    response = await summarize(client, agent, 999_999)
    assert (response.status_code, response.json()["code"]) == (404, "ticket_not_found")
    assert fake.calls == 0


@pytest.mark.parametrize("llm_config", ["off", "summary_off"])
async def test_with_ai_off_the_summary_is_503_ai_disabled(client, agent, ticket, fake, llm_config):
    response = await summarize(client, agent, ticket)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "ai_disabled"
    assert fake.calls == 0


async def test_when_the_only_provider_fails_the_summary_is_503_ai_unavailable(app, client, agent, ticket, fake):
    fake.script(Fail(500))
    response = await summarize(client, agent, ticket)
    assert (response.status_code, response.json()["code"]) == (503, "ai_unavailable")
    assert await calls(app) == [("summary", "fake", "server_error", ticket)]
    async with app.state.ctx.db.transaction(write=False) as session:
        assert await session.get(TicketAi, ticket) is None  # nothing cached


@pytest.mark.parametrize("llm_config", ["two"])
async def test_a_failing_provider_falls_back_to_the_next(app, client, agent, admin, ticket, fake, backup, llm_config):
    fake.script(Fail(500))
    response = await summarize(client, agent, ticket)
    assert response.status_code == 200, response.text
    assert (response.json()["provider"], response.json()["model"]) == ("backup", "backup-model")
    assert await calls(app) == [("summary", "fake", "server_error", ticket), ("summary", "backup", "ok", ticket)]

    usage = await client.get("/api/v1/llm/usage", params={"group_by": "provider"}, headers=bearer(admin))
    assert usage.status_code == 200
    by_provider = {g["key"]: (g["calls"], g["failures"]) for g in usage.json()["groups"]}
    assert by_provider == {"backup": (1, 0), "fake": (1, 1)}


async def test_a_slower_summary_never_overwrites_a_fresher_one(app, client, agent, ticket, fake):
    """The cache write keeps the summary of the later state (a request that read the ticket
    before a change and answered after it must not replace the newer summary)."""
    await summarize(client, agent, ticket)
    async with app.state.ctx.db.transaction(write=False) as session:
        stored = await session.get(TicketAi, ticket)
        assert stored is not None
        key = stored.summary_event_id
    async with app.state.ctx.db.transaction() as session:
        stale = {**DRAFT, "mood": "angry", "provider": "x", "model": "y", "language": "zh"}
        await crud_llm.store_summary(session, ticket, stale, event_id=key - 1, at=datetime.now(UTC))
    again = await summarize(client, agent, ticket)
    assert (again.json()["cached"], again.json()["mood"]) == (True, DRAFT["mood"])


# --- the stored triage suggestion -----------------------------------------------------------------


async def test_triage_is_null_until_the_ticket_was_triaged(client, agent, ticket):
    response = await client.get(f"{TICKETS}/{ticket}/triage", headers=bearer(agent))
    assert response.status_code == 200
    assert response.json() == {"ticket_id": ticket, "mode": "suggest", "suggestion": None, "triaged_at": None}


async def test_triage_returns_the_stored_suggestion(app, client, agent, ticket):
    suggestion = {
        "category_id": None,
        "priority": "high",
        "tags": ["网络"],
        "summary": "宿舍网络中断",
        "language": "zh",
        "sentiment": "negative",
        "provider": "fake",
        "model": "fake-model",
    }
    at = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    async with app.state.ctx.db.transaction() as session:
        session.add(TicketAi(ticket_id=ticket, triage=suggestion, triaged_at=at))

    response = await client.get(f"{TICKETS}/{ticket}/triage", headers=bearer(agent))

    assert response.status_code == 200
    assert response.json()["suggestion"] == suggestion
    assert datetime.fromisoformat(response.json()["triaged_at"]) == at


async def test_customers_never_see_the_triage_and_unknown_tickets_are_404(client, customer, agent, ticket):
    denied = await client.get(f"{TICKETS}/{ticket}/triage", headers=bearer(customer))
    assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")
    missing = await client.get(f"{TICKETS}/999999/triage", headers=bearer(agent))
    assert (missing.status_code, missing.json()["code"]) == (404, "ticket_not_found")
