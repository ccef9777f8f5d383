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
    quote-reply to them finds it; `fallback_group_id` is where a refused private message goes."""
    for index, part in enumerate(split_message(text, max_chars)):
        segments = Message()
        if quote is not None and index == 0:
            segments.append(MessageSegment.reply(quote))
        if group_id is not None and mention is not None:
            segments.extend([MessageSegment.at(mention), MessageSegment.text(" ")])
        segments.append(MessageSegment.text(part))  # user text: always a text segment, never CQ
        payload: dict[str, Any] = {
            "self_id": self_id,
            "user_id": user_id,
            "group_id": group_id,
            "message": segments.to_array(),
            "ticket_id": ticket_id,
            "fallback_group_id": fallback_group_id,
        }
        await enqueue(
            session,
            QQ_SEND,
            payload,
            routing_key=routing_key(self_id),
            idempotency_key=f"qq:{key}:{index}",
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
