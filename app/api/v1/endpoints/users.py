"""The caller's own account, and admin management of accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.api.v1.dependencies import AdminUser, Context, CurrentPrincipal, CurrentUser, PageDep, SessionDep, StaffUser
from app.core.errors import (
    Forbidden,
    InvalidCursor,
    LastAdmin,
    NotAuthenticated,
    UsernameTaken,
    UserNotFound,
    WrongPassword,
    problem_responses,
    request_language,
)
from app.core.pagination import after_id, id_page
from app.crud import crud_user
from app.models.user import Role, User
from app.schemas.common import Page
from app.schemas.qq import QQBindingCodeRead
from app.schemas.user import MeUpdate, UserBrief, UserCreate, UserMe, UserRead, UserUpdate
from app.services.qq_identity import QQIdentityService

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserMe)
async def read_me(user: CurrentUser) -> User:
    return user


@router.patch("/me", response_model=UserMe, responses=problem_responses(WrongPassword))
async def update_me(body: MeUpdate, principal: CurrentPrincipal, ctx: Context, session: SessionDep) -> User:
    return await ctx.users.update_me(session, principal.user, body, session_id=principal.session_id)


async def get_qq_identity(ctx: Context) -> QQIdentityService:
    return ctx.qq_identities


QQIdentity = Annotated[QQIdentityService, Depends(get_qq_identity)]


@router.post(
    "/me/qq-binding",
    response_model=QQBindingCodeRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(NotAuthenticated),
)
async def create_qq_binding_code(
    request: Request, response: Response, user: CurrentUser, qq: QQIdentity, session: SessionDep
) -> QQBindingCodeRead:
    """A one-time code (10 minutes) for `/绑定 <code>` in a private chat with the QQ bot; earlier
    codes stop working. Binding replaces a QQ account bound before."""
    code, expires_at = await qq.issue_code(session, user)
    response.headers["Cache-Control"] = "no-store"  # the code is a bearer secret
    return QQBindingCodeRead.of(code, expires_at, lang=request_language(request))


@router.delete("/me/qq-binding", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(NotAuthenticated))
async def delete_qq_binding(user: CurrentUser, qq: QQIdentity, session: SessionDep) -> Response:
    """Unlinks the QQ account; 204 also when none was bound (a retried DELETE succeeds)."""
    await qq.unbind(session, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "",
    response_model=Page[UserRead] | Page[UserBrief],
    responses=problem_responses(Forbidden, InvalidCursor),
)
async def list_users(
    user: StaffUser,
    session: SessionDep,
    page: PageDep,
    role: Annotated[Role | None, Query()] = None,
) -> Page[UserRead] | Page[UserBrief]:
    """Admins see every field; agents may list agents only (id and display name, for
    assignee pickers)."""
    if user.role != Role.admin and role != Role.agent:
        raise Forbidden
    rows = await crud_user.list_page(session, role=role, after_id=after_id(page.cursor), limit=page.limit)
    rows, next_cursor = id_page(rows, page.limit)
    if user.role == Role.admin:
        return Page[UserRead](items=[UserRead.model_validate(r) for r in rows], next_cursor=next_cursor)
    return Page[UserBrief](items=[UserBrief.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(Forbidden, UsernameTaken),
)
async def create_user(body: UserCreate, admin: AdminUser, ctx: Context, session: SessionDep) -> User:
    return await ctx.users.create(session, body)


@router.get("/{user_id}", response_model=UserRead, responses=problem_responses(Forbidden, UserNotFound))
async def read_user(user_id: int, admin: AdminUser, session: SessionDep) -> User:
    return await _get_user(session, user_id)


@router.patch("/{user_id}", response_model=UserRead, responses=problem_responses(Forbidden, UserNotFound, LastAdmin))
async def update_user(user_id: int, body: UserUpdate, admin: AdminUser, ctx: Context, session: SessionDep) -> User:
    target = await _get_user(session, user_id)
    return await ctx.users.admin_update(session, target, body)


async def _get_user(session: SessionDep, user_id: int) -> User:
    user = await crud_user.get(session, user_id)
    if user is None:
        raise UserNotFound
    return user
