"""SLA administration (admins only, reads included): `/sla-policies` and `/business-calendar`.

Policy and calendar changes apply to a ticket's due dates from its next relevant change
(status, priority, category, first reply); new tickets use them at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from app.api.v1.dependencies import AdminUser, Context, IdempotencyKey, PageDep, SessionDep, idempotent_create
from app.core.errors import (
    FieldProblem,
    Forbidden,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidCursor,
    SlaPolicyExists,
    SlaPolicyNotFound,
    problem_responses,
)
from app.core.pagination import after_id, id_page
from app.crud import crud_sla
from app.models.sla import SlaPolicy
from app.schemas.common import Page
from app.schemas.sla import (
    BusinessCalendarDocument,
    BusinessCalendarRead,
    SlaPolicyCreate,
    SlaPolicyRead,
    SlaPolicyUpdate,
)
from app.services.sla import CalendarState

policies = APIRouter(prefix="/sla-policies", tags=["sla"])
calendar = APIRouter(prefix="/business-calendar", tags=["sla"])


@policies.get("", response_model=Page[SlaPolicyRead], responses=problem_responses(Forbidden, InvalidCursor))
async def list_policies(admin: AdminUser, session: SessionDep, page: PageDep) -> Page[SlaPolicyRead]:
    rows = await crud_sla.list_policies(session, after_id=after_id(page.cursor), limit=page.limit)
    rows, next_cursor = id_page(rows, page.limit)
    return Page[SlaPolicyRead](items=[SlaPolicyRead.model_validate(p) for p in rows], next_cursor=next_cursor)


@policies.post(
    "",
    response_model=SlaPolicyRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(
        Forbidden, SlaPolicyExists, FieldProblem, IdempotencyKeyReused, IdempotencyKeyInProgress
    ),
)
async def create_policy(
    body: SlaPolicyCreate,
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create() -> Any:
        return SlaPolicyRead.model_validate(await crud_sla.create_policy(session, body))

    return await idempotent_create(session, request, user=admin, key=idempotency_key, create=create)


@policies.get("/{policy_id}", response_model=SlaPolicyRead, responses=problem_responses(Forbidden, SlaPolicyNotFound))
async def read_policy(policy_id: int, admin: AdminUser, session: SessionDep) -> SlaPolicy:
    return await crud_sla.get_policy(session, policy_id)


@policies.patch(
    "/{policy_id}",
    response_model=SlaPolicyRead,
    responses=problem_responses(Forbidden, SlaPolicyNotFound, SlaPolicyExists, FieldProblem),
)
async def update_policy(policy_id: int, body: SlaPolicyUpdate, admin: AdminUser, session: SessionDep) -> SlaPolicy:
    policy = await crud_sla.get_policy(session, policy_id)
    return await crud_sla.update_policy(session, policy, body)


@policies.delete(
    "/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(Forbidden, SlaPolicyNotFound),
)
async def delete_policy(policy_id: int, admin: AdminUser, session: SessionDep) -> Response:
    """Tickets keep the due dates they have until their next relevant change."""
    await crud_sla.delete_policy(session, await crud_sla.get_policy(session, policy_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _read(state: CalendarState, ctx: Context) -> BusinessCalendarRead:
    document = state.calendar.rules.document()
    return BusinessCalendarRead.model_validate(
        {
            **document,
            "source": state.source,
            "timezone": ctx.settings.timezone,
            "revision": state.revision,
            "updated_at": state.updated_at,
        }
    )


@calendar.get("", response_model=BusinessCalendarRead, responses=problem_responses(Forbidden))
async def read_calendar(admin: AdminUser, session: SessionDep, ctx: Context) -> BusinessCalendarRead:
    return _read(await ctx.sla.calendar_state(session), ctx)


@calendar.put("", response_model=BusinessCalendarRead, responses=problem_responses(Forbidden, FieldProblem))
async def save_calendar(
    body: BusinessCalendarDocument, admin: AdminUser, session: SessionDep, ctx: Context
) -> BusinessCalendarRead:
    """Replaces the calendar; it wins over HELPDESK_SLA__CALENDAR_FILE from now on."""
    return _read(await ctx.sla.save_calendar(session, body, user_id=admin.id), ctx)


@calendar.delete("", response_model=BusinessCalendarRead, responses=problem_responses(Forbidden))
async def reset_calendar(admin: AdminUser, session: SessionDep, ctx: Context) -> BusinessCalendarRead:
    """Forgets the saved calendar: the settings file (or the default) applies again."""
    return _read(await ctx.sla.save_calendar(session, None, user_id=admin.id), ctx)
