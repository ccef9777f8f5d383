"""Single-use realtime tokens: all their SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.realtime_token import RealtimeToken


async def add(session: AsyncSession, *, token_hash: str, user_id: int, session_id: int, expires_at: datetime) -> None:
    session.add(RealtimeToken(token_hash=token_hash, user_id=user_id, session_id=session_id, expires_at=expires_at))
    await session.flush()


async def spend(session: AsyncSession, token_hash: str, *, now: datetime) -> tuple[int, int] | None:
    """(user_id, session_id) of a valid, unused token, which is now spent; None otherwise."""
    result = await session.execute(
        update(RealtimeToken)
        .where(RealtimeToken.token_hash == token_hash, RealtimeToken.used_at.is_(None), RealtimeToken.expires_at > now)
        .values(used_at=now)
        .returning(RealtimeToken.user_id, RealtimeToken.session_id)
        .execution_options(synchronize_session=False)
    )
    row = result.first()
    return (int(row[0]), int(row[1])) if row else None
