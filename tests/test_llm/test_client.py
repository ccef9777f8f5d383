"""The provider layer against fake OpenAI-compatible servers over real HTTP: fallback, repair,
circuit breaker, streaming, masking, accounting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from app.core.config import LlmProviderSettings, LlmSettings
from app.llm.client import Attempt, ChatMessage, LlmClient, LlmUnavailable, Outcome, StreamInterrupted
from app.llm.usage import database_sink
from app.models.llm import LlmCall
from tests.conftest import captured_logs
from tests.fakes.openai_server import (
    Drop,
    Fail,
    FakeOpenAI,
    Hang,
    Reply,
    StreamBreak,
    ToolCall,
    running_fake_openai,
)

QUESTION = [ChatMessage("system", "你是工单助手。"), ChatMessage("user", "打印机卡纸了")]


class Verdict(BaseModel):
    category: str
    urgent: bool


@pytest.fixture
async def first() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as fake:
        yield fake


@pytest.fixture
async def second() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as fake:
        yield fake


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(name: str, fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return fake.provider(name, **extra)


def client_for(
    *providers: dict[str, Any], attempts: list[Attempt], clock: Clock | None = None, **llm: Any
) -> LlmClient:
    async def sink(attempt: Attempt) -> None:
        attempts.append(attempt)

    settings = LlmSettings(providers=[LlmProviderSettings(**p) for p in providers], **llm)
    return LlmClient(settings, usage=sink, clock=clock or Clock())


def outcomes(attempts: list[Attempt]) -> list[tuple[str, str]]:
    return [(a.provider, a.outcome.value) for a in attempts]


async def test_the_first_provider_answers_and_one_attempt_is_recorded(first: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first), attempts=attempts)
    first.script(Reply("请检查纸盒", prompt_tokens=42, completion_tokens=7))

    answer = await llm.complete("summary", QUESTION, ticket_id=None)

    assert (answer.text, answer.provider, answer.model) == ("请检查纸盒", "a", "a-model")
    assert outcomes(attempts) == [("a", "ok")]
    assert (attempts[0].prompt_tokens, attempts[0].completion_tokens) == (42, 7)
    assert first.requests[0]["model"] == "a-model"
    await llm.aclose()


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (Fail(500), "server_error"),
        (Fail(503), "server_error"),
        (Fail(429), "rate_limited"),
        (Hang(1.0), "timeout"),
        (Drop(), "connection_error"),
        (Fail(401), "error"),
    ],
)
async def test_a_failing_provider_falls_back_to_the_next(
    first: FakeOpenAI, second: FakeOpenAI, failure: Any, outcome: str
) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first, timeout_seconds=0.3), provider("b", second), attempts=attempts)
    first.script(failure)
    second.script(Reply("来自第二家"))

    answer = await llm.complete("summary", QUESTION)

    assert (answer.text, answer.provider) == ("来自第二家", "b")
    assert outcomes(attempts) == [("a", outcome), ("b", "ok")]
    assert first.calls == 1  # no hidden SDK retries: max_retries=0
    await llm.aclose()


async def test_every_provider_failing_is_unavailable(first: FakeOpenAI, second: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first), provider("b", second), attempts=attempts)
    first.script(Fail(500))
    second.script(Fail(502))

    with pytest.raises(LlmUnavailable):
        await llm.complete("summary", QUESTION)
    assert outcomes(attempts) == [("a", "server_error"), ("b", "server_error")]
    await llm.aclose()


async def test_no_provider_is_unavailable() -> None:
    llm = LlmClient(LlmSettings())
    assert not llm.enabled
    with pytest.raises(LlmUnavailable):
        await llm.complete("summary", QUESTION)


async def test_json_is_validated_and_parsed(first: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first), attempts=attempts)
    first.script(Reply('```json\n{"category": "打印机", "urgent": false}\n```'))

    result = await llm.complete_json("triage", QUESTION, Verdict)

    assert result.value == Verdict(category="打印机", urgent=False)
    body = first.requests[0]
    assert body["response_format"] == {"type": "json_object"}
    assert '"urgent"' in body["messages"][-1]["content"]  # the schema is in the prompt
    await llm.aclose()


async def test_invalid_json_gets_one_repair_on_the_same_provider(first: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first), attempts=attempts)
    first.script(Reply('{"category": "打印机"}'), Reply('{"category": "打印机", "urgent": true}'))

    result = await llm.complete_json("triage", QUESTION, Verdict)

    assert result.value.urgent is True
    assert outcomes(attempts) == [("a", "invalid_output"), ("a", "ok")]
    repair = first.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"category": "打印机"}'}
    assert "urgent" in repair[-1]["content"]  # the validation error tells the model what is wrong
    await llm.aclose()


async def test_json_still_invalid_after_the_repair_falls_back(first: FakeOpenAI, second: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first), provider("b", second), attempts=attempts)
    first.script(Reply("这不是 JSON"), Reply("还是不是"))
    second.script(Reply('{"category": "网络", "urgent": false}'))

    result = await llm.complete_json("triage", QUESTION, Verdict)

    assert (result.value.category, result.provider) == ("网络", "b")
    assert outcomes(attempts) == [("a", "invalid_output"), ("a", "invalid_output"), ("b", "ok")]
    await llm.aclose()


async def test_response_format_follows_the_capability_flags(first: FakeOpenAI, second: FakeOpenAI) -> None:
    reply = Reply('{"category": "x", "urgent": false}')
    attempts: list[Attempt] = []
    schema_llm = client_for(provider("a", first, json_schema=True), attempts=attempts)
    plain_llm = client_for(provider("b", second, json_object=False), attempts=attempts)
    first.script(reply)
    second.script(reply)

    await schema_llm.complete_json("triage", QUESTION, Verdict)
    await plain_llm.complete_json("triage", QUESTION, Verdict)

    assert first.requests[0]["response_format"]["type"] == "json_schema"
    assert first.requests[0]["response_format"]["json_schema"]["name"] == "Verdict"
    assert "response_format" not in second.requests[0]  # some local models reject it
    await schema_llm.aclose()
    await plain_llm.aclose()


async def test_without_json_mode_a_provider_with_tools_answers_through_a_forced_function_call(
    first: FakeOpenAI,
) -> None:
    """Ark's models, for one, take tools but not JSON mode."""
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first, json_object=False, tools=True), attempts=attempts)
    first.script(ToolCall("answer", '{"category": "网络", "urgent": true}'))

    result = await llm.complete_json("triage", QUESTION, Verdict)

    assert result.value == Verdict(category="网络", urgent=True)
    body = first.requests[0]
    assert "response_format" not in body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "answer"}}
    assert body["tools"][0]["function"]["parameters"]["required"] == ["category", "urgent"]
    assert outcomes(attempts) == [("a", "ok")]
    await llm.aclose()


async def test_invalid_function_arguments_get_the_repair_too(first: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first, json_object=False, tools=True), attempts=attempts)
    first.script(
        ToolCall("answer", '{"category": "网络"}'), ToolCall("answer", '{"category": "网络", "urgent": false}')
    )

    result = await llm.complete_json("triage", QUESTION, Verdict)

    assert result.value.urgent is False
    assert outcomes(attempts) == [("a", "invalid_output"), ("a", "ok")]
    await llm.aclose()


async def test_a_provider_rejecting_the_response_format_falls_back(first: FakeOpenAI, second: FakeOpenAI) -> None:
    """A provider flagged for json_schema that rejects it (DeepSeek, GLM) costs one 400."""
    first.reject_response_format = {"json_schema"}
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first, json_schema=True), provider("b", second), attempts=attempts)
    second.script(Reply('{"category": "x", "urgent": true}'))

    result = await llm.complete_json("triage", QUESTION, Verdict)

    assert result.provider == "b"
    assert outcomes(attempts) == [("a", "error"), ("b", "ok")]
    await llm.aclose()


async def test_the_circuit_breaker_skips_a_failing_provider_then_tries_it_again(
    first: FakeOpenAI, second: FakeOpenAI
) -> None:
    clock = Clock()
    attempts: list[Attempt] = []
    llm = client_for(
        provider("a", first),
        provider("b", second),
        attempts=attempts,
        clock=clock,
        breaker_failures=2,
        breaker_cooldown_seconds=30,
    )
    first.default = Fail(500)
    second.default = Reply("b 在")

    for _ in range(2):
        await llm.complete("summary", QUESTION)
    assert first.calls == 2
    for _ in range(3):  # open: a is not even asked
        assert (await llm.complete("summary", QUESTION)).provider == "b"
    assert first.calls == 2

    clock.now += 31  # cooled down: one trial call
    first.default = Reply("a 回来了")
    assert (await llm.complete("summary", QUESTION)).provider == "a"
    assert first.calls == 3
    await llm.aclose()


async def test_a_failed_trial_call_opens_the_breaker_again(first: FakeOpenAI, second: FakeOpenAI) -> None:
    clock = Clock()
    llm = client_for(
        provider("a", first),
        provider("b", second),
        attempts=[],
        clock=clock,
        breaker_failures=1,
        breaker_cooldown_seconds=10,
    )
    first.default = Fail(500)

    await llm.complete("summary", QUESTION)
    clock.now += 11
    await llm.complete("summary", QUESTION)  # the trial fails
    await llm.complete("summary", QUESTION)  # skipped again

    assert first.calls == 2
    await llm.aclose()


async def test_personal_data_never_reaches_the_provider(first: FakeOpenAI) -> None:
    llm = client_for(provider("a", first), attempts=[])
    message = "我的手机 13800138000，身份证 110105199001011234，邮箱 zhang.san@example.edu.cn，电脑蓝屏"

    await llm.complete("summary", [ChatMessage("system", "总结工单"), ChatMessage("user", message)])

    sent = first.all_text()
    assert "13800138000" not in sent
    assert "110105199001011234" not in sent
    assert "zhang.san@example.edu.cn" not in sent
    assert "[手机号]" in sent
    assert "电脑蓝屏" in sent
    await llm.aclose()


async def test_an_organisation_pattern_is_masked_and_masking_can_be_switched_off(
    first: FakeOpenAI, second: FakeOpenAI
) -> None:
    masked = client_for(provider("a", first), attempts=[], mask_patterns=[r"学号\s*\d{8}"])
    open_text = client_for(provider("b", second), attempts=[], mask_personal_data=False)
    message = [ChatMessage("user", "学号 20231234，手机 13800138000")]

    await masked.complete("summary", message)
    await open_text.complete("summary", message)

    assert "20231234" not in first.all_text()
    assert "13800138000" not in first.all_text()
    assert "13800138000" in second.all_text()
    await masked.aclose()
    await open_text.aclose()


async def test_per_feature_models(first: FakeOpenAI) -> None:
    llm = client_for(provider("a", first, models={"triage": "small-model"}), attempts=[])

    await llm.complete("triage", QUESTION)
    await llm.complete("summary", QUESTION)

    assert [r["model"] for r in first.requests] == ["small-model", "a-model"]
    await llm.aclose()


async def test_streaming_relays_pieces_and_usage(first: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first, stream_usage=True), attempts=attempts)
    first.script(
        Reply("您好，请重启路由器", chunks=["您好，", "请重启", "路由器"], prompt_tokens=30, completion_tokens=9)
    )

    pieces = [piece async for piece in llm.stream("reply", QUESTION)]

    assert pieces == ["您好，", "请重启", "路由器"]
    assert first.requests[0]["stream_options"] == {"include_usage": True}
    assert (attempts[0].outcome, attempts[0].prompt_tokens, attempts[0].completion_tokens) == (Outcome.ok, 30, 9)
    await llm.aclose()


async def test_streaming_without_usage_support_records_unknown_tokens(first: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first, stream_usage=False), attempts=attempts)
    first.script(Reply("好的"))

    assert "".join([piece async for piece in llm.stream("reply", QUESTION)]) == "好的"
    assert "stream_options" not in first.requests[0]
    assert attempts[0].prompt_tokens is None
    await llm.aclose()


async def test_a_stream_failing_before_its_first_piece_falls_back(first: FakeOpenAI, second: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first), provider("b", second), attempts=attempts)
    first.script(Fail(429))
    second.script(Reply("第二家", chunks=["第二", "家"]))

    assert [piece async for piece in llm.stream("reply", QUESTION)] == ["第二", "家"]
    assert outcomes(attempts) == [("a", "rate_limited"), ("b", "ok")]
    await llm.aclose()


async def test_a_stream_breaking_off_midway_is_interrupted(first: FakeOpenAI, second: FakeOpenAI) -> None:
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first), provider("b", second), attempts=attempts)
    first.script(StreamBreak(["您好，", "请"]))

    received: list[str] = []

    async def read() -> None:
        async for piece in llm.stream("reply", QUESTION):
            received.append(piece)

    with pytest.raises(StreamInterrupted):
        await read()

    assert received == ["您好，", "请"]
    assert second.calls == 0  # text was relayed already: no second voice mid-sentence
    assert outcomes(attempts) == [("a", "connection_error")]
    await llm.aclose()


async def test_a_stream_whose_reader_leaves_is_recorded_as_cancelled(first: FakeOpenAI) -> None:
    """A closed browser tab: the provider's tokens were spent, so the attempt still counts."""
    attempts: list[Attempt] = []
    llm = client_for(provider("a", first), attempts=attempts)
    first.script(Reply("您好，请稍等", chunks=["您好，", "请稍等"], chunk_delay=5.0))

    pieces = llm.stream("reply", QUESTION)
    assert await anext(pieces) == "您好，"
    await pieces.aclose()  # what Starlette does when the client disconnects
    await llm.aclose()  # waits for the row written in the background

    assert outcomes(attempts) == [("a", "cancelled")]


async def test_keys_and_prompts_stay_out_of_the_logs() -> None:
    async with running_fake_openai(api_key="sk-very-secret-key") as fake:
        llm = client_for(provider("a", fake, api_key="sk-very-secret-key"), attempts=[])
        fake.script(Fail(500))

        with captured_logs() as logs, pytest.raises(LlmUnavailable):
            await llm.complete("summary", [ChatMessage("user", "打印机卡纸了")])

    text = logs.getvalue()
    assert "server_error" in text
    assert "sk-very-secret-key" not in text
    assert "打印机卡纸了" not in text
    await llm.aclose()


async def test_attempts_are_written_to_llm_calls(app: Any, first: FakeOpenAI, second: FakeOpenAI) -> None:
    ctx = app.state.ctx
    settings = LlmSettings(
        providers=[LlmProviderSettings(**provider("a", first)), LlmProviderSettings(**provider("b", second))]
    )
    llm = LlmClient(settings, usage=database_sink(ctx.db))
    first.script(Fail(500))
    second.script(Reply("好", prompt_tokens=12, completion_tokens=3))

    await llm.complete("summary", QUESTION)

    async with ctx.db.transaction(write=False) as session:
        rows = (await session.execute(select(LlmCall).order_by(LlmCall.id))).scalars().all()
    assert [(r.feature, r.provider, r.model, r.outcome) for r in rows] == [
        ("summary", "a", "a-model", "server_error"),
        ("summary", "b", "b-model", "ok"),
    ]
    assert (rows[0].error, rows[1].prompt_tokens, rows[1].completion_tokens) == ("HTTP 500", 12, 3)
    assert all(r.latency_ms >= 0 for r in rows)
    await llm.aclose()


def test_presets_fill_what_is_not_given() -> None:
    deepseek = LlmProviderSettings(name="ds", preset="deepseek", api_key="sk-x")
    assert (deepseek.base_url, deepseek.model, deepseek.json_object, deepseek.json_schema) == (
        "https://api.deepseek.com/v1",
        "deepseek-chat",
        True,
        False,
    )
    ollama = LlmProviderSettings(name="local", preset="ollama", model="qwen2.5:14b", json_object=False)
    assert (ollama.base_url, ollama.model, ollama.json_object) == ("http://127.0.0.1:11434/v1", "qwen2.5:14b", False)


def test_a_provider_needs_a_url_and_a_model() -> None:
    with pytest.raises(ValueError, match="base_url and model"):
        LlmProviderSettings(name="x", preset="vllm")  # vLLM serves whatever model one started
    with pytest.raises(ValueError, match="unknown LLM preset"):
        LlmProviderSettings(name="x", preset="gpt-store", model="m")


def test_providers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import Settings

    monkeypatch.setenv(
        "HELPDESK_LLM__PROVIDERS",
        '[{"name": "ds", "preset": "deepseek", "api_key": "sk-1"}, '
        '{"name": "qwen", "base_url": "http://127.0.0.1:9/v1", "model": "qwen-plus", "timeout_seconds": 5}]',
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert [p.name for p in settings.llm.providers] == ["ds", "qwen"]
    assert settings.llm.enabled
    assert "sk-1" not in repr(settings.llm)
