"""Canned responses: all their SQL."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import CannedResponseNotFound
from app.models.canned_response import CannedResponse


async def get(session: AsyncSession, canned_id: int) -> CannedResponse:
    canned = await session.get(CannedResponse, canned_id)
    if canned is None:
        raise CannedResponseNotFound
    return canned


async def list_page(
    session: AsyncSession, *, team_id: int | None, after_id: int | None, limit: int
) -> list[CannedResponse]:
    """Keyset page ordered by id; one extra row tells whether more follow."""
    stmt = select(CannedResponse).order_by(CannedResponse.id).limit(limit + 1)
    if team_id is not None:
        stmt = stmt.where(CannedResponse.team_id == team_id)
    if after_id is not None:
        stmt = stmt.where(CannedResponse.id > after_id)
    return list((await session.execute(stmt)).scalars())


async def add(session: AsyncSession, canned: CannedResponse) -> CannedResponse:
    session.add(canned)
    await session.flush()
    return canned


async def delete_canned(session: AsyncSession, canned: CannedResponse) -> None:
    await session.delete(canned)
    await session.flush()
