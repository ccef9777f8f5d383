"""Tags: listing and deletion. Tickets create them (crud_ticket.get_or_create_tags)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import TagNotFound
from app.models.tag import Tag, ticket_tags


async def get(session: AsyncSession, tag_id: int) -> Tag:
    tag = await session.get(Tag, tag_id)
    if tag is None:
        raise TagNotFound
    return tag


async def list_page(session: AsyncSession, *, prefix: str | None, after_name: str | None, limit: int) -> list[Tag]:
    """Keyset page ordered by name (unique and never renamed); one extra row tells whether
    more follow. `prefix` is matched literally (LIKE wildcards escaped)."""
    stmt = select(Tag).order_by(Tag.name).limit(limit + 1)
    if prefix:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Tag.name.like(f"{escaped}%", escape="\\"))
    if after_name is not None:
        stmt = stmt.where(Tag.name > after_name)
    return list((await session.execute(stmt)).scalars())


async def delete_tag(session: AsyncSession, tag: Tag) -> None:
    """Delete the tag and take it off every ticket (explicitly, not only by the FK's cascade)."""
    await session.execute(delete(ticket_tags).where(ticket_tags.c.tag_id == tag.id))
    await session.delete(tag)
    await session.flush()
