"""Canned responses: creating and changing them, and rendering one for a ticket.

Rendering is plain string substitution of `{{name}}` placeholders (whitespace inside the
braces allowed) from a fixed table of values; there is no template engine, so nothing in a
template or in a ticket can run code or reach attributes we did not list. Substitution is a
single pass: a value that itself contains `{{...}}` (a ticket title, say) is inserted as it
is and never expanded. Unknown names are left untouched, so a typo stays visible to the agent.
"""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidReference
from app.crud import crud_canned_response, crud_team
from app.models.canned_response import CannedResponse
from app.models.ticket import Ticket
from app.models.user import User
from app.schemas.canned_response import CannedResponseCreate, CannedResponseUpdate

_PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)[ \t]*\}\}")


async def create(session: AsyncSession, body: CannedResponseCreate, *, actor: User) -> CannedResponse:
    if body.team_id is not None and not await crud_team.exists(session, body.team_id):
        raise InvalidReference("team_id")
    canned = CannedResponse(title=body.title, body=body.body, team_id=body.team_id, created_by_id=actor.id)
    return await crud_canned_response.add(session, canned)


async def update(session: AsyncSession, canned: CannedResponse, body: CannedResponseUpdate) -> CannedResponse:
    sent = body.model_fields_set
    if body.title is not None:
        canned.title = body.title
    if body.body is not None:
        canned.body = body.body
    if "team_id" in sent and body.team_id != canned.team_id:
        if body.team_id is not None and not await crud_team.exists(session, body.team_id):
            raise InvalidReference("team_id")
        canned.team_id = body.team_id
    await session.flush()
    return canned


def variables(ticket: Ticket, *, agent: User) -> dict[str, str]:
    """The values a template may use. `ticket` must come with requester, assignee, category and
    team loaded (crud_ticket.get_readable does that); `agent` is whoever renders it."""
    return {
        "ticket.id": str(ticket.id),
        "ticket.number": ticket.number,
        "ticket.title": ticket.title,
        "ticket.status": ticket.status.value,
        "ticket.priority": ticket.priority.value,
        "ticket.category": ticket.category.name if ticket.category is not None else "",
        "requester.display_name": ticket.requester.display_name,
        "assignee.display_name": ticket.assignee.display_name if ticket.assignee is not None else "",
        "team.name": ticket.team.name if ticket.team is not None else "",
        "agent.display_name": agent.display_name,
    }


def render(template: str, values: dict[str, str]) -> str:
    """`template` with every known `{{ name }}` replaced by its value, in one pass."""

    def substitute(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return _PLACEHOLDER.sub(substitute, template)


def render_for_ticket(canned: CannedResponse, ticket: Ticket, *, agent: User) -> str:
    return render(canned.body, variables(ticket, agent=agent))
