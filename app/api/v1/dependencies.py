"""Request-scoped dependencies: the database session (committed before the response is sent),
the authenticated user, role guards, the client's IP, pagination."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.context import AppContext
from app.core.errors import AppError, Forbidden, NotAuthenticated
from app.models.user import Role, User

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Context = Annotated[AppContext, Depends(get_context)]


async def get_session(request: Request, ctx: Context) -> AsyncIterator[AsyncSession]:
    """The request's unit of work. Used with scope="function", so the code after `yield` runs
    when the endpoint returns and before the response is sent: a commit that fails becomes an
    error response, never a 200 for something that was not saved. Requests with unsafe methods
    take SQLite's write lock at their first statement (BEGIN IMMEDIATE)."""
    async with ctx.db.session(write=request.method not in SAFE_METHODS) as session:
        try:
            yield session
        except AppError as exc:
            if exc.keeps_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

# For the Swagger UI "Authorize" button; clients send the same Bearer header.
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


@dataclass(frozen=True)
class Principal:
    user: User
    session_id: int


async def get_principal(ctx: Context, session: SessionDep, token: Annotated[str | None, Depends(_bearer)]) -> Principal:
    if not token:
        raise NotAuthenticated
    user, session_id = await ctx.auth.authenticate(session, token)
    return Principal(user, session_id)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: Role) -> object:
    async def guard(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden
        return user

    return Depends(guard)


AdminUser = Annotated[User, require_role(Role.admin)]
StaffUser = Annotated[User, require_role(Role.agent, Role.admin)]


def get_client_ip(request: Request, ctx: Context) -> str:
    peer = request.client.host if request.client else None
    return ctx.proxies.client_ip(peer, request.headers.get("x-forwarded-for"))


ClientIP = Annotated[str, Depends(get_client_ip)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None


def get_page_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> PageParams:
    return PageParams(limit, cursor)


PageDep = Annotated[PageParams, Depends(get_page_params)]
