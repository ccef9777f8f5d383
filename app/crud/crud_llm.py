"""LLM usage rows and the AI's notes per ticket."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Row, case, column, func, or_, select, values
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app.core.errors import TicketNotFound
from app.crud.crud_ticket import readable_by
from app.db.base import UTCDateTime, utcnow
from app.db.statements import dialect_name, upsert_insert
from app.llm.client import Attempt
from app.models.canned_response import CannedResponse
from app.models.llm import LlmCall, TicketAi
from app.models.ticket import Message, Ticket, TicketEvent
from app.models.user import User

Rows = Sequence[Row[*tuple[Any, ...]]]


async def add_call(session: AsyncSession, attempt: Attempt) -> None:
    session.add(
        LlmCall(
            created_at=utcnow(),
            feature=attempt.feature,
            ticket_id=attempt.ticket_id,
            provider=attempt.provider,
            model=attempt.model[:128],
            prompt_tokens=attempt.prompt_tokens,
            completion_tokens=attempt.completion_tokens,
            latency_ms=attempt.latency_ms,
            outcome=attempt.outcome.value,
            error=attempt.error[:300] if attempt.error else None,
        )
    )


async def ticket_ai(session: AsyncSession, ticket_id: int, *, for_update: bool = False) -> TicketAi:
    """The ticket's row, created empty on first use. The insert yields to a concurrent one (a
    summary stored while the triage job runs), so neither fails on the primary key."""
    stmt = _insert(session)(TicketAi).values(ticket_id=ticket_id).on_conflict_do_nothing(index_elements=["ticket_id"])
    await session.execute(stmt)
    row = select(TicketAi).where(TicketAi.ticket_id == ticket_id).execution_options(populate_existing=True)
    if for_update:
        row = row.with_for_update()
    return (await session.execute(row)).scalar_one()


def _insert(session: AsyncSession) -> Any:
    return upsert_insert(dialect_name(session))


# --- what the AI features read -------------------------------------------------------------------


async def newest_event_id(session: AsyncSession, ticket_id: int) -> int:
    """The ticket's latest timeline event: the key of its cached summary (0 when none)."""
    stmt = select(func.max(TicketEvent.id)).where(TicketEvent.ticket_id == ticket_id)
    return int((await session.execute(stmt)).scalar_one() or 0)


async def thread(session: AsyncSession, ticket_id: int, *, limit: int) -> tuple[Rows, int]:
    """For a prompt: the first message (the problem as first told) and the newest `limit - 1`
    others, internal notes included, oldest first, as rows (id, author_id, author_role, body,
    internal, created_at); and how many messages the ticket has in all. One statement, two
    when the ticket has more than `limit` messages."""
    columns = (Message.id, Message.author_id, User.role.label("author_role"), Message.body, Message.internal)
    base = select(*columns, Message.created_at).join(User, User.id == Message.author_id)
    base = base.where(Message.ticket_id == ticket_id)
    counted = base.add_columns(func.count().over().label("total"))
    newest = (await session.execute(counted.order_by(Message.id.desc()).limit(limit))).all()
    if not newest:
        return [], 0
    total = int(newest[0].total)
    rows: list[Any] = list(reversed(newest))
    if total > len(rows):
        first = (await session.execute(base.order_by(Message.id).limit(1))).one()
        rows = [first, *rows[1:]]
    return rows, total


async def ticket_for_prompt(session: AsyncSession, ticket_id: int, user: User) -> tuple[Ticket, dict[str, Any] | None]:
    """The ticket as a prompt needs it (requester, assignee, category and team loaded, for
    canned responses' variables) and its stored triage suggestion, in one statement; 404
    `ticket_not_found` alike for missing and hidden (`readable_by`)."""
    stmt = (
        readable_by(user)
        .where(Ticket.id == ticket_id)
        .outerjoin(TicketAi, TicketAi.ticket_id == Ticket.id)
        .add_columns(TicketAi.triage)
        .options(
            joinedload(Ticket.requester),
            joinedload(Ticket.assignee),
            joinedload(Ticket.category),
            joinedload(Ticket.team),
        )
    )
    row = (await session.execute(stmt)).one_or_none()  # many-to-one joins only: one row per ticket
    if row is None:
        raise TicketNotFound
    ticket, triage = row
    return ticket, triage


async def canned_for_team(session: AsyncSession, team_id: int | None, *, limit: int) -> list[CannedResponse]:
    """Canned responses for everyone and for the ticket's team, oldest first."""
    stmt = select(CannedResponse).order_by(CannedResponse.id).limit(limit)
    shared = CannedResponse.team_id.is_(None)
    stmt = stmt.where(or_(shared, CannedResponse.team_id == team_id) if team_id is not None else shared)
    return list((await session.execute(stmt)).scalars())


async def get_ticket_ai(session: AsyncSession, ticket_id: int) -> TicketAi | None:
    """The ticket's AI notes, or None (never creates the row)."""
    return await session.get(TicketAi, ticket_id)


async def store_summary(
    session: AsyncSession, ticket_id: int, summary: dict[str, Any], *, event_id: int, at: datetime
) -> None:
    """Keep `summary` as of timeline event `event_id`, unless a summary of a later state is
    already stored (a slower request must not overwrite a fresher one). One upsert: two first
    summaries of a ticket at once cannot collide on the primary key."""
    stmt = _insert(session)(TicketAi).values(
        ticket_id=ticket_id, summary=summary, summary_event_id=event_id, summarized_at=at
    )
    stored = TicketAi.summary_event_id
    stmt = stmt.on_conflict_do_update(
        index_elements=[TicketAi.ticket_id],
        set_={"summary": stmt.excluded.summary, "summary_event_id": event_id, "summarized_at": at},
        where=or_(stored.is_(None), stored <= event_id),
    )
    await session.execute(stmt)


# --- usage ---------------------------------------------------------------------------------------


def _figures() -> tuple[Any, ...]:
    """calls, failures, tokens and the latency sum of the llm_calls rows in a group. Sums and
    counts of integers only, divided in Python: the same figures on both databases (avg() is
    a double on SQLite and a numeric on PostgreSQL)."""
    return (
        func.count(LlmCall.id).label("calls"),
        # A stream whose reader left (cancelled) is not the provider's failure.
        func.coalesce(func.sum(case((LlmCall.outcome.notin_(["ok", "cancelled"]), 1), else_=0)), 0).label("failures"),
        func.coalesce(func.sum(LlmCall.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(LlmCall.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(LlmCall.latency_ms), 0).label("latency_ms"),
    )


async def usage_total(session: AsyncSession, start: datetime, end: datetime) -> Row[*tuple[Any, ...]]:
    stmt = select(*_figures()).where(LlmCall.created_at >= start, LlmCall.created_at < end)
    return (await session.execute(stmt)).one()


async def usage_by(session: AsyncSession, start: datetime, end: datetime, *, by: str) -> Rows:
    """(key, figures...) per feature or provider with calls in [start, end), by key."""
    key = {"feature": LlmCall.feature, "provider": LlmCall.provider}[by]
    stmt = (
        select(key.label("key"), *_figures())
        .where(LlmCall.created_at >= start, LlmCall.created_at < end)
        .group_by(key)
        .order_by(key)
    )
    return (await session.execute(stmt)).all()


async def usage_per_day(session: AsyncSession, days: Sequence[tuple[datetime, datetime]]) -> Rows:
    """(i, figures...) for each (start, end) in `days`, in order, zeros included. The bounds
    are a VALUES list computed in Python (SQLite has no time zones), as for the statistics."""
    bounds = (
        values(column("i", Integer), column("day_start", UTCDateTime), column("day_end", UTCDateTime), name="days")
        .data([(i, start, end) for i, (start, end) in enumerate(days)])
        .cte("days")
    )
    stmt = (
        select(bounds.c.i, *_figures())
        .select_from(bounds)
        .outerjoin(LlmCall, (LlmCall.created_at >= bounds.c.day_start) & (LlmCall.created_at < bounds.c.day_end))
        .group_by(bounds.c.i)
        .order_by(bounds.c.i)
    )
    return (await session.execute(stmt)).all()
