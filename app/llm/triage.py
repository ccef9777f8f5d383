"""AI triage of a new ticket: a category from the closed list (none when unsure), a priority,
tags from the existing ones, a one-line summary, the language and the customer's mood.

The `ai.triage` job (app/llm/jobs.py) runs `Triage.run` once per ticket:

1. A short read transaction: the ticket's title and first public messages (never internal
   notes), the active categories with their parents and descriptions, the existing tag names.
2. The provider call, with no session open. Ticket text goes in as untrusted `<data>`.
3. A short write transaction that re-reads everything and decides on what it finds then, so a
   change an agent made meanwhile wins. The suggestion is stored in `TicketAi.triage`;
   `TicketService.apply_ai_triage` records it on the internal timeline (an internal
   `ticket.updated` with `{"by": "ai", "triage": ...}`: API.md fixes the event names) and, in
   mode `apply`, writes the fields no person has set, as a `ticket.updated` with no actor and
   `"by": "ai"` (an applied category then routes the ticket, like any category change).

What the model says is only ever a choice among what we offered: an id outside the list or a
tag that does not exist is dropped, never created.

`TicketAi.triage` (what agents read, e.g. GET /tickets/{id}/triage):
`{category_id, priority, tags, summary, language, sentiment, mode, applied, provider, model}`
where `applied` lists the fields written to the ticket (always empty in mode `suggest`).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from app.core.config import LlmSettings
from app.crud import crud_category, crud_llm, crud_tag, crud_ticket
from app.db.base import utcnow
from app.db.session import Database
from app.llm import prompts
from app.llm.client import ChatMessage, LlmClient, Structured
from app.models.llm import TicketAi
from app.models.ticket import Priority, Ticket, TicketEvent, TicketStatus
from app.services.ticket import TicketService, is_staff

log = logging.getLogger(__name__)

FEATURE = "triage"
MAX_TAGS = 5
SUMMARY_CHARS = 120
# What one prompt offers and quotes: enough for any real helpdesk's category tree and tag list,
# and a bounded prompt for a ticket with a very long first message.
MAX_CATEGORIES = 300
MAX_OFFERED_TAGS = 300
MAX_MESSAGES = 3
MAX_TEXT_CHARS = 4000
# Fields a person decides; "agent-set" is read from the timeline (see `person_set`).
FIELDS = ("category_id", "priority", "tags")

Mode = Literal["suggest", "apply"]


def _one_line(value: str, limit: int) -> str:
    return re.sub(r"\s+", " ", value).strip()[:limit]


def _tag_name(value: str) -> str:
    # As tickets store them (app/schemas/ticket.py): NFKC, one line, case-folded.
    return _one_line(unicodedata.normalize("NFKC", value), 50).casefold()


class TriageResult(BaseModel):
    """What the model returns. Lenient where a clip is as good as a repair round-trip."""

    category_id: int | None = Field(
        default=None, description="从分类列表中选一个分类的 id；拿不准或没有合适的分类时为 null"
    )
    priority: Literal["low", "normal", "high", "urgent"] = Field(
        description="low：咨询或不影响使用；normal：一般问题；high：影响工作或多人；urgent：大范围中断、安全事件或紧迫时限"
    )
    tags: list[str] = Field(default_factory=list, description=f"从已有标签中选最多 {MAX_TAGS} 个，没有合适的就为空")
    summary: str = Field(description=f"一句话概括客户的问题，不超过 {SUMMARY_CHARS} 字")
    language: str = Field(description="工单所用语言的代码，如 zh、en")
    sentiment: Literal["positive", "neutral", "negative", "angry"] = Field(description="客户的情绪")

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str) -> str:
        return _one_line(value, SUMMARY_CHARS)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return _one_line(value, 16).lower()

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        names = [name for name in (_tag_name(v) for v in value) if name]
        return list(dict.fromkeys(names))[:MAX_TAGS]


@dataclass(frozen=True)
class CategoryChoice:
    id: int
    name: str
    parent: str | None
    description: str | None


@dataclass(frozen=True)
class TriageInput:
    ticket_id: int
    title: str
    texts: list[str]
    categories: list[CategoryChoice]
    tags: list[str]


SYSTEM_PROMPT = (
    "你是工单系统的分诊助手。阅读客户提交的工单（标题和内容），给出分类、优先级、标签、"
    "一句话摘要、语言和客户情绪。\n"
    '- 分类只能从 source="categories" 的列表中选，填它的 id（每行开头的数字）；'
    "拿不准或没有合适的分类时填 null，不要编造 id。\n"
    '- 标签只能从 source="tags" 的已有标签中选，最多 5 个；没有合适的就给空列表，不要创造新标签。\n'
    "- 优先级按对客户工作的影响判断，不要因为客户语气急切就一律定为 urgent。\n"
    "- 摘要用工单的语言写，一句话，不超过 120 字，不要包含手机号等个人信息。"
)


def build_messages(data: TriageInput) -> list[ChatMessage]:
    categories = "\n".join(
        f"{c.id} | {c.parent + ' / ' if c.parent else ''}{c.name}" + (f" | {c.description}" if c.description else "")
        for c in data.categories
    )
    blocks = [
        ("categories", categories or "（没有分类）"),
        ("tags", "、".join(data.tags) or "（没有标签）"),
        ("ticket_title", data.title),
        *(("ticket_message", text) for text in data.texts),
    ]
    return [prompts.system(SYSTEM_PROMPT), prompts.user_data(blocks)]


def suggestion_of(result: TriageResult, data: TriageInput) -> dict[str, Any]:
    """The model's answer cut down to what we offered."""
    offered_ids = {c.id for c in data.categories}
    offered_tags = set(data.tags)
    return {
        "category_id": result.category_id if result.category_id in offered_ids else None,
        "priority": result.priority,
        "tags": [name for name in result.tags if name in offered_tags],
        "summary": result.summary,
        "language": result.language,
        "sentiment": result.sentiment,
    }


def person_set(ticket: Ticket, events: list[TicketEvent]) -> set[str]:
    """The fields a person decided, which the AI leaves alone.

    - Any `ticket.updated` that changed category, priority or tags and is not the AI's own
      (a person clearing the category decided it, too).
    - Priority chosen at creation: only staff may send it (customers may not), and the create
      event does not say whether it was sent, so a staff-created ticket whose first priority is
      not the default counts as set. The default with no later change is not.
    - A category the ticket already has is never replaced, whoever chose it (see `decide`).
    """
    fields: set[str] = set()
    first_priority: str | None = None
    created_by_staff = False
    for event in events:
        if event.type == "ticket.created":
            created_by_staff = event.actor is not None and is_staff(event.actor)
        elif event.type == "ticket.updated" and event.data.get("by") != "ai":
            for name in FIELDS:
                if name in event.data:
                    fields.add(name)
            if "priority" in event.data and first_priority is None:
                first_priority = str(event.data["priority"][0])
    if created_by_staff and (first_priority or ticket.priority.value) != Priority.normal.value:
        fields.add("priority")
    return fields


@dataclass(frozen=True)
class Decision:
    category_id: int | None = None
    priority: Priority | None = None
    add_tags: tuple[str, ...] = ()

    @property
    def applied(self) -> list[str]:
        """The fields this decision writes, in FIELDS order."""
        written = [self.category_id is not None, self.priority is not None, bool(self.add_tags)]
        return [name for name, on in zip(FIELDS, written, strict=True) if on]


def decide(
    suggestion: dict[str, Any], ticket: Ticket, events: list[TicketEvent], *, active: set[int], tags: set[str]
) -> Decision:
    """Mode apply: what may still be written, judged on the ticket as it is now."""
    taken = person_set(ticket, events)
    category_id = suggestion["category_id"]
    if ticket.category_id is not None or "category_id" in taken or category_id not in active:
        category_id = None
    priority: Priority | None = Priority(suggestion["priority"])
    if "priority" in taken or priority == ticket.priority:
        priority = None
    present = {tag.name for tag in ticket.tags}
    add_tags: tuple[str, ...] = ()
    if "tags" not in taken:
        add_tags = tuple(name for name in suggestion["tags"] if name in tags and name not in present)
    return Decision(category_id, priority, add_tags)


def _closed(ticket: Ticket) -> bool:
    return ticket.status == TicketStatus.closed or ticket.merged_into_id is not None


class Triage:
    def __init__(self, settings: LlmSettings, llm: LlmClient, tickets: TicketService) -> None:
        self.settings = settings
        self.llm = llm
        self.tickets = tickets

    @property
    def mode(self) -> Mode | None:
        """None: triage is off, or there is no provider."""
        if not self.llm.enabled or self.settings.triage == "off":
            return None
        return self.settings.triage

    async def run(self, db: Database, ticket_id: int) -> bool:
        """Triage one ticket; False when there was nothing to do (off, gone, closed, merged,
        or already triaged by an earlier run). Raises `LlmUnavailable` when no provider
        answered: nothing has been written then."""
        mode = self.mode
        if mode is None:
            return False
        async with db.transaction(write=False) as session:
            data = await self._read(session, ticket_id)
        if data is None:
            return False
        answer = await self.llm.complete_json(FEATURE, build_messages(data), TriageResult, ticket_id=ticket_id)
        suggestion = suggestion_of(answer.value, data)
        try:
            return await self._write(db, ticket_id, suggestion, answer, mode)
        except StaleDataError:
            # An agent saved the ticket between our re-read and our flush: decide again on
            # what they left, with the same answer (no second provider call).
            log.info("ticket %s changed during triage; deciding again", ticket_id)
            return await self._write(db, ticket_id, suggestion, answer, mode)

    async def _read(self, session: AsyncSession, ticket_id: int) -> TriageInput | None:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None or _closed(ticket):
            return None
        ai = await session.get(TicketAi, ticket_id)
        if ai is not None and ai.triaged_at is not None:
            return None
        messages = await crud_ticket.list_messages(session, ticket_id, include_internal=False)
        texts, budget = [], MAX_TEXT_CHARS
        for message in messages[:MAX_MESSAGES]:
            if budget <= 0:
                break
            texts.append(message.body[:budget])
            budget -= len(message.body)
        return TriageInput(ticket_id, ticket.title, texts, await _categories(session), await _tags(session))

    async def _write(
        self, db: Database, ticket_id: int, suggestion: dict[str, Any], answer: Structured[TriageResult], mode: Mode
    ) -> bool:
        async with db.transaction() as session:
            if await session.get(Ticket, ticket_id) is None:
                return False
            ai = await crud_llm.ticket_ai(session, ticket_id, for_update=True)
            if ai.triaged_at is not None:
                return False  # an earlier run got there first
            ticket = await crud_ticket.reload(session, ticket_id)
            decision = Decision()
            if mode == "apply" and not _closed(ticket):
                events = await crud_ticket.list_events(session, ticket_id, include_internal=True)
                active = {c.id for c in await _categories(session)}
                decision = decide(suggestion, ticket, events, active=active, tags=set(await _tags(session)))
            stored = {
                **suggestion,
                "mode": mode,
                "applied": decision.applied,
                "provider": answer.provider,
                "model": answer.model,
            }
            ai.triage, ai.triaged_at = stored, utcnow()
            if not _closed(ticket):  # a closed ticket keeps a quiet timeline: stored only
                await self.tickets.apply_ai_triage(
                    session,
                    ticket,
                    suggestion=stored,
                    category_id=decision.category_id,
                    priority=decision.priority,
                    add_tags=decision.add_tags,
                )
        return True


async def _categories(session: AsyncSession) -> list[CategoryChoice]:
    rows = await crud_category.list_page(session, include_inactive=False, after_id=None, limit=MAX_CATEGORIES)
    rows = rows[:MAX_CATEGORIES]  # list_page reads one extra row to tell whether more follow
    names = {c.id: c.name for c in rows}
    return [CategoryChoice(c.id, c.name, names.get(c.parent_id) if c.parent_id else None, c.description) for c in rows]


async def _tags(session: AsyncSession) -> list[str]:
    rows = await crud_tag.list_page(session, prefix=None, after_name=None, limit=MAX_OFFERED_TAGS)
    return [tag.name for tag in rows[:MAX_OFFERED_TAGS]]
