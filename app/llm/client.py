"""The provider layer: OpenAI-compatible chat completions, tried in order.

Every provider is one `AsyncOpenAI` client with `max_retries=0` and its own timeout: retries
belong to the fallback here, so each attempt is visible (one `llm_calls` row per attempt) and
a slow provider costs one timeout, not three. An attempt fails over to the next provider on a
timeout, a 429, a 5xx, a connection error, any other refusal (a 400 for a `response_format` the
provider does not take, a wrong key), or JSON that does not validate after one repair. A
provider that failed `breaker_failures` times in a row is skipped for a cooldown, then given
one trial call.

Text leaving the process is masked first (app/llm/privacy.py): every message except the
system prompt, which is ours. Prompts and keys are never logged; failures are logged by
provider and outcome only.

Callers hold no database session across these calls (DESIGN.md "Long work on the request
path"): usage rows are written in short transactions of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar, cast

import openai
from openai import AsyncOpenAI, Omit
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam, ChatCompletionStreamOptionsParam
from pydantic import BaseModel, ValidationError

from app.core.config import LlmProviderSettings, LlmSettings
from app.llm.privacy import Masker

log = logging.getLogger(__name__)

Role = Literal["system", "user", "assistant"]
T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


class Outcome(StrEnum):
    ok = "ok"
    timeout = "timeout"
    rate_limited = "rate_limited"
    server_error = "server_error"
    connection_error = "connection_error"
    invalid_output = "invalid_output"
    error = "error"  # any other refusal: 400, 401, 404...
    cancelled = "cancelled"  # the reader of a stream left before its end


@dataclass(frozen=True)
class Attempt:
    """One call to one provider: what `llm_calls` records."""

    feature: str
    ticket_id: int | None
    provider: str
    model: str
    outcome: Outcome
    latency_ms: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


UsageSink = Callable[[Attempt], Awaitable[None]]


class LlmUnavailable(Exception):
    """No provider gave a usable answer (or none is configured): the feature degrades.

    `retry_after` is set when no provider was even asked, every one being skipped by its
    circuit breaker: the seconds until the first takes calls again. A job can wait that long
    without counting an attempt, as nothing was tried (app/llm/jobs.py)."""

    def __init__(self, feature: str, *, retry_after: float | None = None) -> None:
        super().__init__(feature)
        self.retry_after = retry_after


class StreamInterrupted(Exception):
    """The provider stopped mid-stream, after text was relayed: too late to fall back."""


@dataclass(frozen=True)
class Completion:
    text: str
    provider: str
    model: str


@dataclass(frozen=True)
class Structured(Generic[T]):
    value: T
    provider: str
    model: str


class AttemptFailed(Exception):
    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass
class Breaker:
    """Consecutive failures of one provider; open (skipped) for `cooldown` seconds after
    `threshold` of them, then one trial call decides."""

    threshold: int
    cooldown: float
    failures: int = 0
    open_until: float = 0.0

    def allows(self, now: float) -> bool:
        return self.failures < self.threshold or now >= self.open_until

    def succeeded(self) -> None:
        self.failures, self.open_until = 0, 0.0

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.open_until = now + self.cooldown


@dataclass
class Provider:
    settings: LlmProviderSettings
    client: AsyncOpenAI
    breaker: Breaker
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.settings.name

    def model_for(self, feature: str) -> str:
        return self.settings.models.get(feature, self.settings.model)


def classify(exc: Exception) -> AttemptFailed:
    """An SDK error as an outcome and a short reason (a status, a class name; no bodies, which
    may echo the prompt)."""
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is one
        return AttemptFailed(Outcome.timeout, "timeout")
    if isinstance(exc, openai.APIConnectionError):
        return AttemptFailed(Outcome.connection_error, "connection error")
    if isinstance(exc, openai.RateLimitError):
        return AttemptFailed(Outcome.rate_limited, "HTTP 429")
    if isinstance(exc, openai.APIStatusError):
        outcome = Outcome.server_error if exc.status_code >= 500 else Outcome.error
        return AttemptFailed(outcome, f"HTTP {exc.status_code}")
    return AttemptFailed(Outcome.connection_error, type(exc).__name__)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)

REPAIR_PROMPT = "上面的输出不是符合要求的 JSON（{error}）。请只输出修正后的 JSON 对象，不要任何其他文字。"
ANSWER_TOOL = "answer"
JSON_PROMPT = "只输出一个 JSON 对象，不要任何其他文字。它必须符合这个 JSON Schema：\n{schema}"


def parse_json(text: str, schema: type[T]) -> T:
    """The model's answer as `schema`; a fenced block (```json ... ```) is accepted."""
    fenced = _FENCE.match(text)
    return schema.model_validate_json(fenced.group(1) if fenced else text.strip())


def _short(error: ValidationError | ValueError) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        return f"{where}: {first['msg']}"[:200]
    return str(error)[:200]


class LlmClient:
    def __init__(
        self,
        settings: LlmSettings,
        *,
        usage: UsageSink | None = None,
        masker: Masker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.usage = usage
        self.masker = masker or Masker(enabled=settings.mask_personal_data, extra_patterns=settings.mask_patterns)
        self.clock = clock
        self._recording: set[asyncio.Task[None]] = set()
        self.providers = [
            Provider(
                p,
                AsyncOpenAI(
                    base_url=p.base_url,
                    api_key=p.api_key.get_secret_value() or "none",  # local servers take any key
                    max_retries=0,
                    timeout=p.timeout_seconds,
                ),
                Breaker(settings.breaker_failures, settings.breaker_cooldown_seconds),
            )
            for p in settings.providers
        ]

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    async def aclose(self) -> None:
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
        for provider in self.providers:
            await provider.client.close()

    # --- calls ------------------------------------------------------------------------------

    async def complete(
        self,
        feature: str,
        messages: Sequence[ChatMessage],
        *,
        ticket_id: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        """Plain text from the first provider that answers."""
        wire = self._wire(messages)
        candidates = self._candidates()
        for provider in candidates:
            try:
                text = await self._attempt(provider, feature, ticket_id, wire, temperature=temperature)
            except AttemptFailed:
                continue
            return Completion(text, provider.name, provider.model_for(feature))
        raise self._unavailable(feature, tried=bool(candidates))

    async def complete_json(
        self,
        feature: str,
        messages: Sequence[ChatMessage],
        schema: type[T],
        *,
        ticket_id: int | None = None,
        temperature: float | None = None,
    ) -> Structured[T]:
        """An answer validated as `schema`. The schema goes into the prompt; `response_format`
        or a forced function call asks for JSON where the provider's flags allow; an invalid
        answer gets one repair request on the same provider, then the next provider is tried."""
        schema_text = json.dumps(schema.model_json_schema(), ensure_ascii=False)
        wire = [*self._wire(messages), {"role": "system", "content": JSON_PROMPT.format(schema=schema_text)}]
        candidates = self._candidates()
        for provider in candidates:
            shape = _structured_options(provider.settings, schema)
            try:
                value = await self._json_attempts(provider, feature, ticket_id, wire, schema, shape, temperature)
            except AttemptFailed:
                continue
            return Structured(value, provider.name, provider.model_for(feature))
        raise self._unavailable(feature, tried=bool(candidates))

    async def stream(
        self,
        feature: str,
        messages: Sequence[ChatMessage],
        *,
        ticket_id: int | None = None,
        temperature: float | None = None,
        on_provider: Callable[[str, str], None] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Text pieces as the provider sends them. A provider that fails before its first piece
        is replaced by the next; one that breaks off later raises `StreamInterrupted`.
        `on_provider(name, model)` is called once, with the provider whose text is relayed
        (before its first piece, or when it ends without any)."""
        wire = self._wire(messages)
        candidates = self._candidates()
        for provider in candidates:
            relayed = False
            try:
                # aclosing: a reader that stops early closes the attempt now, so it is recorded.
                async with contextlib.aclosing(
                    self._stream_attempt(provider, feature, ticket_id, wire, temperature)
                ) as pieces:
                    async for piece in pieces:
                        if not relayed and on_provider is not None:
                            on_provider(provider.name, provider.model_for(feature))
                        relayed = True
                        yield piece
            except AttemptFailed as failed:
                if relayed:
                    raise StreamInterrupted(failed.reason) from failed
                continue
            if not relayed and on_provider is not None:
                on_provider(provider.name, provider.model_for(feature))
            return
        raise self._unavailable(feature, tried=bool(candidates))

    # --- one provider ---------------------------------------------------------------------

    def _candidates(self) -> list[Provider]:
        now = self.clock()
        return [p for p in self.providers if p.breaker.allows(now)]

    def _unavailable(self, feature: str, *, tried: bool) -> LlmUnavailable:
        if tried or not self.providers:
            return LlmUnavailable(feature)
        reopens = min(p.breaker.open_until for p in self.providers)
        return LlmUnavailable(feature, retry_after=max(0.0, reopens - self.clock()))

    def _wire(self, messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        """The messages as sent: everything but our own system prompts masked."""
        return [
            {"role": m.role, "content": m.content if m.role == "system" else self.masker.mask(m.content)}
            for m in messages
        ]

    async def _json_attempts(
        self,
        provider: Provider,
        feature: str,
        ticket_id: int | None,
        wire: list[dict[str, str]],
        schema: type[T],
        shape: dict[str, Any],
        temperature: float | None,
    ) -> T:
        options: dict[str, Any] = {"shape": shape, "temperature": temperature, "judge": schema}
        text = await self._attempt(provider, feature, ticket_id, wire, **options)
        try:
            return parse_json(text, schema)
        except (ValidationError, ValueError) as exc:
            fix = REPAIR_PROMPT.format(error=_short(exc))
            repair = [*wire, {"role": "assistant", "content": text}, {"role": "user", "content": fix}]
        text = await self._attempt(provider, feature, ticket_id, repair, last_chance=True, **options)
        return parse_json(text, schema)

    async def _attempt(
        self,
        provider: Provider,
        feature: str,
        ticket_id: int | None,
        wire: list[dict[str, str]],
        *,
        shape: dict[str, Any] | None = None,
        temperature: float | None = None,
        judge: type[BaseModel] | None = None,
        last_chance: bool = False,
    ) -> str:
        """One non-streamed call, recorded. `shape` asks for structured output (see
        `_structured_options`). With `judge`, an answer that does not validate is recorded as
        invalid_output; it fails the provider only on the `last_chance` (the repair request),
        else the caller asks for a repair."""
        model = provider.model_for(feature)
        started = time.perf_counter()
        extra: dict[str, Any] = dict(shape or {})
        if temperature is not None:
            extra["temperature"] = temperature
        try:
            response = await provider.client.chat.completions.create(
                model=model,
                messages=_params(wire),
                max_tokens=provider.settings.max_tokens,
                **extra,
            )
        except Exception as exc:  # every SDK failure is one of our outcomes
            failed = classify(exc)
            await self._fail(provider, feature, ticket_id, model, started, failed)
            raise failed from exc
        text = _answer_text(response)
        usage = response.usage
        outcome, reason = Outcome.ok, None
        if judge is not None:
            try:
                parse_json(text, judge)
            except (ValidationError, ValueError) as exc:
                outcome, reason = Outcome.invalid_output, _short(exc)
        await self._record(
            Attempt(
                feature,
                ticket_id,
                provider.name,
                model,
                outcome,
                _elapsed_ms(started),
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None,
                reason,
            )
        )
        if outcome is Outcome.invalid_output:
            if last_chance:
                self._breaker_failed(provider, Outcome.invalid_output, reason or "")
                raise AttemptFailed(Outcome.invalid_output, reason or "invalid output")
            return text
        provider.breaker.succeeded()
        return text

    async def _stream_attempt(
        self,
        provider: Provider,
        feature: str,
        ticket_id: int | None,
        wire: list[dict[str, str]],
        temperature: float | None,
    ) -> AsyncGenerator[str, None]:
        model = provider.model_for(feature)
        started = time.perf_counter()
        usage_option: ChatCompletionStreamOptionsParam | Omit = (
            {"include_usage": True} if provider.settings.stream_usage else openai.omit
        )
        prompt_tokens = completion_tokens = None
        try:
            chunks = await provider.client.chat.completions.create(
                model=model,
                messages=_params(wire),
                max_tokens=provider.settings.max_tokens,
                stream=True,
                stream_options=usage_option,
                temperature=openai.omit if temperature is None else temperature,
            )
            async with chunks:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        prompt_tokens, completion_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield choice.delta.content
        except Exception as exc:  # every SDK failure is one of our outcomes
            failed = classify(exc)
            await self._fail(provider, feature, ticket_id, model, started, failed)
            raise failed from exc
        except BaseException:
            # The reader went away (a closed browser tab: GeneratorExit or cancellation). The
            # tokens were spent all the same; the row is written by a task of its own, as this
            # one may not await any more.
            cancelled = Attempt(
                feature, ticket_id, provider.name, model, Outcome.cancelled, _elapsed_ms(started), error="reader left"
            )
            self._record_soon(cancelled)
            raise
        provider.breaker.succeeded()
        attempt = Attempt(
            feature, ticket_id, provider.name, model, Outcome.ok, _elapsed_ms(started), prompt_tokens, completion_tokens
        )
        await self._record(attempt)

    async def _fail(
        self, provider: Provider, feature: str, ticket_id: int | None, model: str, started: float, failed: AttemptFailed
    ) -> None:
        self._breaker_failed(provider, failed.outcome, failed.reason)
        attempt = Attempt(
            feature, ticket_id, provider.name, model, failed.outcome, _elapsed_ms(started), error=failed.reason
        )
        await self._record(attempt)

    def _breaker_failed(self, provider: Provider, outcome: Outcome, reason: str) -> None:
        provider.breaker.failed(self.clock())
        log.warning("LLM provider %s failed: %s (%s)", provider.name, outcome.value, reason)

    def _record_soon(self, attempt: Attempt) -> None:
        task = asyncio.get_running_loop().create_task(self._record(attempt))
        self._recording.add(task)  # a reference until done: the loop keeps only weak ones
        task.add_done_callback(self._recording.discard)

    async def _record(self, attempt: Attempt) -> None:
        if self.usage is None:
            return
        try:
            await self.usage(attempt)
        except Exception:  # accounting must not take the feature down with it
            log.exception("could not record an LLM call of %s", attempt.feature)


def _structured_options(provider: LlmProviderSettings, schema: type[BaseModel]) -> dict[str, Any]:
    """How to ask this provider for JSON, most reliable first among what it is flagged for:
    `json_schema`, `json_object`, a forced call of one function whose parameters are the schema
    (`tools`: e.g. Ark models without JSON mode), else the prompt alone (some local models
    reject `response_format` altogether). The schema is in the prompt in every case."""
    if provider.json_schema:
        json_schema = {"name": schema.__name__, "schema": schema.model_json_schema()}
        return {"response_format": {"type": "json_schema", "json_schema": json_schema}}
    if provider.json_object:
        return {"response_format": {"type": "json_object"}}
    if provider.tools:
        function = {"name": ANSWER_TOOL, "description": "给出答案", "parameters": schema.model_json_schema()}
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": ANSWER_TOOL}},
        }
    return {}


def _answer_text(response: ChatCompletion) -> str:
    """The answer's text, or the arguments of its first function call (the `tools` shape)."""
    if not response.choices:
        return ""
    message = response.choices[0].message
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)  # custom tool calls carry no function
        if function is not None:
            return str(function.arguments)
    return message.content or ""


def _params(wire: list[dict[str, str]]) -> list[ChatCompletionMessageParam]:
    # {"role": "user", "content": "..."} is exactly the API's message; the SDK types it as a
    # union of TypedDicts keyed by role, which a role held in a variable cannot narrow to.
    return cast(list[ChatCompletionMessageParam], wire)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
