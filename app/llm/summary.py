"""Ticket summaries for agents (`POST /tickets/{id}/summary`): the customer's intent, what has
happened, the questions still open and the customer's mood.

A summary is cached in `ticket_ai.summary`, keyed by the ticket's newest timeline event id
(`summary_event_id`): every change of the ticket (a message, an internal note, a status, an
assignment) appends an event, so an equal key means nothing changed and the cached summary is
returned without calling a provider; a different key, or `refresh`, makes a new one. The
language (the agent's, from Accept-Language) is part of the key.

No session is held across the provider call: the ticket and its thread are read in a short
transaction, the provider is called with none open, and the result is stored in another,
unless a summary of a later state got there first (a slow request never overwrites a fresher
summary).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.core.errors import AiDisabled, AiUnavailable
from app.core.i18n import Lang
from app.crud import crud_llm, crud_ticket
from app.db.base import utcnow
from app.llm import prompts
from app.llm.client import ChatMessage, LlmUnavailable
from app.llm.thread import Thread, blocks, omitted_note, read_thread
from app.models.ticket import Ticket
from app.models.user import User
from app.schemas.ai import SummaryDraft, TicketSummaryRead

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from app.core.context import AppContext

FEATURE = "summary"
MAX_INTENT, MAX_SUMMARY, MAX_QUESTIONS, MAX_QUESTION = 300, 2000, 10, 300

INSTRUCTIONS = """你是工单系统里客服人员的助手。阅读下面的工单（标题和按时间排列的消息，最新的在最后；
内部备注只有客服能看到），为接手的客服写一份摘要。
- intent：客户想要解决什么，一句话。
- summary：至今发生了什么、已经尝试过什么、工单现在处于什么状态，2 到 5 句。
- open_questions：还没有答复或需要跟进的问题，每项一句；没有就给空列表。
- mood：客户在最近消息中的情绪，取 positive、neutral、anxious、frustrated、angry 之一。
只依据工单内容，不要编造。"""

LANGUAGE = {
    "zh": "用简体中文写 intent、summary 和 open_questions。",
    "en": "Write intent, summary and open_questions in English.",
}


def _trim(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_messages(ticket: Ticket, thread: Thread, *, lang: Lang, tz: ZoneInfo) -> list[ChatMessage]:
    facts = f"工单状态：{ticket.status.value}；优先级：{ticket.priority.value}。"
    parts = [INSTRUCTIONS, LANGUAGE[lang], facts, omitted_note(thread)]
    return [prompts.system(*(p for p in parts if p)), prompts.user_data(blocks(ticket.title, thread, tz))]


def _stored(draft: SummaryDraft, *, provider: str, model: str, lang: Lang) -> dict[str, Any]:
    return {
        "intent": _trim(draft.intent, MAX_INTENT),
        "summary": _trim(draft.summary, MAX_SUMMARY),
        "open_questions": [_trim(q, MAX_QUESTION) for q in draft.open_questions if q.strip()][:MAX_QUESTIONS],
        "mood": draft.mood,
        "provider": provider,
        "model": model,
        "language": lang,
    }


def _read(stored: dict[str, Any], generated_at: datetime, *, cached: bool) -> TicketSummaryRead:
    return TicketSummaryRead(
        intent=stored["intent"],
        summary=stored["summary"],
        open_questions=stored["open_questions"],
        mood=stored["mood"],
        cached=cached,
        generated_at=generated_at,
        provider=stored["provider"],
        model=stored["model"],
    )


async def summarize(
    ctx: AppContext, ticket_id: int, *, user: User, lang: Lang, refresh: bool = False
) -> TicketSummaryRead:
    """The ticket's summary, from the cache when the ticket has not changed since."""
    if not ctx.llm.enabled or not ctx.settings.llm.summary:
        raise AiDisabled
    async with ctx.db.transaction(write=False) as session:
        ticket = await crud_ticket.get_readable(session, ticket_id, user)
        key = await crud_llm.newest_event_id(session, ticket.id)
        ai = await crud_llm.get_ticket_ai(session, ticket.id)
        if (
            not refresh
            and ai is not None
            and ai.summary is not None
            and ai.summarized_at is not None
            and ai.summary_event_id == key
            and ai.summary.get("language") == lang
        ):
            return _read(ai.summary, ai.summarized_at, cached=True)
        thread = await read_thread(session, ticket)
    messages = build_messages(ticket, thread, lang=lang, tz=ctx.settings.tz)
    try:
        answer = await ctx.llm.complete_json(FEATURE, messages, SummaryDraft, ticket_id=ticket.id)
    except LlmUnavailable:
        raise AiUnavailable from None
    stored = _stored(answer.value, provider=answer.provider, model=answer.model, lang=lang)
    now = utcnow()
    async with ctx.db.transaction() as session:
        await crud_llm.store_summary(session, ticket.id, stored, event_id=key, at=now)
    return _read(stored, now, cached=False)
