"""Teams and their members: all their SQL, and who may be a member."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.core.errors import InvalidReference, TeamExists, TeamNotFound
from app.db.base import utcnow
from app.models.team import Team
from app.models.user import Role, User
from app.schemas.team import TeamCreate, TeamUpdate

MEMBER_ROLES = frozenset({Role.agent, Role.admin})


async def get(session: AsyncSession, team_id: int) -> Team:
    """The team with its members loaded; 404 `team_not_found` when missing."""
    stmt = (
        select(Team)
        .where(Team.id == team_id)
        .options(selectinload(Team.members))
        .execution_options(populate_existing=True)
    )
    team = (await session.execute(stmt)).scalar_one_or_none()
    if team is None:
        raise TeamNotFound
    return team


async def exists(session: AsyncSession, team_id: int) -> bool:
    return (await session.execute(select(Team.id).where(Team.id == team_id))).first() is not None


async def list_page(session: AsyncSession, *, after_id: int | None, limit: int) -> list[Team]:
    """Keyset page ordered by id, members loaded; one extra row tells whether more follow."""
    stmt = select(Team).order_by(Team.id).limit(limit + 1).options(selectinload(Team.members))
    if after_id is not None:
        stmt = stmt.where(Team.id > after_id)
    return list((await session.execute(stmt)).scalars())


async def name_taken(session: AsyncSession, name: str, *, exclude_id: int | None = None) -> bool:
    stmt = select(Team.id).where(Team.name == name)
    if exclude_id is not None:
        stmt = stmt.where(Team.id != exclude_id)
    return (await session.execute(stmt.limit(1))).first() is not None


async def create(session: AsyncSession, body: TeamCreate) -> Team:
    if await name_taken(session, body.name):
        raise TeamExists
    team = Team(name=body.name, description=body.description, assignment=body.assignment, members=[])
    session.add(team)
    await _flush(session)
    return team


async def update(session: AsyncSession, team: Team, body: TeamUpdate) -> Team:
    if body.name is not None and body.name != team.name:
        if await name_taken(session, body.name, exclude_id=team.id):
            raise TeamExists
        team.name = body.name
    if "description" in body.model_fields_set:
        team.description = body.description
    if body.assignment is not None:
        team.assignment = body.assignment
    await _flush(session)
    return team


async def set_members(session: AsyncSession, team: Team, user_ids: Sequence[int]) -> Team:
    """Replace the member list (`team` loaded by `get`). Every id must be an active agent or admin."""
    wanted = set(user_ids)
    users = list((await session.execute(select(User).where(User.id.in_(wanted)).order_by(User.id))).scalars())
    if len(users) != len(wanted) or any(not u.is_active or u.role not in MEMBER_ROLES for u in users):
        raise InvalidReference("user_ids")
    team.members = users
    team.updated_at = utcnow()  # the row itself does not change, but the team as users see it does
    await session.flush()
    return team


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError:  # a concurrent create or rename to the same name won
        raise TeamExists from None
