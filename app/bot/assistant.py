"""The QQ assistant: a private message that is not a command is answered from the knowledge
base, with the titles of the articles it used, and a path to a person.

Two halves, because no database session may be held across an LLM call:

- `receive` runs in the transaction that handles the QQ event: it appends the user's turn to
  their open conversation and queues a `qq.assist` job (or, for `转人工`, opens the ticket at
  once: no model needed). Over the per-user rate limit the turn is kept (it is context for the
  next answer and part of any transcript) and the user is asked to wait; no job, no call.
- `answer` is that job: it reads the conversation and retrieves articles in a short read
  transaction, calls the model with none open, then in a write transaction re-reads the row,
  checks the turn is still unanswered (jobs run at least once) and records the answer, queueing
  the reply through the outbox like every bot message.

It hands over (a ticket through `TicketService.create`, requester the QQ user's account,
channel qq, the transcript as its body; the user is told the number) when the user asks for a
person, when the model says the articles do not support an answer, after
`assistant_max_turns` answers that did not resolve the problem, and when no provider answers.
A later message starts a new conversation; so does one after `IDLE` of silence.

User text and article bodies reach the model only inside `<data>` blocks (app/llm/prompts.py)
and masked; the model's answer is sent as a plain text segment and decides nothing beyond
which of the offered articles it cites.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from app.bot import outbox
from app.bot.texts import text
from app.core.config import LlmSettings
from app.core.errors import AppError
from app.core.i18n import Lang
from app.core.ratelimit import RateLimiter
from app.crud import crud_assistant, crud_qq
from app.db.base import utcnow
from app.jobs.queue import enqueue
from app.jobs.worker import JobRun
from app.llm import prompts
from app.llm.client import ChatMessage, LlmClient, LlmUnavailable
from app.models.assistant import ConversationStatus, QQAssistantConversation
from app.models.ticket import Channel
from app.models.user import User
from app.schemas.ticket import TicketCreate
from app.services.knowledge_base import KnowledgeBase
from app.services.ticket import TicketService

log = logging.getLogger(__name__)

QQ_ASSIST = "qq.assist"
ASSIST_ATTEMPTS = 3
FEATURE = "assistant"
IDLE = timedelta(minutes=30)  # a conversation silent this long is over
RATE_WINDOW_SECONDS = 60
ARTICLES = 3
TURN_MAX_CHARS = 4000  # what one user turn keeps (a QQ message is rarely longer)
ARTICLE_MAX_CHARS = 3000  # of each article's body in the prompt
ANSWER_MAX_CHARS = 1200
TITLE_MAX_CHARS = 80
TRANSCRIPT_MAX_CHARS = 50_000  # a ticket body's limit

# What asks for a person, once punctuation and spaces are gone (NFKC, lower case). Whole
# messages only: "人工智能课的作业怎么交" is a question, not a request.
HANDOVER_WORDS = frozenset(
    {"转人工", "人工", "人工客服", "转人工客服", "找人工", "我要人工", "真人客服", "human", "agent", "talktoahuman"}
)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")

SYSTEM_PROMPT = """你是 IT 服务台在 QQ 上的智能助手，帮用户自助解决问题。
第一条用户消息是从知识库检索到的文章（每篇有 id 和标题），之后是你与用户的对话。
只依据这些文章回答；文章没有写到的步骤、地址、电话、政策一律不要编造。
用用户的语言（中文或英文）回答，简洁、分步骤，纯文本，不用 Markdown，不超过 300 字。

输出字段：
- answer：发给用户的回复。
- grounded：answer 里的事实都来自所给文章时为 true；文章不足以回答用户的问题时为 false，
  用户会被转给人工客服。用户只是打招呼、道谢，或你需要用户补充一点信息时，也为 true。
- article_ids：answer 实际用到的文章 id（只能是所给文章的 id），没有用到则为空。
- resolved：用户最新的消息表示问题已经解决、不再需要帮助时为 true。"""
NO_ARTICLES = "知识库中没有找到相关文章。"


class AssistantAnswer(BaseModel):
    answer: str = Field(description="发给用户的纯文本回复")
    grounded: bool = Field(description="回复的事实都来自所给文章（或无需事实：问候、道谢、请用户补充信息）")
    article_ids: list[int] = Field(default_factory=list, description="回复用到的文章 id")
    resolved: bool = Field(default=False, description="用户最新的消息表示问题已经解决")


class Handover(StrEnum):
    requested = "requested"
    ungrounded = "ungrounded"
    turns = "turns"
    unavailable = "unavailable"


@dataclass(frozen=True)
class Source:
    """An article as offered to the model, read before the session closed."""

    id: int
    title: str
    body: str


def language_of(message: str) -> Lang:
    """English for a message in Latin letters without Chinese; Chinese otherwise."""
    return "en" if _LATIN.search(message) and not _CJK.search(message) else "zh"


def asks_for_a_person(message: str) -> bool:
    folded = unicodedata.normalize("NFKC", message).lower()
    return "".join(ch for ch in folded if ch.isalnum()) in HANDOVER_WORDS


def cite(sources: list[Source], lang: Lang) -> str:
    titles = (
        "、".join(f"《{s.title}》" for s in sources) if lang == "zh" else ", ".join(f'"{s.title}"' for s in sources)
    )
    return text("assistant_sources", lang, titles=titles)


def ticket_title(question: str) -> str:
    line = " ".join(question.split())
    return line if len(line) <= TITLE_MAX_CHARS else line[: TITLE_MAX_CHARS - 1] + "…"


def transcript(turns: list[dict[str, Any]], reason: Handover) -> str:
    """The conversation as a ticket body, for agents (in Chinese, like their notifications);
    the oldest turns give way when it is too long."""
    head = text("assistant_transcript", "zh", reason=text(f"assistant_reason_{reason}", "zh"))
    lines: list[str] = []
    for turn in turns:
        if turn["role"] == "user":
            lines.append(f"{text('assistant_transcript_user', 'zh')}：{turn['text']}")
        else:
            line = f"{text('assistant_transcript_bot', 'zh')}：{turn['text']}"
            if turn.get("articles"):
                line += "\n" + cite([Source(a["id"], a["title"], "") for a in turn["articles"]], "zh")
            lines.append(line)
    body = "\n\n".join(lines)
    room = TRANSCRIPT_MAX_CHARS - len(head) - 4
    if len(body) > room:
        body = "……" + body[len(body) - room + 2 :]
    return f"{head}\n\n{body}"


class QQAssistant:
    def __init__(
        self,
        settings: LlmSettings,
        *,
        llm: LlmClient,
        kb: KnowledgeBase,
        tickets: TicketService,
        limiter: RateLimiter,
        max_chars: int = 1500,
    ) -> None:
        self.settings = settings
        self.llm = llm
        self.kb = kb
        self.tickets = tickets
        self.limiter = limiter  # the app's (memory or Redis): the limit holds across processes
        self.max_chars = max_chars

    @property
    def enabled(self) -> bool:
        """Off without a provider or with the feature switched off: free text gets the help."""
        return self.settings.assistant and self.llm.enabled

    # --- in the QQ event's transaction --------------------------------------------------------

    async def receive(
        self, session: AsyncSession, *, self_id: int, user: User, qq_user_id: int, message: str, key: str
    ) -> None:
        """A free-text private message from `qq_user_id` (whose account is `user`); `key`
        is the idempotency prefix of the answers to this event."""
        lang = language_of(message)
        conversation = await self._current(session, self_id, qq_user_id)
        if asks_for_a_person(message):
            if conversation is None or not any(t["role"] == "user" for t in conversation.turns):
                await self._reply(session, self_id, qq_user_id, key, text("assistant_describe_first", lang))
                return
            turns = _appended(conversation, {"role": "user", "text": message, "lang": lang, "answered": True})
            await self._hand_over(session, conversation, turns, Handover.requested, lang=lang, key=key)
            return
        if conversation is None:
            conversation = await crud_assistant.start_conversation(
                session, self_id=self_id, qq_user_id=qq_user_id, user_id=user.id
            )
        wait = await self.limiter.hit(
            f"qq-assistant:{qq_user_id}", limit=self.settings.assistant_rate_per_minute, window=RATE_WINDOW_SECONDS
        )
        turn = {"role": "user", "text": message[:TURN_MAX_CHARS], "lang": lang, "answered": wait is not None}
        if wait is not None:
            turn["limited"] = True  # kept as context, answered by no job of its own
        turns = _appended(conversation, turn)
        _save(conversation, turns)
        await session.flush()
        if wait is not None:
            await self._reply(session, self_id, qq_user_id, key, text("assistant_rate_limited", lang, seconds=wait))
            return
        index = len(turns) - 1
        await enqueue(
            session,
            QQ_ASSIST,
            {"conversation_id": conversation.id, "turn": index},
            idempotency_key=f"qq:assist:{conversation.id}:{index}",
            max_attempts=ASSIST_ATTEMPTS,
        )

    async def _current(self, session: AsyncSession, self_id: int, qq_user_id: int) -> QQAssistantConversation | None:
        conversation = await crud_assistant.open_conversation(session, self_id=self_id, qq_user_id=qq_user_id)
        if conversation is not None and conversation.updated_at < utcnow() - IDLE:
            conversation.status = ConversationStatus.expired
            await session.flush()  # frees the one-open-conversation slot for the new one
            return None
        return conversation

    # --- the job --------------------------------------------------------------------------------

    async def answer(self, run: JobRun) -> None:
        """`qq.assist` {conversation_id, turn}: answer that user turn, or hand over. A failure
        (the database, not the provider: that is a handover) is retried; after the last
        attempt the user gets an apology rather than silence."""
        try:
            await self._answer(run, run.payload["conversation_id"], run.payload["turn"])
        except Exception:
            if run.is_last_attempt:
                await self._apologize(run, run.payload["conversation_id"], run.payload["turn"])
            raise

    async def _apologize(self, run: JobRun, conversation_id: int, turn: int) -> None:
        async with run.db.transaction() as session:
            conversation = await crud_assistant.get(session, conversation_id, for_update=True)
            if conversation is None or not _pending(conversation, turn):
                return
            lang: Lang = conversation.turns[turn].get("lang", "zh")
            key = f"assist:{conversation.id}:{turn}:failed"
            await self._reply(session, conversation.self_id, conversation.qq_user_id, key, text("internal_error", lang))

    async def _answer(self, run: JobRun, conversation_id: int, turn: int) -> None:
        async with run.db.transaction(write=False) as session:
            conversation = await crud_assistant.get(session, conversation_id)
            if conversation is None or not _pending(conversation, turn):
                return  # answered by an earlier run, or the conversation ended
            turns = list(conversation.turns)
            if any(t["role"] == "user" and not t.get("limited") for t in turns[turn + 1 :]):
                return  # the user wrote again: that turn's job answers both
            question = "\n".join(t["text"] for t in reversed(turns[: turn + 1]) if t["role"] == "user")
            articles = await self.kb.retrieve(session, question, limit=ARTICLES)
            sources = [Source(a.id, a.title, a.body[:ARTICLE_MAX_CHARS]) for a in articles]
        # No session from here to the write below.
        try:
            structured = await self.llm.complete_json(
                FEATURE, self._prompt(turns[: turn + 1], sources), AssistantAnswer
            )
            result: AssistantAnswer | None = structured.value
        except LlmUnavailable:
            result = None
        async with run.db.transaction() as session:
            conversation = await crud_assistant.get(session, conversation_id, for_update=True)
            if conversation is None or not _pending(conversation, turn):
                return
            await self._conclude(session, conversation, turn, result, sources)

    async def _conclude(
        self,
        session: AsyncSession,
        conversation: QQAssistantConversation,
        turn: int,
        result: AssistantAnswer | None,
        sources: list[Source],
    ) -> None:
        turns = [dict(t) for t in conversation.turns]
        for earlier in turns[: turn + 1]:
            if earlier["role"] == "user":
                earlier["answered"] = True
        lang: Lang = turns[turn].get("lang", "zh")
        key = f"assist:{conversation.id}:{turn}"
        answers = sum(1 for t in turns if t["role"] == "assistant")
        reply = result.answer.strip()[:ANSWER_MAX_CHARS] if result is not None else ""
        if result is None:
            await self._hand_over(session, conversation, turns, Handover.unavailable, lang=lang, key=key)
        elif result.resolved:
            reply = reply or text("assistant_resolved", lang)
            turns.append({"role": "assistant", "text": reply, "at": utcnow().isoformat()})
            _save(conversation, turns, status=ConversationStatus.resolved)
            await self._reply(session, conversation.self_id, conversation.qq_user_id, key, reply)
        elif not result.grounded or not reply:
            await self._hand_over(session, conversation, turns, Handover.ungrounded, lang=lang, key=key)
        elif answers >= self.settings.assistant_max_turns:
            await self._hand_over(session, conversation, turns, Handover.turns, lang=lang, key=key)
        else:
            cited = [s for s in sources if s.id in set(result.article_ids)]  # only what was offered
            articles = [{"id": s.id, "title": s.title} for s in cited]
            turns.append({"role": "assistant", "text": reply, "articles": articles, "at": utcnow().isoformat()})
            _save(conversation, turns)
            parts = [reply, cite(cited, lang)] if cited else [reply]
            message = "\n\n".join([*parts, text("assistant_hint", lang)])
            await self._reply(session, conversation.self_id, conversation.qq_user_id, key, message)

    def _prompt(self, turns: list[dict[str, Any]], sources: list[Source]) -> list[ChatMessage]:
        messages = [prompts.system(SYSTEM_PROMPT)]
        if sources:
            blocks = [("kb_article", f"id: {s.id}\n标题：{s.title}\n\n{s.body}") for s in sources]
            messages.append(prompts.user_data(blocks))
        else:
            messages.append(prompts.system(NO_ARTICLES))
        for turn in turns:
            if turn["role"] == "user":
                messages.append(prompts.user_data([("qq_user", turn["text"])]))
            else:
                messages.append(ChatMessage("assistant", turn["text"]))
        return messages

    # --- handing over -------------------------------------------------------------------------

    async def _hand_over(
        self,
        session: AsyncSession,
        conversation: QQAssistantConversation,
        turns: list[dict[str, Any]],
        reason: Handover,
        *,
        lang: Lang,
        key: str,
    ) -> None:
        """Open the ticket (as `/报修` does: notifications, triage and SLA follow), close the
        conversation and tell the user the number."""
        self_id, qq_user_id = conversation.self_id, conversation.qq_user_id
        user = await session.get(User, conversation.user_id)
        first = next(t["text"] for t in turns if t["role"] == "user")
        try:
            async with session.begin_nested():
                if user is None:
                    raise LookupError("the conversation's account is gone")
                body = TicketCreate(title=ticket_title(first), body=transcript(turns, reason))
                ticket = await self.tickets.create(session, body, actor=user, channel=Channel.qq)
                await crud_qq.set_origin(
                    session, ticket_id=ticket.id, self_id=self_id, qq_user_id=qq_user_id, group_id=None
                )
        except (AppError, LookupError) as exc:
            log.error("the QQ assistant could not open a ticket: %s", getattr(exc, "code", exc))
            _save(conversation, turns)
            await self._reply(session, self_id, qq_user_id, key, text("internal_error", lang))
            return
        _save(conversation, turns, status=ConversationStatus.handed_over)
        conversation.ticket_id = ticket.id
        message = text(f"assistant_handover_{reason}", lang, number=ticket.number)
        await self._reply(session, self_id, qq_user_id, key, message, ticket_id=ticket.id)

    async def _reply(
        self, session: AsyncSession, self_id: int, qq_user_id: int, key: str, body: str, *, ticket_id: int | None = None
    ) -> None:
        """Through the outbox (a retried `qq.send` job), as a text segment: never CQ code. A
        reply about a ticket is remembered, so a quote-reply to it reaches the ticket."""
        await outbox.queue_text(
            session,
            key=key,
            self_id=self_id,
            user_id=qq_user_id,
            text=body,
            ticket_id=ticket_id,
            max_chars=self.max_chars,
        )


def _pending(conversation: QQAssistantConversation, turn: int) -> bool:
    turns = conversation.turns
    return (
        conversation.status == ConversationStatus.open
        and 0 <= turn < len(turns)
        and turns[turn]["role"] == "user"
        and not turns[turn].get("answered")
    )


def _appended(conversation: QQAssistantConversation, turn: dict[str, Any]) -> list[dict[str, Any]]:
    return [*conversation.turns, {**turn, "at": utcnow().isoformat()}]


def _save(
    conversation: QQAssistantConversation, turns: list[dict[str, Any]], *, status: ConversationStatus | None = None
) -> None:
    conversation.turns = turns
    flag_modified(conversation, "turns")  # a JSON column: assignment alone may compare equal
    if status is not None:
        conversation.status = status
    conversation.updated_at = utcnow()
