"""SLA SQL: policies and their selection, the saved calendar row, per-ticket SLA rows, and the
conditional UPDATEs that claim an alert exactly once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import InvalidReference, SlaPolicyExists, SlaPolicyNotFound
from app.db.base import utcnow
from app.models.category import Category
from app.models.sla import BusinessCalendarRow, SlaPolicy, TicketSla
from app.models.ticket import Priority, Ticket
from app.schemas.sla import SlaPolicyCreate, SlaPolicyUpdate

CALENDAR_ROW_ID = 1

# --- policies -----------------------------------------------------------------------------------


async def get_policy(session: AsyncSession, policy_id: int) -> SlaPolicy:
    policy = await session.get(SlaPolicy, policy_id)
    if policy is None:
        raise SlaPolicyNotFound
    return policy


async def list_policies(session: AsyncSession, *, after_id: int | None, limit: int) -> list[SlaPolicy]:
    stmt = select(SlaPolicy).order_by(SlaPolicy.id).limit(limit + 1)
    if after_id is not None:
        stmt = stmt.where(SlaPolicy.id > after_id)
    return list((await session.execute(stmt)).scalars())


def _same_scope(priority: Priority, category_id: int | None) -> ColumnElement[bool]:
    scope = SlaPolicy.category_id.is_(None) if category_id is None else SlaPolicy.category_id == category_id
    return (SlaPolicy.priority == priority) & scope


async def _scope_taken(
    session: AsyncSession, priority: Priority, category_id: int | None, *, exclude_id: int | None
) -> bool:
    stmt = select(SlaPolicy.id).where(_same_scope(priority, category_id))
    if exclude_id is not None:
        stmt = stmt.where(SlaPolicy.id != exclude_id)
    return (await session.execute(stmt.limit(1))).first() is not None


async def _check_category(session: AsyncSession, category_id: int | None) -> None:
    if category_id is not None and await session.get(Category, category_id) is None:
        raise InvalidReference("category_id")


async def create_policy(session: AsyncSession, body: SlaPolicyCreate) -> SlaPolicy:
    await _check_category(session, body.category_id)
    if await _scope_taken(session, body.priority, body.category_id, exclude_id=None):
        raise SlaPolicyExists
    policy = SlaPolicy(
        name=body.name,
        priority=body.priority,
        category_id=body.category_id,
        first_response_minutes=body.first_response_minutes,
        resolution_minutes=body.resolution_minutes,
    )
    session.add(policy)
    await _flush(session)
    return policy


async def update_policy(session: AsyncSession, policy: SlaPolicy, body: SlaPolicyUpdate) -> SlaPolicy:
    sent = body.model_fields_set
    priority = body.priority if body.priority is not None else policy.priority
    category_id = body.category_id if "category_id" in sent else policy.category_id
    if category_id != policy.category_id:
        await _check_category(session, category_id)
    if (priority, category_id) != (policy.priority, policy.category_id) and await _scope_taken(
        session, priority, category_id, exclude_id=policy.id
    ):
        raise SlaPolicyExists
    policy.priority, policy.category_id = priority, category_id
    if body.name is not None:
        policy.name = body.name
    if "first_response_minutes" in sent:
        policy.first_response_minutes = body.first_response_minutes
    if "resolution_minutes" in sent:
        policy.resolution_minutes = body.resolution_minutes
    policy.updated_at = utcnow()
    await _flush(session)
    return policy


async def delete_policy(session: AsyncSession, policy: SlaPolicy) -> None:
    await session.delete(policy)
    await session.flush()


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError:  # a concurrent create for the same priority and category won
        raise SlaPolicyExists from None


PolicyRow = Row[int, Priority, int | None, int | None, int | None]  # id, priority, category, targets


async def policy_table(session: AsyncSession) -> tuple[list[PolicyRow], dict[int, int]]:
    """Every policy's scope and targets, and every subcategory's parent: all that choosing a
    ticket's policy reads (app/services/sla.py PolicyCache keeps it). Small tables: a policy
    per priority and category."""
    policies = select(
        SlaPolicy.id,
        SlaPolicy.priority,
        SlaPolicy.category_id,
        SlaPolicy.first_response_minutes,
        SlaPolicy.resolution_minutes,
    )
    parents = select(Category.id, Category.parent_id).where(Category.parent_id.is_not(None))
    rows = list((await session.execute(policies)).all())
    found = (await session.execute(parents)).all()
    return rows, {child: parent for child, parent in found if parent is not None}


def existing_policy_id(policy_id: int | ColumnElement[int]) -> Any:
    """`policy_id` if that policy still exists when the INSERT or UPDATE writing it runs, else
    NULL: a process's cached policies (PolicyCache) may name one that another process deleted a
    moment ago, and the foreign key would otherwise fail the whole ticket change. The ORM
    writes the expression into its statement; the attribute is expired after the flush."""
    return select(SlaPolicy.id).where(SlaPolicy.id == policy_id).scalar_subquery()


# --- the saved calendar -------------------------------------------------------------------------


async def calendar_revision(session: AsyncSession) -> int | None:
    stmt = select(BusinessCalendarRow.revision).where(BusinessCalendarRow.id == CALENDAR_ROW_ID)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_calendar(session: AsyncSession) -> BusinessCalendarRow | None:
    return await session.get(BusinessCalendarRow, CALENDAR_ROW_ID, populate_existing=True)


async def save_calendar(
    session: AsyncSession, document: dict[str, Any] | None, *, user_id: int | None
) -> BusinessCalendarRow:
    """Insert or replace the one row (`document=None`: back to the settings file). Its revision
    only grows, so other processes drop their cached copy; the row lock orders concurrent saves
    (two very first saves race on the primary key: one gets an error, nothing is half-written)."""
    row = await session.get(BusinessCalendarRow, CALENDAR_ROW_ID, with_for_update=True, populate_existing=True)
    now = utcnow()
    if row is None:
        row = BusinessCalendarRow(id=CALENDAR_ROW_ID, document=document, revision=1, updated_at=now)
        session.add(row)
    else:
        row.document, row.revision, row.updated_at = document, row.revision + 1, now
    row.updated_by_id = user_id
    await session.flush()
    return row


# --- per-ticket rows and alerts -----------------------------------------------------------------


async def ticket_sla(session: AsyncSession, ticket_id: int) -> TicketSla | None:
    return await session.get(TicketSla, ticket_id)


async def claim_alerts(
    session: AsyncSession,
    due_column: InstrumentedAttribute[datetime | None],
    sent_column: InstrumentedAttribute[datetime | None],
    *,
    now: datetime,
    limit: int,
    also_clear: tuple[InstrumentedAttribute[datetime | None], ...] = (),
) -> list[tuple[int, int | None]]:
    """Marks up to `limit` alerts that are due as sent; returns their (ticket id, policy id).

    `... WHERE sent IS NULL` in one UPDATE: on PostgreSQL a second worker running the same
    statement waits for the first one's row locks, re-checks the condition after its commit
    and skips the row; SQLite has one writer at a time. Either way one transaction wins each
    alert, and it writes the timeline event in that same transaction."""
    due = select(TicketSla.ticket_id).where(due_column <= now, sent_column.is_(None)).order_by(due_column).limit(limit)
    values: dict[Any, Any] = {sent_column: now, due_column: None}
    values.update(dict.fromkeys(also_clear))
    stmt = (
        update(TicketSla)
        .where(TicketSla.ticket_id.in_(due), sent_column.is_(None), due_column.is_not(None))
        .values(values)
        .returning(TicketSla.ticket_id, TicketSla.policy_id)
        .execution_options(synchronize_session=False)
    )
    return sorted((row[0], row[1]) for row in (await session.execute(stmt)).all())


async def tickets_by_id(session: AsyncSession, ids: list[int]) -> list[Ticket]:
    if not ids:
        return []
    stmt = select(Ticket).where(Ticket.id.in_(ids)).order_by(Ticket.id)
    return list((await session.execute(stmt)).scalars())
