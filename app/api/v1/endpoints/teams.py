"""Teams of agents: staff read them (with their members), admins create, rename and staff them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from app.api.v1.dependencies import AdminUser, IdempotencyKey, PageDep, SessionDep, StaffUser, idempotent_create
from app.core.errors import (
    Forbidden,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidReference,
    TeamExists,
    TeamNotFound,
    problem_responses,
)
from app.core.pagination import after_id, id_page
from app.crud import crud_team
from app.models.team import Team
from app.schemas.common import Page
from app.schemas.team import TeamCreate, TeamMembersUpdate, TeamRead, TeamUpdate

router = APIRouter(prefix="/teams", tags=["teams"])


@router.get("", response_model=Page[TeamRead], responses=problem_responses(Forbidden, InvalidCursor))
async def list_teams(staff: StaffUser, session: SessionDep, page: PageDep) -> Page[TeamRead]:
    rows = await crud_team.list_page(session, after_id=after_id(page.cursor), limit=page.limit)
    rows, next_cursor = id_page(rows, page.limit)
    return Page[TeamRead](items=[TeamRead.model_validate(t) for t in rows], next_cursor=next_cursor)


@router.get("/{team_id}", response_model=TeamRead, responses=problem_responses(Forbidden, TeamNotFound))
async def read_team(team_id: int, staff: StaffUser, session: SessionDep) -> Team:
    return await crud_team.get(session, team_id)


@router.post(
    "",
    response_model=TeamRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(Forbidden, TeamExists, IdempotencyKeyReused, IdempotencyKeyInProgress),
)
async def create_team(
    body: TeamCreate,
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create() -> Any:
        return TeamRead.model_validate(await crud_team.create(session, body))

    return await idempotent_create(session, request, user=admin, key=idempotency_key, create=create)


@router.patch("/{team_id}", response_model=TeamRead, responses=problem_responses(Forbidden, TeamNotFound, TeamExists))
async def update_team(team_id: int, body: TeamUpdate, admin: AdminUser, session: SessionDep) -> Team:
    team = await crud_team.get(session, team_id)
    return await crud_team.update(session, team, body)


@router.put(
    "/{team_id}/members",
    response_model=TeamRead,
    responses=problem_responses(Forbidden, TeamNotFound, InvalidReference),
)
async def replace_members(team_id: int, body: TeamMembersUpdate, admin: AdminUser, session: SessionDep) -> Team:
    """Replaces the whole member list; only active agents and admins may be members."""
    team = await crud_team.get(session, team_id)
    return await crud_team.set_members(session, team, body.user_ids)
