"""A ticket's conversation as the AI features send it: bounded, labelled, newest last.

Summaries and reply drafts both read the thread an agent sees (public messages and internal
notes). A long ticket must not become an unbounded prompt: the first message (the problem as
first told) and the newest ones are kept, at most MAX_MESSAGES in all and MAX_THREAD_CHARS of
text, each body cut at MAX_BODY_CHARS. Every body is user-written, so it goes into the prompt
as `<data>` (app/llm/prompts.py); the labels (who wrote it, when) are ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.crud import crud_llm
from app.models.ticket import Ticket
from app.models.user import Role

MAX_MESSAGES = 30
MAX_BODY_CHARS = 2000
MAX_THREAD_CHARS = 16000
CUT_MARK = "…（以下省略）"

# Labels in the prompt (ours, not user text).
LABELS = {"customer": "客户", "agent": "客服回复", "note": "内部备注（客户看不到）", "other": "其他用户"}

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class ThreadMessage:
    kind: str  # customer, agent, note, other
    body: str
    created_at: datetime


@dataclass(frozen=True)
class Thread:
    messages: list[ThreadMessage]
    total: int  # messages the ticket has, the ones left out included
    last_customer_text: str | None

    @property
    def omitted(self) -> int:
        return self.total - len(self.messages)

    def customer_language(self) -> str:
        """zh or en, from what the customer wrote (zh unless it is clearly Latin script)."""
        text = " ".join(m.body for m in self.messages if m.kind == "customer")
        if _CJK.search(text):
            return "zh"
        return "en" if len(_LATIN.findall(text)) >= 12 else "zh"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + CUT_MARK


async def read_thread(session: AsyncSession, ticket: Ticket) -> Thread:
    rows, total = await crud_llm.thread(session, ticket.id, limit=MAX_MESSAGES)
    if not rows:
        return Thread([], total, None)

    def message(row: Any, body: str) -> ThreadMessage:
        if row.internal:
            kind = "note"
        elif row.author_id == ticket.requester_id:
            kind = "customer"
        elif row.author_role in (Role.agent, Role.admin):
            kind = "agent"
        else:
            kind = "other"
        return ThreadMessage(kind, body, row.created_at)

    first, *later = rows
    opening = _cut(first.body, MAX_BODY_CHARS)
    budget = MAX_THREAD_CHARS - len(opening)
    kept: list[ThreadMessage] = []
    for row in reversed(later):  # newest first, until the budget runs out
        if budget <= 0:
            break
        body = _cut(row.body, min(MAX_BODY_CHARS, max(budget, 200)))
        budget -= len(body)
        kept.append(message(row, body))
    kept.append(message(first, opening))
    kept.reverse()
    last_customer = next((m.body for m in reversed(kept) if m.kind == "customer"), None)
    return Thread(kept, total, last_customer)


def blocks(title: str, thread: Thread, tz: ZoneInfo) -> list[tuple[str, str]]:
    """(source, text) pairs for `prompts.user_data`: the title, then the messages, oldest first."""
    out = [("工单标题", title)]
    for number, message in enumerate(thread.messages, start=1):
        when = message.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        out.append((f"消息 {number} · {LABELS[message.kind]} · {when}", message.body))
    return out


def omitted_note(thread: Thread) -> str:
    """For the system prompt: that the middle of a long thread was left out (ours: numbers only)."""
    if thread.omitted <= 0:
        return ""
    return (
        f"工单共有 {thread.total} 条消息；为控制长度，省略了中间较早的 {thread.omitted} 条，下面是第一条和最近的消息。"
    )
