"""The agents' AI endpoints: ticket summaries, reply drafts (SSE), the stored triage suggestion;
and the admins' LLM usage report.

Customers never see AI internals: every route here is for agents and admins (403 otherwise).
The two that call a provider authenticate with `DetachedStaffUser` and hold no database session
while they wait (app/llm/summary.py, app/llm/reply.py).

Reply drafts, `GET /tickets/{id}/reply-suggestion` (text/event-stream):

    event: delta
    data: {"text": "您好，"}

    event: done
    data: {"provider": "deepseek", "model": "deepseek-chat", "sources": [{"type": "kb", "id": 3, "title": "..."}]}

The response starts only once the provider sent its first piece: 404, 403, 503 ai_disabled and
503 ai_unavailable (every provider failed before answering) are ordinary problem+json
responses. A provider that breaks off mid-answer ends the stream with
`event: error` / `data: {"code": "ai_interrupted", "detail": "..."}`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from app.api.v1.dependencies import AdminUser, Context, DetachedStaffUser, SessionDep, StaffUser
from app.core.errors import (
    AiDisabled,
    AiUnavailable,
    FieldProblem,
    Forbidden,
    NotAuthenticated,
    TicketNotFound,
    problem_responses,
    request_language,
)
from app.crud import crud_llm, crud_ticket
from app.db.base import utcnow
from app.llm import reply, summary
from app.schemas.ai import LlmUsageReport, TicketSummaryRead, TicketTriageRead
from app.services import llm_usage
from app.services.llm_usage import GroupBy

router = APIRouter(tags=["ai"])

_AI_ERRORS = (NotAuthenticated, Forbidden, TicketNotFound, AiDisabled, AiUnavailable)
_BOUND = (
    "a day in the business timezone (`2026-11-24`), or an RFC 3339 datetime with its offset; "
    "`to` as a day includes that whole day, as a datetime it is exclusive"
)


@router.post("/tickets/{ticket_id}/summary", response_model=TicketSummaryRead, responses=problem_responses(*_AI_ERRORS))
async def summarize_ticket(
    ticket_id: int,
    request: Request,
    staff: DetachedStaffUser,
    ctx: Context,
    refresh: Annotated[bool, Query(description="make a new summary even if the ticket has not changed")] = False,
) -> TicketSummaryRead:
    """Intent, summary, open questions and mood, in the agent's language (Accept-Language).
    Cached until the ticket changes (`cached: true` when served from the cache)."""
    return await summary.summarize(ctx, ticket_id, user=staff, lang=request_language(request), refresh=refresh)


@router.get(
    "/tickets/{ticket_id}/reply-suggestion",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **problem_responses(*_AI_ERRORS)},
)
async def suggest_reply(ticket_id: int, request: Request, staff: DetachedStaffUser, ctx: Context) -> StreamingResponse:
    """A draft of the next reply to the customer, streamed: `delta` events, then `done` (see
    the module's docstring). Nothing is sent to the customer."""
    plan = await reply.prepare(ctx, ticket_id, agent=staff)
    stream = reply.ReplyStream(ctx.llm, plan, lang=request_language(request))
    await stream.start()
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream.events(), media_type="text/event-stream", headers=headers)


@router.get(
    "/tickets/{ticket_id}/triage",
    response_model=TicketTriageRead,
    responses=problem_responses(NotAuthenticated, Forbidden, TicketNotFound),
)
async def read_triage(ticket_id: int, staff: StaffUser, session: SessionDep, ctx: Context) -> TicketTriageRead:
    """The latest triage suggestion as stored (null when the ticket was never triaged)."""
    ticket = await crud_ticket.get_readable(session, ticket_id, staff)
    ai = await crud_llm.get_ticket_ai(session, ticket.id)
    return TicketTriageRead(
        ticket_id=ticket.id,
        mode=ctx.settings.llm.triage,
        suggestion=ai.triage if ai is not None else None,
        triaged_at=ai.triaged_at if ai is not None else None,
    )


@router.get(
    "/llm/usage",
    response_model=LlmUsageReport,
    responses=problem_responses(NotAuthenticated, Forbidden, FieldProblem),
)
async def read_llm_usage(
    admin: AdminUser,
    session: SessionDep,
    ctx: Context,
    from_: Annotated[str | None, Query(alias="from", max_length=64, description=_BOUND)] = None,
    to: Annotated[str | None, Query(max_length=64, description=_BOUND)] = None,
    group_by: GroupBy = "day",
) -> LlmUsageReport:
    """Calls, failures (outcome other than ok), tokens and average latency of every attempt at
    a provider, per business day (zeros included), feature or provider. Default range: the last
    30 days; at most 366 (422 `range_too_long`)."""
    return await llm_usage.report(
        session, from_raw=from_, to_raw=to, group_by=group_by, tz=ctx.settings.tz, now=utcnow()
    )
