"""LLM usage rows and the AI's notes per ticket."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.llm.client import Attempt
from app.models.llm import LlmCall, TicketAi


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
    """The ticket's row, created empty on first use."""
    row = await session.get(TicketAi, ticket_id, with_for_update=for_update)
    if row is None:
        row = TicketAi(ticket_id=ticket_id)
        session.add(row)
    return row
