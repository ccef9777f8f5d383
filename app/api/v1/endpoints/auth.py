"""Registration, login (JSON and OAuth2 form), refresh, logout, WeChat mini-program login."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.v1.dependencies import ClientIP, Context, SessionDep
from app.core.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenReused,
    RegistrationClosed,
    TooManyRequests,
    UserDisabled,
    UsernameTaken,
    problem_responses,
)
from app.models.user import User
from app.schemas.auth import LoginRequest, RefreshRequest, TokenPair, WeChatLoginRequest
from app.schemas.user import UserMe, UserRegister
from app.services import wechat as wechat_service

router = APIRouter(prefix="/auth", tags=["auth"])

_LOGIN_ERRORS = problem_responses(InvalidCredentials, UserDisabled, TooManyRequests)


@router.post(
    "/register",
    response_model=UserMe,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(RegistrationClosed, UsernameTaken),
)
async def register(body: UserRegister, ctx: Context, session: SessionDep) -> User:
    return await ctx.users.register(session, body)


@router.post("/login", response_model=TokenPair, responses=_LOGIN_ERRORS)
async def login(
    body: LoginRequest, request: Request, ctx: Context, session: SessionDep, client_ip: ClientIP
) -> TokenPair:
    return await ctx.auth.login(
        session,
        username=body.username,
        password=body.password,
        client_ip=client_ip,
        user_agent=request.headers.get("user-agent"),
    )


@router.post("/token", response_model=TokenPair, responses=_LOGIN_ERRORS, include_in_schema=True)
async def login_form(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    ctx: Context,
    session: SessionDep,
    client_ip: ClientIP,
) -> TokenPair:
    """The OAuth2 password flow, for the Swagger UI's Authorize button."""
    return await ctx.auth.login(
        session,
        username=form.username,
        password=form.password,
        client_ip=client_ip,
        user_agent=request.headers.get("user-agent"),
    )


@router.post("/refresh", response_model=TokenPair, responses=problem_responses(InvalidRefreshToken, RefreshTokenReused))
async def refresh(body: RefreshRequest, ctx: Context, session: SessionDep) -> TokenPair:
    return await ctx.auth.refresh(session, body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, ctx: Context, session: SessionDep) -> Response:
    await ctx.auth.logout(session, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/wechat",
    response_model=TokenPair,
    responses=problem_responses(
        wechat_service.WeChatLoginDisabled,
        wechat_service.WeChatCodeInvalid,
        wechat_service.WeChatUserBlocked,
        wechat_service.WeChatUnavailable,
        wechat_service.WeChatMisconfigured,
        UserDisabled,
    ),
)
async def wechat_login(
    body: WeChatLoginRequest, request: Request, ctx: Context, session: SessionDep, client_ip: ClientIP
) -> TokenPair:
    """Mini-program login: the `wx.login` code is exchanged with WeChat for the openid."""
    # The WeChat call happens before this request touches the database.
    identity = await ctx.wechat.code_to_session(body.code)
    user = await wechat_service.find_or_create_customer(session, identity)
    if not user.is_active:
        raise UserDisabled
    return await ctx.auth.start_session(
        session, user, client_ip=client_ip, user_agent=request.headers.get("user-agent")
    )
