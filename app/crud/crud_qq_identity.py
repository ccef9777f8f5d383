"""QQ identities (`external_identities` rows with provider `qq`) and one-time binding codes:
all their SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.qq import QQBindingCode
from app.models.ticket import Ticket
from app.models.user import ExternalIdentity, IdentityProvider, User

QQ = IdentityProvider.qq


# --- identities ---------------------------------------------------------------------------


async def get_identity(session: AsyncSession, external_id: str) -> tuple[ExternalIdentity, User] | None:
    """The QQ identity and the account it is linked to, in one statement."""
    stmt = (
        select(ExternalIdentity, User)
        .join(User, User.id == ExternalIdentity.user_id)
        .where(ExternalIdentity.provider == QQ, ExternalIdentity.external_id == external_id)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row is not None else None


async def add_identity(session: AsyncSession, *, user_id: int, external_id: str, nickname: str | None) -> None:
    session.add(ExternalIdentity(user_id=user_id, provider=QQ, external_id=external_id, nickname=nickname))
    await session.flush()


async def count_other_identities(session: AsyncSession, user_id: int, *, except_id: int) -> int:
    """How many identities (any provider) the user has besides `except_id`."""
    stmt = (
        select(func.count())
        .select_from(ExternalIdentity)
        .where(ExternalIdentity.user_id == user_id, ExternalIdentity.id != except_id)
    )
    return int((await session.execute(stmt)).scalar_one())


async def delete_identities(session: AsyncSession, user_id: int, *, keep_external_id: str | None = None) -> int:
    """Unlinks the user's QQ accounts (all, or all but `keep_external_id`); how many went."""
    stmt = delete(ExternalIdentity).where(ExternalIdentity.user_id == user_id, ExternalIdentity.provider == QQ)
    if keep_external_id is not None:
        stmt = stmt.where(ExternalIdentity.external_id != keep_external_id)
    result = await session.execute(stmt.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult for DML


async def requested_ticket_ids(session: AsyncSession, user_id: int) -> list[int]:
    """Every ticket the user is the requester of (an auto-created QQ account's, before they move
    to the web account it binds to); oldest first, so the timeline events come in order."""
    stmt = select(Ticket.id).where(Ticket.requester_id == user_id).order_by(Ticket.id)
    return list((await session.execute(stmt)).scalars())


# --- binding codes ------------------------------------------------------------------------


async def add_code(session: AsyncSession, *, user_id: int, code_hash: str, expires_at: datetime) -> None:
    session.add(QQBindingCode(user_id=user_id, code_hash=code_hash, expires_at=expires_at))
    await session.flush()


async def delete_codes(session: AsyncSession, *, user_id: int, now: datetime) -> None:
    """Drops the user's earlier codes (a new one replaces them) and anyone's expired ones (they
    can never be used; nothing else cleans them up)."""
    await session.execute(
        delete(QQBindingCode)
        .where((QQBindingCode.user_id == user_id) | (QQBindingCode.expires_at <= now))
        .execution_options(synchronize_session=False)
    )


async def get_code(session: AsyncSession, code_hash: str) -> QQBindingCode | None:
    stmt = select(QQBindingCode).where(QQBindingCode.code_hash == code_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def spend_code(session: AsyncSession, code_id: int, now: datetime) -> bool:
    """Marks the code used if it is still unused and unexpired; False when a parallel attempt
    spent it first (the conditional UPDATE is what makes a code single use under races)."""
    result = await session.execute(
        update(QQBindingCode)
        .where(QQBindingCode.id == code_id, QQBindingCode.used_at.is_(None), QQBindingCode.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult for DML
