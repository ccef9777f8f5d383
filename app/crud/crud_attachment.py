"""Attachments: who may download what (the ticket rule from crud_ticket, plus internal notes)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.crud import crud_ticket
from app.models.attachment import Attachment
from app.models.ticket import Message, Ticket
from app.models.user import Role, User


def visible_to(user: User) -> ColumnElement[bool]:
    """Whoever may read the attachment's ticket, except that customers never see what is
    attached to an internal note; an upload not attached yet only its uploader."""
    own_unattached = and_(Attachment.ticket_id.is_(None), Attachment.uploader_id == user.id)
    # crud_ticket.readable_by is the one rule for tickets; correlated on the attachment's ticket.
    on_readable_ticket = crud_ticket.readable_by(user).where(Ticket.id == Attachment.ticket_id).exists()
    if user.role in (Role.agent, Role.admin):
        return or_(own_unattached, on_readable_ticket)
    on_internal_note = exists().where(Message.id == Attachment.message_id, Message.internal.is_(True))
    return or_(own_unattached, and_(on_readable_ticket, ~on_internal_note))


async def get_readable(session: AsyncSession, attachment_id: int, user: User) -> Attachment | None:
    stmt = select(Attachment).where(Attachment.id == attachment_id, visible_to(user))
    return (await session.execute(stmt)).scalar_one_or_none()
