"""Reply drafts for agents (`GET /tickets/{id}/reply-suggestion`, an SSE stream).

A draft of the next reply to the customer, grounded in the thread (public messages and
internal notes), the canned responses (the ticket team's and everyone's, rendered for this
ticket; all when there are few, else the ones sharing most words with the question) and the
knowledge-base articles most relevant to the title and the customer's last message. It is a
draft in the customer's language, plain text, shown to the agent and sent nowhere by itself.

Everything is read in one short transaction before the provider is called (`prepare`); the
stream then holds no session. `ReplyStream.start` waits for the first piece before the HTTP
response begins, so "no provider answered" is an ordinary 503 problem+json rather than an
error inside a 200 stream; after that, a break is the `error` event `ai_interrupted`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.core.errors import AiDisabled, AiUnavailable
from app.core.i18n import Lang, error_text
from app.crud import crud_llm
from app.llm import prompts
from app.llm.client import ChatMessage, LlmClient, LlmUnavailable, StreamInterrupted
from app.llm.thread import Thread, blocks, omitted_note, read_thread
from app.models.canned_response import CannedResponse
from app.models.kb import KbArticle
from app.models.ticket import Ticket
from app.models.user import User
from app.services.canned_response import render_for_ticket
from app.services.knowledge_base import question_terms
from app.services.search import Segmenter, normalise

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from app.core.context import AppContext

FEATURE = "reply"
KB_ARTICLES = 3
MAX_CANNED = 8  # offered to the model
MAX_CANNED_CANDIDATES = 200  # read to choose from
MAX_QUESTION_CHARS = 1000
MAX_ARTICLE_CHARS = 1500
MAX_CANNED_CHARS = 1000

INSTRUCTIONS = """你是工单系统里客服人员的写作助手。请为客服起草下一条发给客户的回复，客服会审阅修改后再发送。
- 依据工单对话（最新的消息在最后）、快捷回复和知识库文章；资料里没有的政策、链接、时间和承诺不要编造，
  信息不够时礼貌地请客户补充。
- 内部备注是客服之间的沟通，可以帮助理解情况，但不要向客户透露其中的内部细节，也不要提到内部备注。
- 合适时可以沿用快捷回复的措辞；引用知识库文章时可以提到文章标题。
- 只输出回复正文：纯文本，不用 Markdown，不加称呼以外的前言或解释。"""

LANGUAGES = {"zh": "简体中文", "en": "English"}


@dataclass(frozen=True)
class ReplyPlan:
    """Everything the stream needs, read before it starts."""

    ticket_id: int
    messages: list[ChatMessage]
    sources: list[dict[str, Any]]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def rank_canned(segmenter: Segmenter, question: str, canned: Sequence[CannedResponse]) -> list[tuple[int, int]]:
    """(index, score) of the canned responses to offer: all when there are few, else the
    MAX_CANNED holding most of the question's words (blocking: jieba; run in a thread)."""
    terms = question_terms(segmenter, question)
    scores = []
    for index, item in enumerate(canned):
        text = normalise(f"{item.title}\n{item.body}")
        scores.append((index, sum(1 for term in terms if term in text)))
    if len(scores) <= MAX_CANNED:
        return scores
    best = sorted(scores, key=lambda pair: (-pair[1], pair[0]))[:MAX_CANNED]
    return sorted(best)


def build_messages(
    ticket: Ticket,
    thread: Thread,
    *,
    canned: Sequence[tuple[str, str]],
    articles: Sequence[KbArticle],
    language: str,
    tz: ZoneInfo,
) -> list[ChatMessage]:
    facts = f"工单状态：{ticket.status.value}；优先级：{ticket.priority.value}。"
    lang = f"客户使用的语言：{LANGUAGES.get(language, language)}。用这种语言写回复。"
    system = prompts.system(*(p for p in (INSTRUCTIONS, lang, facts, omitted_note(thread)) if p))
    data = blocks(ticket.title, thread, tz)
    data += [
        (f"快捷回复：{i}", f"{title}\n{_cut(body, MAX_CANNED_CHARS)}") for i, (title, body) in enumerate(canned, 1)
    ]
    data += [(f"知识库文章 {a.id}", f"{a.title}\n{_cut(a.body, MAX_ARTICLE_CHARS)}") for a in articles]
    return [system, prompts.user_data(data), ChatMessage("user", "请写出回复草稿。")]


async def prepare(ctx: AppContext, ticket_id: int, *, agent: User) -> ReplyPlan:
    """Read the ticket, its thread, the canned responses and the relevant articles in one
    short read transaction, and build the prompt. 503 ai_disabled, 404 ticket_not_found."""
    if not ctx.llm.enabled or not ctx.settings.llm.reply_suggestion:
        raise AiDisabled
    async with ctx.db.transaction(write=False) as session:
        ticket, triage = await crud_llm.ticket_for_prompt(session, ticket_id, agent)
        thread = await read_thread(session, ticket)
        question = _cut(f"{ticket.title}\n{thread.last_customer_text or ''}", MAX_QUESTION_CHARS)
        articles = await ctx.kb.retrieve(session, question, limit=KB_ARTICLES)
        candidates = await crud_llm.canned_for_team(session, ticket.team_id, limit=MAX_CANNED_CANDIDATES)
    ranked = await asyncio.to_thread(rank_canned, ctx.kb.segmenter, question, candidates) if candidates else []
    chosen = [candidates[i] for i, _ in ranked]
    canned = [(c.title, render_for_ticket(c, ticket, agent=agent)) for c in chosen]
    triaged = (triage or {}).get("language")
    language = triaged if isinstance(triaged, str) and 0 < len(triaged) <= 16 else thread.customer_language()
    messages = build_messages(ticket, thread, canned=canned, articles=articles, language=language, tz=ctx.settings.tz)
    sources: list[dict[str, Any]] = [{"type": "kb", "id": a.id, "title": a.title} for a in articles]
    sources += [
        {"type": "canned", "id": candidates[i].id, "title": candidates[i].title} for i, score in ranked if score > 0
    ]
    return ReplyPlan(ticket.id, messages, sources)


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@dataclass
class ReplyStream:
    """The provider's stream relayed as SSE frames: `delta` per piece, then `done` with the
    provider, the model and the sources; or `error` (`ai_interrupted`) when it breaks off."""

    llm: LlmClient
    plan: ReplyPlan
    lang: Lang = "zh"
    provider: str | None = None
    model: str | None = None
    _first: str | None = None
    _pieces: AsyncIterator[str] | None = field(default=None, repr=False)

    def _answering(self, provider: str, model: str) -> None:
        self.provider, self.model = provider, model

    async def start(self) -> None:
        """Open the provider stream and wait for its first piece (or its end): 503
        ai_unavailable when every provider fails before that."""
        self._pieces = self.llm.stream(
            FEATURE, self.plan.messages, ticket_id=self.plan.ticket_id, on_provider=self._answering
        )
        try:
            self._first = await anext(self._pieces)
        except StopAsyncIteration:
            self._first = None  # an empty answer: the stream is a `done` alone
        except LlmUnavailable:
            raise AiUnavailable from None

    async def events(self) -> AsyncIterator[str]:
        if self._pieces is None:
            raise RuntimeError("ReplyStream.start() first")
        try:
            if self._first is not None:
                yield sse("delta", {"text": self._first})
                async for piece in self._pieces:
                    yield sse("delta", {"text": piece})
            yield sse("done", {"provider": self.provider, "model": self.model, "sources": self.plan.sources})
        except StreamInterrupted:
            yield sse("error", {"code": "ai_interrupted", "detail": error_text("ai_interrupted", self.lang)})
        finally:
            # Also when the client went away mid-stream: the provider's stream is closed too.
            close = getattr(self._pieces, "aclose", None)
            if close is not None:
                await close()
