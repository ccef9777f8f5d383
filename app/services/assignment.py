"""Auto-assignment: a ticket filed under a category that belongs to a team goes to that team and,
by the team's strategy, to one of its members.

TicketService calls `AutoAssigner.apply` when a ticket has a category and no assignee: after a
create, and after an update that sets or changes the category (unless the same request chose
the assignee). `apply` changes the ticket's routing and returns the data of the internal
`ticket.assigned` event, which TicketService records with no actor (the system did it).

Candidates are the team's active members with role agent or admin (membership already allows
nothing else, but a member may have been deactivated or demoted since). A team with no
candidate, or with strategy `none`, still gets the ticket, unassigned.

Fairness under concurrency: the team row is read `FOR UPDATE` before a member is picked, so on
PostgreSQL two transactions assigning for one team take turns, and the second sees the first's
round-robin cursor and ticket counts once it commits. SQLite has one writer at a time anyway
(write transactions begin IMMEDIATE) and ignores `FOR UPDATE`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.category import Category
from app.models.team import AssignmentStrategy, Team, team_members
from app.models.ticket import Ticket, TicketStatus
from app.models.user import Role, User

# Tickets someone still has to work on: what `least_open` counts, and the only ones assigned.
OPEN_STATUSES = (TicketStatus.new, TicketStatus.open, TicketStatus.pending)
CANDIDATE_ROLES = (Role.agent, Role.admin)


class AutoAssigner:
    async def apply(self, session: AsyncSession, ticket: Ticket) -> dict[str, Any] | None:
        """Route `ticket` by its category's team; the `ticket.assigned` data, or None when
        nothing changed. Only fields that changed appear, as `[old, new]`, as in `update`."""
        if ticket.category_id is None or ticket.assignee_id is not None or ticket.status not in OPEN_STATUSES:
            return None
        team_id = await _category_team(session, ticket.category_id)
        if team_id is None or (ticket.team_id is not None and ticket.team_id != team_id):
            # No mapping, or a person routed the ticket to another team: theirs is the decision.
            return None
        strategy, assignee_id = await _pick(session, team_id)
        data: dict[str, Any] = {}
        if assignee_id is not None:
            data["assignee_id"] = [None, assignee_id]
            ticket.assignee_id = assignee_id
        if ticket.team_id != team_id:
            data["team_id"] = [ticket.team_id, team_id]
            ticket.team_id = team_id
        if not data:
            return None
        return {**data, "automatic": True, "strategy": strategy.value}


async def _category_team(session: AsyncSession, category_id: int) -> int | None:
    """The category's team, or its parent's when it has none (subcategories inherit routing).
    TicketService has just checked the category, so these come from the identity map."""
    category = await session.get(Category, category_id)
    if category is None:
        return None
    if category.team_id is None and category.parent_id is not None:
        parent = await session.get(Category, category.parent_id)
        return parent.team_id if parent is not None else None
    return category.team_id


async def _pick(session: AsyncSession, team_id: int) -> tuple[AssignmentStrategy, int | None]:
    """The team's strategy and the member it picks (None: nobody to pick, or strategy `none`)."""
    locked = select(Team.assignment, Team.last_assigned_user_id).where(Team.id == team_id).with_for_update()
    row = (await session.execute(locked)).one_or_none()
    if row is None:
        return AssignmentStrategy.none, None
    strategy, last = AssignmentStrategy(row.assignment), row.last_assigned_user_id
    candidates = (
        select(User.id)
        .join(team_members, team_members.c.user_id == User.id)
        .where(team_members.c.team_id == team_id, User.is_active.is_(True), User.role.in_(CANDIDATE_ROLES))
    )
    if strategy == AssignmentStrategy.round_robin:
        # The first member after the last one assigned, by id; past the end, the first one.
        after_last = case((User.id > last, 0), else_=1) if last is not None else None
        order = (after_last, User.id) if after_last is not None else (User.id,)
        picked = (await session.execute(candidates.order_by(*order).limit(1))).scalar_one_or_none()
        if picked is not None:
            # Bookkeeping, not a change users see: `updated_at` stays.
            await session.execute(
                sql_update(Team)
                .where(Team.id == team_id)
                .values(last_assigned_user_id=picked, updated_at=Team.updated_at)
                .execution_options(synchronize_session=False)
            )
        return strategy, picked
    if strategy == AssignmentStrategy.least_open:
        # One aggregate: each candidate's open tickets (in any team), fewest first, ties by id.
        load = (
            candidates.outerjoin(Ticket, and_(Ticket.assignee_id == User.id, Ticket.status.in_(OPEN_STATUSES)))
            .group_by(User.id)
            .order_by(func.count(Ticket.id), User.id)
            .limit(1)
        )
        return strategy, (await session.execute(load)).scalar_one_or_none()
    return strategy, None
