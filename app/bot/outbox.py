"""Everything the bot says goes through the job queue: a `qq.send` job per message, routed to
the process that holds the bot's connection (`onebot:<self_id>`), with an idempotency key per
(cause, recipient, part). While the bot is offline the jobs wait; a transient failure is
retried with backoff; a refused private message falls back to an @ in the ticket's group."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.bot.texts import split_message
from app.jobs.queue import enqueue
from app.onebot.message import Message, MessageSegment

QQ_SEND = "qq.send"
QQ_ACTION = "qq.action"
SEND_ATTEMPTS = 10


def routing_key(self_id: int) -> str:
    return f"onebot:{self_id}"


async def queue_text(
    session: AsyncSession,
    *,
    key: str,
    self_id: int,
    text: str,
    user_id: int | None = None,
    group_id: int | None = None,
    mention: int | None = None,
    quote: str | None = None,
    ticket_id: int | None = None,
    fallback_group_id: int | None = None,
    max_chars: int = 1500,
) -> None:
    """Queue `text` (split into parts QQ accepts) to a private chat (`user_id`) or a group
    (`group_id`, with an @ of `mention`). Sent messages about a ticket are remembered so a
    quote-reply to them finds it; `fallback_group_id` is where a refused private message goes.

    The parts go out in order: the job of one part queues the next once it is sent (jobs run
    concurrently, so a job per part queued at once could arrive shuffled)."""
    parts: list[list[dict[str, Any]]] = []
    for index, part in enumerate(split_message(text, max_chars)):
        segments = Message()
        if quote is not None and index == 0:
            segments.append(MessageSegment.reply(quote))
        if group_id is not None and mention is not None:
            segments.extend([MessageSegment.at(mention), MessageSegment.text(" ")])
        segments.append(MessageSegment.text(part))  # user text: always a text segment, never CQ
        parts.append(segments.to_array())
    payload: dict[str, Any] = {
        "self_id": self_id,
        "user_id": user_id,
        "group_id": group_id,
        "ticket_id": ticket_id,
        "fallback_group_id": fallback_group_id,
        "key": key,
    }
    await queue_part(session, payload, parts, index=0)


async def queue_part(session: AsyncSession, target: dict[str, Any], parts: list[Any], *, index: int) -> None:
    """The job that sends part `index` (`message`) and carries the parts after it (`rest`)."""
    payload = {**target, "index": index, "message": parts[0], "rest": parts[1:]}
    await enqueue(
        session,
        QQ_SEND,
        payload,
        routing_key=routing_key(target["self_id"]),
        idempotency_key=f"qq:{target['key']}:{index}",
        max_attempts=SEND_ATTEMPTS,
    )


async def queue_action(session: AsyncSession, *, key: str, self_id: int, action: str, params: dict[str, Any]) -> None:
    """Any other action (approving a friend request), routed and retried the same way."""
    await enqueue(
        session,
        QQ_ACTION,
        {"self_id": self_id, "action": action, "params": params},
        routing_key=routing_key(self_id),
        idempotency_key=f"qq:{key}",
        max_attempts=SEND_ATTEMPTS,
    )
