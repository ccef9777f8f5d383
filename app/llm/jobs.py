"""The AI features' jobs and the listener that queues them.

A new ticket's `ticket.created` event queues one `ai.triage` job (idempotency key
`ai.triage:<ticket_id>`) inside the dispatch job's transaction, so the job exists iff the
dispatch committed; with no provider or triage `off`, nothing is queued at all.

Every provider failing (`LlmUnavailable`) is retried a couple of times with the worker's
backoff (a provider's bad minute should not lose the triage), then the job ends `failed`
(an admin may retry it from /jobs) with nothing written to the ticket. An attempt that asked
no provider at all, every one being paused by its circuit breaker, is not one of those: the
job waits for the breaker's cooldown and keeps its attempts (else a flaky provider's open
breaker would use up every job's attempts in seconds, without a single call).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.jobs.handlers import EventListener
from app.jobs.queue import enqueue
from app.jobs.worker import Handler, JobRun, PermanentJobError, RetryLater
from app.llm.client import LlmClient, LlmUnavailable
from app.llm.triage import Triage
from app.models.ticket import TicketEvent
from app.services.ticket import TicketService

TRIAGE = "ai.triage"
TRIAGE_ATTEMPTS = 3


@dataclass
class AiWiring:
    """What the AI features add to the worker (see app/main.py)."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    listeners: list[EventListener] = field(default_factory=list)


def triage_key(ticket_id: int) -> str:
    return f"{TRIAGE}:{ticket_id}"


def ai_listeners(settings: Settings) -> list[EventListener]:
    async def queue_triage(session: AsyncSession, event: TicketEvent) -> None:
        if event.type != "ticket.created" or not settings.llm.enabled or settings.llm.triage == "off":
            return
        await enqueue(
            session,
            TRIAGE,
            {"ticket_id": event.ticket_id},
            max_attempts=TRIAGE_ATTEMPTS,
            idempotency_key=triage_key(event.ticket_id),
        )

    return [queue_triage]


def ai_job_handlers(settings: Settings, llm: LlmClient, tickets: TicketService) -> dict[str, Handler]:
    triage = Triage(settings.llm, llm, tickets)

    async def run_triage(run: JobRun) -> None:
        ticket_id = int(run.payload["ticket_id"])
        try:
            await triage.run(run.db, ticket_id)
        except LlmUnavailable as exc:
            if exc.retry_after is not None:
                raise RetryLater(exc.retry_after, "every LLM provider is paused by its circuit breaker") from None
            if not run.is_last_attempt:
                raise  # retried after the worker's backoff
            # The worker logs it; "failed" rather than "dead": an expected outcome, retryable.
            raise PermanentJobError("no LLM provider answered; the ticket was left as it was") from None

    return {TRIAGE: run_triage}


def wire_ai(settings: Settings, llm: LlmClient, tickets: TicketService) -> AiWiring:
    return AiWiring(ai_job_handlers(settings, llm, tickets), ai_listeners(settings))
