"""Users and external identities: all their SQL."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import ExternalIdentity, IdentityProvider, Role, User


async def get(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_by_username(session: AsyncSession, username: str) -> User | None:
    return (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def username_exists(session: AsyncSession, username: str) -> bool:
    found = await session.execute(select(User.id).where(User.username == username))
    return found.first() is not None


async def list_page(session: AsyncSession, *, role: Role | None, after_id: int | None, limit: int) -> list[User]:
    """Keyset page ordered by id; fetches one extra row to tell whether another page follows."""
    stmt = select(User).order_by(User.id).limit(limit + 1)
    if role is not None:
        stmt = stmt.where(User.role == role)
    if after_id is not None:
        stmt = stmt.where(User.id > after_id)
    return list((await session.execute(stmt)).scalars())


async def count_active_admins(session: AsyncSession) -> int:
    stmt = select(func.count()).select_from(User).where(User.role == Role.admin, User.is_active.is_(True))
    return int((await session.execute(stmt)).scalar_one())


async def add(session: AsyncSession, user: User) -> User:
    session.add(user)
    await session.flush()
    return user


async def get_by_identity(session: AsyncSession, provider: IdentityProvider, external_id: str) -> User | None:
    stmt = (
        select(User)
        .join(ExternalIdentity, ExternalIdentity.user_id == User.id)
        .where(ExternalIdentity.provider == provider, ExternalIdentity.external_id == external_id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_identity(session: AsyncSession, provider: IdentityProvider, external_id: str) -> ExternalIdentity | None:
    stmt = select(ExternalIdentity).where(
        ExternalIdentity.provider == provider, ExternalIdentity.external_id == external_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def refresh_computed(session: AsyncSession, user: User) -> None:
    """Reload qq_bound, which SQLAlchemy expires on flush (it is a SQL expression)."""
    await session.refresh(user, attribute_names=["qq_bound"])
