"""The admins' LLM usage report (GET /llm/usage): calls, failures, tokens and average latency per
business day (Asia/Shanghai, zeros included), per feature and per provider; the same figures on
SQLite and PostgreSQL; bounded ranges; admins only. Rows are inserted with controlled timestamps
(the provider layer would stamp "now"); one test makes a real call through a fake provider."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.core.config import LlmSettings
from app.models.llm import LlmCall
from tests.conftest import bearer
from tests.fakes.openai_server import FakeOpenAI, Reply, running_fake_openai

USAGE = "/api/v1/llm/usage"
# Shanghai days 2026-11-10 .. 2026-11-12: [11-09T16:00Z, 11-12T16:00Z)
WINDOW = {"from": "2026-11-10", "to": "2026-11-12"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (created_at UTC, feature, provider, outcome, prompt_tokens, completion_tokens, latency_ms)
ROWS = [
    ("2026-11-09 15:59:59", "triage", "deepseek", "ok", 500, 50, 999),  # 11-09 23:59:59 Shanghai: outside
    ("2026-11-09 16:00:00", "triage", "deepseek", "ok", 100, 20, 300),  # 11-10 00:00 Shanghai: the first day
    ("2026-11-10 03:00:00", "summary", "deepseek", "server_error", None, None, 50),
    ("2026-11-10 03:00:01", "summary", "qwen", "ok", 200, 60, 700),
    ("2026-11-10 15:59:59", "reply", "qwen", "ok", None, None, 1200),  # a stream without usage; still 11-10
    ("2026-11-10 16:00:00", "reply", "qwen", "timeout", None, None, 30000),  # 11-11 00:00 Shanghai
    ("2026-11-12 15:59:59", "triage", "deepseek", "invalid_output", 80, 10, 401),  # 11-12 23:59:59: inside
    ("2026-11-12 16:00:00", "triage", "deepseek", "ok", 1, 1, 1),  # 11-13 Shanghai: outside
]


@pytest.fixture
async def calls(app: Any) -> None:
    async with app.state.ctx.db.transaction() as session:
        for at, feature, provider, outcome, prompt, completion, latency in ROWS:
            session.add(
                LlmCall(
                    created_at=utc(at),
                    feature=feature,
                    provider=provider,
                    model=f"{provider}-model",
                    outcome=outcome,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    latency_ms=latency,
                )
            )


async def report(client, tokens, **params: Any) -> dict[str, Any]:
    response = await client.get(USAGE, params=params, headers=bearer(tokens))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def figures(calls: int, failures: int, prompt: int, completion: int, avg: float | None) -> dict[str, Any]:
    return {
        "calls": calls,
        "failures": failures,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "avg_latency_ms": avg,
    }


TOTAL = figures(6, 3, 380, 90, round((300 + 50 + 700 + 1200 + 30000 + 401) / 6, 1))


async def test_usage_per_business_day_includes_empty_days(client, admin, calls):
    body = await report(client, admin, **WINDOW, group_by="day")

    assert body["group_by"] == "day"
    assert body["range"] == {"from": "2026-11-09T16:00:00Z", "to": "2026-11-12T16:00:00Z", "timezone": "Asia/Shanghai"}
    assert body["groups"] == [
        {"key": "2026-11-10", **figures(4, 1, 300, 80, round((300 + 50 + 700 + 1200) / 4, 1))},
        {"key": "2026-11-11", **figures(1, 1, 0, 0, 30000.0)},
        {"key": "2026-11-12", **figures(1, 1, 80, 10, 401.0)},
    ]
    assert body["total"] == TOTAL


async def test_usage_per_feature(client, admin, calls):
    body = await report(client, admin, **WINDOW, group_by="feature")
    assert body["groups"] == [
        {"key": "reply", **figures(2, 1, 0, 0, 15600.0)},
        {"key": "summary", **figures(2, 1, 200, 60, 375.0)},
        {"key": "triage", **figures(2, 1, 180, 30, 350.5)},
    ]
    assert body["total"] == TOTAL


async def test_usage_per_provider(client, admin, calls):
    body = await report(client, admin, **WINDOW, group_by="provider")
    assert body["groups"] == [
        {"key": "deepseek", **figures(3, 2, 180, 30, 250.3)},
        {"key": "qwen", **figures(3, 1, 200, 60, 10633.3)},
    ]


async def test_a_window_without_calls_has_zeros_and_no_average(client, admin, calls):
    body = await report(client, admin, **{"from": "2026-10-01", "to": "2026-10-02"})
    assert [g["key"] for g in body["groups"]] == ["2026-10-01", "2026-10-02"]
    assert all(g["calls"] == 0 and g["avg_latency_ms"] is None for g in body["groups"])
    assert body["total"] == figures(0, 0, 0, 0, None)
    by_feature = await report(client, admin, **{"from": "2026-10-01", "to": "2026-10-02"}, group_by="feature")
    assert by_feature["groups"] == []


async def test_the_default_window_is_the_last_30_days(client, admin):
    body = await report(client, admin)
    assert len(body["groups"]) == 30
    assert body["group_by"] == "day"


async def test_a_range_longer_than_366_days_is_refused(client, admin):
    response = await client.get(USAGE, params={"from": "2025-01-01", "to": "2026-01-02"}, headers=bearer(admin))
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("to", "range_too_long")]


async def test_an_unknown_grouping_is_refused(client, admin):
    response = await client.get(USAGE, params={"group_by": "model"}, headers=bearer(admin))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "group_by"


async def test_only_admins_see_usage(client, agent, customer):
    assert (await client.get(USAGE)).status_code == 401
    for tokens in (agent, customer):
        response = await client.get(USAGE, headers=bearer(tokens))
        assert (response.status_code, response.json()["code"]) == (403, "forbidden")


# --- a real call, accounted -------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        summary = {"intent": "打印", "summary": "打印机卡纸。", "open_questions": [], "mood": "neutral"}
        server.default = Reply(json.dumps(summary, ensure_ascii=False), prompt_tokens=321, completion_tokens=45)
        yield server


@pytest.fixture
def settings(settings, request):
    if "fake" not in request.fixturenames:
        return settings
    fake = request.getfixturevalue("fake")
    return settings.model_copy(update={"llm": LlmSettings(providers=[fake.provider()])})


async def test_a_summary_call_shows_up_in_todays_usage(client, customer, agent, admin, fake):
    created = await client.post(
        "/api/v1/tickets", json={"title": "打印机卡纸", "body": "三楼打印机卡纸"}, headers=bearer(customer)
    )
    summary = await client.post(f"/api/v1/tickets/{created.json()['id']}/summary", headers=bearer(agent))
    assert summary.status_code == 200, summary.text

    by_feature = await report(client, admin, group_by="feature")
    (group,) = by_feature["groups"]
    assert (group["key"], group["calls"], group["failures"]) == ("summary", 1, 0)
    assert (group["prompt_tokens"], group["completion_tokens"]) == (321, 45)
    today = (await report(client, admin))["groups"][-1]
    assert today["calls"] == 1


async def test_a_stream_whose_reader_left_is_a_call_but_not_a_failure(app, client, admin):
    async with app.state.ctx.db.transaction() as session:
        session.add(
            LlmCall(
                created_at=utc("2026-11-10 03:00:00"),
                feature="reply",
                provider="qwen",
                model="qwen-model",
                outcome="cancelled",
                latency_ms=900,
            )
        )

    body = await report(client, admin, **WINDOW, group_by="provider")

    assert body["groups"] == [{"key": "qwen", **figures(1, 0, 0, 0, 900.0)}]
