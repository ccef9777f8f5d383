"""Login sessions and refresh tokens: all their SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app.models.auth_session import AuthSession, RefreshToken
from app.models.user import User


async def create_session(
    session: AsyncSession, *, user_id: int, now: datetime, user_agent: str | None, client_ip: str | None
) -> AuthSession:
    auth_session = AuthSession(
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        user_agent=(user_agent or "")[:255] or None,
        client_ip=client_ip,
    )
    session.add(auth_session)
    await session.flush()
    return auth_session


async def add_refresh_token(
    session: AsyncSession, *, session_id: int, token_hash: str, now: datetime, expires_at: datetime
) -> RefreshToken:
    token = RefreshToken(session_id=session_id, token_hash=token_hash, created_at=now, expires_at=expires_at)
    session.add(token)
    await session.flush()
    return token


async def get_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    """The token with its session and the session's user, in one statement."""
    stmt = (
        select(RefreshToken)
        .options(joinedload(RefreshToken.session).joinedload(AuthSession.user))
        .where(RefreshToken.token_hash == token_hash)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def spend_refresh_token(session: AsyncSession, token_id: int, now: datetime) -> bool:
    """Mark the token used; False when another request spent it first (parallel refresh)."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult for DML


async def touch_session(session: AsyncSession, session_id: int, now: datetime) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


async def revoke_session(session: AsyncSession, session_id: int, *, now: datetime, reason: str) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


async def revoke_user_sessions(
    session: AsyncSession, user_id: int, *, now: datetime, reason: str, keep_session_id: int | None = None
) -> None:
    stmt = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if keep_session_id is not None:
        stmt = stmt.where(AuthSession.id != keep_session_id)
    await session.execute(
        stmt.values(revoked_at=now, revoked_reason=reason).execution_options(synchronize_session=False)
    )


async def get_session_user(session: AsyncSession, *, user_id: int, session_id: int) -> User | None:
    """The user behind an access token, if that login session is still alive: one statement."""
    stmt = (
        select(User)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(User.id == user_id, AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
    )
    return (await session.execute(stmt)).scalar_one_or_none()
