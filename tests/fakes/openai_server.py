"""A local stand-in for an OpenAI-compatible `POST /v1/chat/completions`, served over real HTTP.

It speaks the wire protocol the official SDK expects: `chat.completion` JSON, SSE streams of
`chat.completion.chunk` ending in `data: [DONE]`, the usage chunk only when
`stream_options.include_usage` asks for it, and OpenAI's error body shape. Tests script the
answers step by step (`Reply`, `Fail`, `Hang`, `Drop`, `ToolCall`, `StreamBreak`), can make it
refuse `response_format` types the way some providers do, and read back every request it got.
Each `running_fake_openai()` is its own server, so fallback tests can run one per provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes.server import serving

__all__ = [
    "Drop",
    "Fail",
    "FakeOpenAI",
    "Hang",
    "Reply",
    "Step",
    "StreamBreak",
    "ToolCall",
    "running_fake_openai",
]


@dataclass(frozen=True)
class Reply:
    """A normal answer; streamed as `chunks` (default: ~4-character pieces of `content`)."""

    content: str
    prompt_tokens: int = 10
    completion_tokens: int = 5
    chunks: list[str] | None = None
    chunk_delay: float = 0.0


@dataclass(frozen=True)
class Fail:
    """An HTTP error with OpenAI's error body (429 also says `Retry-After: 1`)."""

    status: int
    message: str = "The fake provider failed this request on purpose."


@dataclass(frozen=True)
class Hang:
    """Wait this long, then answer `Reply("迟到的回答")`; a client with a shorter timeout gives up."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without writing a byte: a connection error for the client."""


@dataclass(frozen=True)
class ToolCall:
    """An assistant message calling one function (`finish_reason: "tool_calls"`)."""

    name: str
    arguments: str


@dataclass(frozen=True)
class StreamBreak:
    """Stream these content chunks, then drop the connection (no finish chunk, no `[DONE]`)."""

    chunks: list[str]


Step = Reply | Fail | Hang | Drop | ToolCall | StreamBreak

LATE_REPLY = "迟到的回答"
UNAVAILABLE_RESPONSE_FORMAT = "This response_format type is unavailable now"


class _ConnectionDropped(Exception):
    """Raised on purpose inside the app so uvicorn closes the connection; see `_DropFilter`."""


def _is_drop(exc: BaseException | None) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_drop(inner) for inner in exc.exceptions)
    return isinstance(exc, _ConnectionDropped)


class _DropFilter(logging.Filter):
    """Keeps uvicorn's "Exception in ASGI application" quiet for drops the test asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_drop(record.exc_info[1]))


class _DropResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # ASGI has no "close without answering": an app that raises before starting the response
        # gets a 500, one that raises after gets its connection closed. uvicorn marks the response
        # started, then refuses a header value holding a newline before writing anything, so
        # raising here closes the socket with nothing on it, as a dead upstream would.
        # test_fake_openai checks this still holds for stream and non-stream requests.
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-fake-drop", b"\r\n")]})
        except RuntimeError as exc:
            raise _ConnectionDropped from exc
        raise RuntimeError("the server wrote a response head; the fake cannot drop this connection silently")


def _pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    if status == 429:
        error_type, code = "requests", code or "rate_limit_exceeded"
    elif status >= 500:
        error_type = "server_error"
    else:
        error_type = "invalid_request_error"
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


@dataclass
class FakeOpenAI:
    api_key: str | None = "sk-test"
    base_url: str = ""
    default: Step = field(default_factory=lambda: Reply("好的"))
    # Consulted when the script is empty, for answers that depend on the prompt.
    responder: Callable[[dict[str, Any]], Step] | None = None
    # `response_format.type` values answered with 400, e.g. {"json_schema"} like DeepSeek.
    reject_response_format: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _queue: deque[Step] = field(default_factory=deque)
    # Set on shutdown so hanging and slow answers stop waiting and the server can stop at once.
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    app: Starlette = field(init=False)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat_completions, methods=["POST"])])

    @property
    def calls(self) -> int:
        """How many requests reached the server (refused ones included)."""
        return len(self.requests)

    def provider(self, name: str = "fake", **extra: Any) -> dict[str, Any]:
        """This server as one entry of `HELPDESK_LLM__PROVIDERS` (model `<name>-model`)."""
        return {
            "name": name,
            "base_url": self.base_url,
            "api_key": self.api_key or "any",
            "model": f"{name}-model",
            **extra,
        }

    def script(self, *steps: Step) -> None:
        """Queue answers, one consumed per request, before `responder` and `default` apply."""
        self._queue.extend(steps)

    def reset(self) -> None:
        """Back to a fresh fake (same server, same key), for a server shared by several tests."""
        self._queue.clear()
        self.requests.clear()
        self.headers.clear()
        self.default = Reply("好的")
        self.responder = None
        self.reject_response_format = set()

    def all_text(self) -> str:
        """Every message content of every request, joined: what the provider got to see."""
        texts: list[str] = []
        for body in self.requests:
            for message in body.get("messages") or []:
                content = message.get("content") if isinstance(message, dict) else None
                if isinstance(content, str):
                    texts.append(content)
                elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                    texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        return "\n".join(texts)

    async def chat_completions(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(body if isinstance(body, dict) else {"_unparsed": raw.decode(errors="replace")})
        self.headers.append(dict(request.headers))

        if self.api_key is not None:
            expected = f"Bearer {self.api_key}".encode()
            if not secrets.compare_digest(request.headers.get("authorization", "").encode(), expected):
                message = "Incorrect API key provided. You can find your API key at the provider's console."
                return JSONResponse(_error_body(401, message, "invalid_api_key"), status_code=401)
        if not isinstance(body, dict):
            return JSONResponse(_error_body(400, "We could not parse the JSON body of your request."), 400)
        if not body.get("model") or not isinstance(body.get("messages"), list):
            return JSONResponse(_error_body(400, "'model' and 'messages' are required properties."), 400)
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") in self.reject_response_format:
            error = {"error": {"message": UNAVAILABLE_RESPONSE_FORMAT, "type": "invalid_request_error"}}
            return JSONResponse(error, status_code=400)

        step = self._next_step(body)
        if isinstance(step, Hang):
            await self._wait(step.seconds)
            step = Reply(LATE_REPLY)
        return self._render(step, body)

    def _next_step(self, body: dict[str, Any]) -> Step:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return self.default

    async def _wait(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)

    def _render(self, step: Step, body: dict[str, Any]) -> Response:
        stream = body.get("stream") is True
        match step:
            case Fail(status=status, message=message):
                headers = {"Retry-After": "1"} if status == 429 else None
                return JSONResponse(_error_body(status, message), status_code=status, headers=headers)
            case Drop():
                return _DropResponse()
            case StreamBreak(chunks=chunks):
                return self._event_stream(self._broken_stream(body, chunks))
            case Reply() if stream:
                return self._event_stream(self._reply_stream(body, step))
            case Reply():
                answer = {"role": "assistant", "content": step.content}
                return JSONResponse(self._completion(body, answer, "stop", step))
            case ToolCall() if stream:
                return self._event_stream(self._tool_call_stream(body, step))
            case ToolCall():
                call = {"role": "assistant", "content": None, "tool_calls": [self._tool_call(step)]}
                return JSONResponse(self._completion(body, call, "tool_calls", Reply("")))
        raise TypeError(f"not a step: {step!r}")

    @staticmethod
    def _usage(reply: Reply) -> dict[str, int]:
        total = reply.prompt_tokens + reply.completion_tokens
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": total,
        }

    @staticmethod
    def _tool_call(step: ToolCall) -> dict[str, Any]:
        return {
            "id": f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {"name": step.name, "arguments": step.arguments},
        }

    def _completion(self, body: dict[str, Any], message: dict[str, Any], finish: str, reply: Reply) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": self._usage(reply),
        }

    @staticmethod
    def _event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
        # Each event is written as it is produced, so time to first token is measurable.
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @staticmethod
    def _chunk_factory(body: dict[str, Any]) -> Callable[[dict[str, Any], str | None], dict[str, Any]]:
        completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:  # as OpenAI does: null on every chunk but the last
                data["usage"] = None
            return data

        return chunk

    @staticmethod
    def _stream_end(body: dict[str, Any], reply: Reply, chunk: dict[str, Any]) -> list[bytes]:
        events = []
        if (body.get("stream_options") or {}).get("include_usage") is True:
            events.append(_sse({**chunk, "choices": [], "usage": FakeOpenAI._usage(reply)}))
        events.append(_sse("[DONE]"))
        return events

    async def _reply_stream(self, body: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
        chunk = self._chunk_factory(body)
        yield _sse(chunk({"role": "assistant", "content": ""}, None))
        pieces = reply.chunks if reply.chunks is not None else _pieces(reply.content)
        for i, piece in enumerate(pieces):
            if i and reply.chunk_delay:
                await self._wait(reply.chunk_delay)
            yield _sse(chunk({"content": piece}, None))
        last = chunk({}, "stop")
        yield _sse(last)
        for event in self._stream_end(body, reply, last):
            yield event

    async def _tool_call_stream(self, body: dict[str, Any], step: ToolCall) -> AsyncIterator[bytes]:
        chunk = self._chunk_factory(body)
        call = self._tool_call(step)
        head = {**call, "index": 0, "function": {"name": step.name, "arguments": ""}}
        yield _sse(chunk({"role": "assistant", "content": None, "tool_calls": [head]}, None))
        for piece in _pieces(step.arguments):
            yield _sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None))
        last = chunk({}, "tool_calls")
        yield _sse(last)
        for event in self._stream_end(body, Reply(""), last):
            yield event

    async def _broken_stream(self, body: dict[str, Any], chunks: list[str]) -> AsyncIterator[bytes]:
        chunk = self._chunk_factory(body)
        yield _sse(chunk({"role": "assistant", "content": ""}, None))
        for piece in chunks:
            yield _sse(chunk({"content": piece}, None))
        # Raising after the response started makes uvicorn close the connection mid-body.
        raise _ConnectionDropped


@asynccontextmanager
async def running_fake_openai(api_key: str | None = "sk-test") -> AsyncIterator[FakeOpenAI]:
    """Serve a fresh `FakeOpenAI` on an ephemeral port; `base_url` ends in `/v1` like the SDK wants."""
    fake = FakeOpenAI(api_key=api_key)
    quiet = _DropFilter()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    try:
        async with serving(fake.app) as base_url:
            fake.base_url = f"{base_url}/v1"
            try:
                yield fake
            finally:
                fake.closing.set()  # release hanging answers, so the server can stop at once
    finally:
        uvicorn_log.removeFilter(quiet)
