"""The fake OpenAI server speaks the wire protocol the official SDK parses, shape by shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

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

MODEL = "fake-model"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "你好"}]


@pytest.fixture(scope="module")
async def shared_fake() -> AsyncIterator[FakeOpenAI]:
    # One server for the module: starting is cheap, but each uvicorn shutdown costs ~0.2 s.
    async with running_fake_openai() as server:
        yield server


@pytest.fixture
def fake(shared_fake: FakeOpenAI) -> FakeOpenAI:
    shared_fake.reset()
    return shared_fake


def sdk(fake: FakeOpenAI, *, api_key: str = "sk-test", timeout: float = 5.0) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=fake.base_url, api_key=api_key, max_retries=0, timeout=timeout)


async def test_non_stream_reply_carries_content_model_and_usage(fake: FakeOpenAI) -> None:
    fake.script(Reply("您好，请问有什么可以帮您？", prompt_tokens=12, completion_tokens=7))
    async with sdk(fake) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "您好，请问有什么可以帮您？"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        12,
        7,
        19,
    )


async def test_requests_and_headers_are_recorded(fake: FakeOpenAI) -> None:
    async with sdk(fake) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert completion.choices[0].message.content == "好的"  # the default answer
    assert fake.calls == 1
    assert fake.requests[0]["model"] == MODEL
    assert fake.headers[0]["authorization"] == "Bearer sk-test"
    assert fake.all_text() == "你好"


async def test_stream_with_include_usage_yields_pieces_then_a_usage_chunk(fake: FakeOpenAI) -> None:
    fake.script(Reply("一二三四五六七八九", prompt_tokens=3, completion_tokens=9))
    async with sdk(fake) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["一二三四", "五六七八", "九"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 12


async def test_stream_without_include_usage_has_no_usage_chunk(fake: FakeOpenAI) -> None:
    fake.script(Reply("好的，马上处理", chunks=["好的，", "马上处理"]))
    async with sdk(fake) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]

    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["好的，", "马上处理"]
    assert all(c.choices and c.usage is None for c in chunks)


async def test_stream_pieces_are_flushed_as_they_are_produced(fake: FakeOpenAI) -> None:
    # The second piece waits 30 s (released when the fake stops); a buffered stream would time out.
    fake.script(Reply("先到后到", chunks=["先到", "后到"], chunk_delay=30))
    async with sdk(fake, timeout=2.0) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        received = []
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)
            if chunk.choices[0].delta.content:
                break
        await stream.close()
    assert received == ["", "先到"]


async def test_server_error_is_internal_server_error(fake: FakeOpenAI) -> None:
    fake.script(Fail(500, "upstream exploded"))
    async with sdk(fake) as client:
        with pytest.raises(openai.InternalServerError, match="upstream exploded") as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == 500


async def test_too_many_requests_is_rate_limit_error_with_retry_after(fake: FakeOpenAI) -> None:
    fake.script(Fail(429, "slow down"))
    async with sdk(fake) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


async def test_hang_longer_than_the_client_timeout_is_a_timeout(fake: FakeOpenAI) -> None:
    fake.script(Hang(1.0))
    async with sdk(fake, timeout=0.3) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        # The hanging request does not block the server for others.
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "好的"


async def test_hang_shorter_than_the_client_timeout_answers_late(fake: FakeOpenAI) -> None:
    fake.script(Hang(0.05))
    async with sdk(fake) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "迟到的回答"


@pytest.mark.parametrize("stream", [False, True])
async def test_drop_is_a_connection_error(fake: FakeOpenAI, stream: bool) -> None:
    fake.script(Drop())
    async with sdk(fake) as client:
        with pytest.raises(openai.APIConnectionError) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream)
        assert not isinstance(caught.value, openai.APITimeoutError)
        # The server lives on after the drop.
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "好的"


async def test_wrong_key_is_authentication_error_and_consumes_no_step(fake: FakeOpenAI) -> None:
    fake.script(Reply("留给正确的密钥"))
    async with sdk(fake, api_key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    async with sdk(fake) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "留给正确的密钥"


async def test_no_api_key_configured_accepts_any_key() -> None:
    async with running_fake_openai(api_key=None) as fake, sdk(fake, api_key="anything") as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "好的"


async def test_rejected_response_format_is_bad_request_and_recorded(fake: FakeOpenAI) -> None:
    fake.reject_response_format = {"json_schema"}
    fake.script(Reply('{"ok": true}'))
    json_schema: ResponseFormatJSONSchema = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }
    async with sdk(fake) as client:
        with pytest.raises(openai.BadRequestError, match="response_format type is unavailable"):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, response_format=json_schema)
        completion = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, response_format={"type": "json_object"}
        )
    assert completion.choices[0].message.content == '{"ok": true}'  # the step was still there
    assert fake.calls == 2
    assert fake.requests[0]["response_format"]["type"] == "json_schema"


async def test_tool_call_is_parsed_into_tool_calls(fake: FakeOpenAI) -> None:
    fake.script(ToolCall("create_ticket", '{"title": "打印机坏了"}'))
    async with sdk(fake) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "create_ticket"
    assert json.loads(call.function.arguments) == {"title": "打印机坏了"}


async def test_streamed_tool_call_arguments_add_up(fake: FakeOpenAI) -> None:
    fake.script(ToolCall("create_ticket", '{"title": "打印机坏了"}'))
    async with sdk(fake) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]

    deltas = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function is not None
    assert deltas[0].function.name == "create_ticket"
    assert "".join(d.function.arguments or "" for d in deltas if d.function) == '{"title": "打印机坏了"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_stream_break_raises_after_the_first_pieces(fake: FakeOpenAI) -> None:
    fake.script(StreamBreak(["您好，", "请稍"]))
    received: list[ChatCompletionChunk] = []

    async def read_all(stream: AsyncIterator[ChatCompletionChunk]) -> None:
        async for chunk in stream:
            received.append(chunk)

    async with sdk(fake) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIConnectionError):
            await read_all(stream)
    assert "".join(c.choices[0].delta.content or "" for c in received) == "您好，请稍"


async def test_script_then_responder_then_default(fake: FakeOpenAI) -> None:
    fake.script(Reply("第一"))
    async with sdk(fake) as client:

        async def ask(text: str) -> str | None:
            completion = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
            return completion.choices[0].message.content

        assert await ask("a") == "第一"
        assert await ask("b") == "好的"
        fake.responder = lambda body: Reply("回声：" + body["messages"][-1]["content"])
        assert await ask("c") == "回声：c"
        fake.script(Fail(503))
        with pytest.raises(openai.InternalServerError):
            await ask("d")
    assert fake.calls == 4
    assert fake.all_text() == "a\nb\nc\nd"


async def test_each_fake_is_its_own_server() -> None:
    async with running_fake_openai() as first, running_fake_openai() as second:
        assert first.base_url != second.base_url
        first.script(Fail(500))
        second.script(Reply("备用供应商"))
        async with sdk(second) as client:
            completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "备用供应商"
    assert (first.calls, second.calls) == (0, 1)
