"""Request-scoped dependencies: the database session (committed before the response is sent),
the authenticated user, role guards, the client's IP, pagination."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.context import AppContext
from app.core.errors import AppError, Forbidden, NotAuthenticated
from app.models.ticket import Channel
from app.models.user import Role, User
from app.services import idempotency

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Dependencies are `async def` even when they only read the request: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per request for nothing (bench/http.py).
async def get_context(request: Request) -> AppContext:
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
    user, claims = await ctx.auth.authenticate(session, token)
    return Principal(user, claims.session_id)


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


async def get_staff_detached(ctx: Context, token: Annotated[str | None, Depends(_bearer)]) -> User:
    """An agent or admin, authenticated in a short read session of its own that is closed on
    return: for endpoints that wait on an LLM, which must hold no database session meanwhile
    (they open their own short transactions, `ctx.db.transaction()`)."""
    if not token:
        raise NotAuthenticated
    async with ctx.db.session(write=False) as session:
        user, _claims = await ctx.auth.authenticate(session, token)
    if user.role not in (Role.agent, Role.admin):
        raise Forbidden
    return user


# Use instead of StaffUser (and without SessionDep) where the endpoint calls a provider.
DetachedStaffUser = Annotated[User, Depends(get_staff_detached)]


async def get_client_ip(request: Request, ctx: Context) -> str:
    peer = request.client.host if request.client else None
    return ctx.proxies.client_ip(peer, request.headers.get("x-forwarded-for"))


ClientIP = Annotated[str, Depends(get_client_ip)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None


async def get_page_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> PageParams:
    return PageParams(limit, cursor)


PageDep = Annotated[PageParams, Depends(get_page_params)]


_REST_CHANNELS = {c.value for c in (Channel.web, Channel.android, Channel.miniprogram, Channel.api)}


async def get_client_channel(
    x_client: Annotated[str | None, Header(alias="X-Client", max_length=32)] = None,
) -> Channel:
    """`X-Client: web | android | miniprogram | api` (default api), recorded on tickets and
    messages. `qq` is the bot's alone; anything unknown counts as api."""
    value = (x_client or "").strip().lower()
    return Channel(value) if value in _REST_CHANNELS else Channel.api


ClientChannel = Annotated[Channel, Depends(get_client_channel)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)]


async def idempotent_create(
    session: AsyncSession,
    request: Request,
    *,
    user: User,
    key: str | None,
    create: Callable[[], Awaitable[BaseModel]],
    status_code: int = 201,
    canonical_body: Any = None,
) -> JSONResponse:
    """Runs `create` once per (user, Idempotency-Key); a repeat of the same request gets the
    first response back, status and body alike (see app/services/idempotency.py)."""
    if key is None:
        return JSONResponse((await create()).model_dump(mode="json"), status_code=status_code)
    if canonical_body is None:
        canonical_body = json.loads(await request.body() or b"null")
    fingerprint = idempotency.fingerprint(request.method, request.url.path, canonical_body)
    stored = await idempotency.begin(session, user_id=user.id, key=key, request_fingerprint=fingerprint)
    if stored is not None:
        return JSONResponse(stored.body, status_code=stored.status, headers={"Idempotent-Replayed": "true"})
    body = (await create()).model_dump(mode="json")
    await idempotency.finish(
        session, user_id=user.id, key=key, request_fingerprint=fingerprint, status=status_code, body=body
    )
    return JSONResponse(body, status_code=status_code)
