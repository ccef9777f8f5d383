"""Categories: their SQL, and the rules that keep the tree valid.

The tree is at most two levels deep (a parent is always a top-level category), names are
unique per parent, and an active category never has an inactive parent, so "is this category
active?" is the whole question a ticket or a customer's picker needs to ask.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import CategoryExists, CategoryNotFound, FieldProblem, InvalidReference
from app.db.base import utcnow
from app.models.category import Category
from app.models.team import Team
from app.models.user import Role, User
from app.schemas.category import CategoryCreate, CategoryUpdate


async def get(session: AsyncSession, category_id: int) -> Category:
    category = await session.get(Category, category_id)
    if category is None:
        raise CategoryNotFound
    return category


async def get_visible(session: AsyncSession, category_id: int, user: User) -> Category:
    """Customers see active categories only; an inactive one is 404 to them like a missing one."""
    category = await session.get(Category, category_id)
    if category is None or (user.role == Role.customer and not category.is_active):
        raise CategoryNotFound
    return category


async def list_page(
    session: AsyncSession, *, include_inactive: bool, after_id: int | None, limit: int
) -> list[Category]:
    """Keyset page ordered by id; fetches one extra row to tell whether another page follows."""
    stmt = select(Category).order_by(Category.id).limit(limit + 1)
    if not include_inactive:
        stmt = stmt.where(Category.is_active.is_(True))
    if after_id is not None:
        stmt = stmt.where(Category.id > after_id)
    return list((await session.execute(stmt)).scalars())


def _same_parent(parent_id: int | None) -> ColumnElement[bool]:
    return Category.parent_id.is_(None) if parent_id is None else Category.parent_id == parent_id


async def name_taken(session: AsyncSession, name: str, parent_id: int | None, *, exclude_id: int | None = None) -> bool:
    # Checked here, not only by uq_categories_parent_id_name: NULLs are distinct in a unique
    # constraint, so the database alone lets two top-level categories share a name.
    stmt = select(Category.id).where(Category.name == name, _same_parent(parent_id))
    if exclude_id is not None:
        stmt = stmt.where(Category.id != exclude_id)
    return (await session.execute(stmt.limit(1))).first() is not None


async def has_children(session: AsyncSession, category_id: int) -> bool:
    stmt = select(Category.id).where(Category.parent_id == category_id).limit(1)
    return (await session.execute(stmt)).first() is not None


async def _parent(session: AsyncSession, parent_id: int | None, *, child: Category | None) -> Category | None:
    """The parent named by `parent_id`, checked against the one-level rule."""
    if parent_id is None:
        return None
    if child is not None and parent_id == child.id:
        raise InvalidReference("parent_id")
    parent = await session.get(Category, parent_id)
    if parent is None:
        raise InvalidReference("parent_id")
    if parent.parent_id is not None:
        raise FieldProblem("parent_id", "nesting_too_deep")
    if child is not None and await has_children(session, child.id):
        raise FieldProblem("parent_id", "nesting_too_deep")
    return parent


async def create(session: AsyncSession, body: CategoryCreate) -> Category:
    parent = await _parent(session, body.parent_id, child=None)
    if parent is not None and not parent.is_active:
        raise FieldProblem("parent_id", "parent_inactive")
    await _check_team(session, body.team_id)
    if await name_taken(session, body.name, body.parent_id):
        raise CategoryExists
    category = Category(
        name=body.name, parent_id=body.parent_id, description=body.description, is_active=True, team_id=body.team_id
    )
    session.add(category)
    await _flush(session)
    return category


async def update(session: AsyncSession, category: Category, body: CategoryUpdate) -> Category:
    sent = body.model_fields_set
    name = body.name if body.name is not None else category.name
    parent_id = body.parent_id if "parent_id" in sent else category.parent_id
    is_active = body.is_active if body.is_active is not None else category.is_active
    moved = parent_id != category.parent_id

    if moved:
        parent = await _parent(session, parent_id, child=category)
    else:
        parent = await session.get(Category, parent_id) if parent_id is not None else None
    if is_active and parent is not None and not parent.is_active:
        raise FieldProblem("parent_id" if moved else "is_active", "parent_inactive")
    if (name != category.name or moved) and await name_taken(session, name, parent_id, exclude_id=category.id):
        raise CategoryExists
    if category.is_active and not is_active:
        await _deactivate_children(session, category.id)

    category.name, category.parent_id, category.is_active = name, parent_id, is_active
    if "description" in sent:
        category.description = body.description
    if "team_id" in sent and body.team_id != category.team_id:
        await _check_team(session, body.team_id)
        category.team_id = body.team_id
    await _flush(session)
    return category


async def _check_team(session: AsyncSession, team_id: int | None) -> None:
    if team_id is not None and await session.get(Team, team_id) is None:
        raise InvalidReference("team_id")


async def _deactivate_children(session: AsyncSession, category_id: int) -> None:
    """Deactivating a parent deactivates its children (reactivating it does not bring them back)."""
    await session.execute(
        sql_update(Category)
        .where(Category.parent_id == category_id, Category.is_active.is_(True))
        .values(is_active=False, updated_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError:  # a concurrent create or rename of the same name under the same parent won
        raise CategoryExists from None
