"""Canned responses: staff read and render them for a ticket, admins write them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from app.api.v1.dependencies import AdminUser, IdempotencyKey, PageDep, SessionDep, StaffUser, idempotent_create
from app.core.errors import (
    CannedResponseNotFound,
    Forbidden,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidReference,
    TicketNotFound,
    problem_responses,
)
from app.core.pagination import after_id, id_page
from app.crud import crud_canned_response, crud_ticket
from app.models.canned_response import CannedResponse
from app.schemas.canned_response import (
    CannedResponseCreate,
    CannedResponseRead,
    CannedResponseUpdate,
    RenderedResponse,
    RenderRequest,
)
from app.schemas.common import Page
from app.services import canned_response as canned_service

router = APIRouter(prefix="/canned-responses", tags=["canned responses"])


@router.get("", response_model=Page[CannedResponseRead], responses=problem_responses(Forbidden, InvalidCursor))
async def list_canned_responses(
    staff: StaffUser, session: SessionDep, page: PageDep, team_id: int | None = None
) -> Page[CannedResponseRead]:
    """Ordered by id; `team_id` keeps that team's responses only."""
    rows = await crud_canned_response.list_page(
        session, team_id=team_id, after_id=after_id(page.cursor), limit=page.limit
    )
    rows, next_cursor = id_page(rows, page.limit)
    return Page[CannedResponseRead](items=[CannedResponseRead.model_validate(c) for c in rows], next_cursor=next_cursor)


@router.get(
    "/{canned_id}", response_model=CannedResponseRead, responses=problem_responses(Forbidden, CannedResponseNotFound)
)
async def read_canned_response(canned_id: int, staff: StaffUser, session: SessionDep) -> CannedResponse:
    return await crud_canned_response.get(session, canned_id)


@router.post(
    "",
    response_model=CannedResponseRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(Forbidden, InvalidReference, IdempotencyKeyReused, IdempotencyKeyInProgress),
)
async def create_canned_response(
    body: CannedResponseCreate,
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create() -> Any:
        return CannedResponseRead.model_validate(await canned_service.create(session, body, actor=admin))

    return await idempotent_create(session, request, user=admin, key=idempotency_key, create=create)


@router.patch(
    "/{canned_id}",
    response_model=CannedResponseRead,
    responses=problem_responses(Forbidden, CannedResponseNotFound, InvalidReference),
)
async def update_canned_response(
    canned_id: int, body: CannedResponseUpdate, admin: AdminUser, session: SessionDep
) -> CannedResponse:
    canned = await crud_canned_response.get(session, canned_id)
    return await canned_service.update(session, canned, body)


@router.delete(
    "/{canned_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(Forbidden, CannedResponseNotFound),
)
async def delete_canned_response(canned_id: int, admin: AdminUser, session: SessionDep) -> Response:
    canned = await crud_canned_response.get(session, canned_id)
    await crud_canned_response.delete_canned(session, canned)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{canned_id}/render",
    response_model=RenderedResponse,
    responses=problem_responses(Forbidden, CannedResponseNotFound, TicketNotFound),
)
async def render_canned_response(
    canned_id: int, body: RenderRequest, staff: StaffUser, session: SessionDep
) -> RenderedResponse:
    """The body with `{{ticket.number}}`, `{{ticket.title}}`, `{{ticket.status}}`,
    `{{ticket.priority}}`, `{{ticket.category}}`, `{{requester.display_name}}`,
    `{{assignee.display_name}}`, `{{team.name}}` and `{{agent.display_name}}` (the caller)
    filled in from the ticket; unknown names are left as they are. Nothing is saved."""
    canned = await crud_canned_response.get(session, canned_id)
    ticket = await crud_ticket.get_readable(session, body.ticket_id, staff)
    return RenderedResponse(body=canned_service.render_for_ticket(canned, ticket, agent=staff))
