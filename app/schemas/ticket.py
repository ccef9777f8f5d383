"""Ticket, message, timeline and rating schemas."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from app.models.ticket import Channel, Priority, TicketStatus
from app.schemas.common import ReadModel, RequestModel, clean_line, clean_text


def _tag(value: str) -> str:
    return clean_line(unicodedata.normalize("NFKC", value)).casefold()


Title = Annotated[str, Field(max_length=200), AfterValidator(clean_line)]
Body = Annotated[str, Field(max_length=50_000), AfterValidator(clean_text)]
TagName = Annotated[str, Field(max_length=50), AfterValidator(_tag)]
Tags = Annotated[list[TagName], Field(max_length=20)]
AttachmentIds = Annotated[list[int], Field(max_length=20)]


class TicketCreate(RequestModel):
    title: Title
    body: Body
    category_id: int | None = None
    priority: Priority | None = None
    tags: Tags | None = None
    attachment_ids: AttachmentIds | None = None
    # Agents only: a ticket on someone's behalf, and routing from the start.
    requester_id: int | None = None
    assignee_id: int | None = None
    team_id: int | None = None


class TicketUpdate(RequestModel):
    title: Title | None = None
    status: TicketStatus | None = None
    priority: Priority | None = None
    category_id: int | None = None
    assignee_id: int | None = None
    team_id: int | None = None
    tags: Tags | None = None


class MessageCreate(RequestModel):
    body: Body
    internal: bool = False
    attachment_ids: AttachmentIds | None = None


class MergeRequest(RequestModel):
    into_ticket_id: int


class RatingCreate(RequestModel):
    score: int = Field(ge=1, le=5)
    comment: Annotated[str, Field(max_length=2000), AfterValidator(clean_text)] | None = None


class UserRef(ReadModel):
    id: int
    display_name: str


class CategoryRef(ReadModel):
    id: int
    name: str


class TeamRef(ReadModel):
    id: int
    name: str


class TicketRef(ReadModel):
    id: int
    number: str


class RatingRead(ReadModel):
    score: int
    comment: str | None
    created_at: datetime
    updated_at: datetime


class TicketRead(ReadModel):
    id: int
    number: str
    title: str
    status: TicketStatus
    priority: Priority
    channel: Channel
    category: CategoryRef | None
    tags: list[str]
    requester: UserRef
    assignee: UserRef | None
    team: TeamRef | None
    created_at: datetime
    updated_at: datetime
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    first_responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    merged_into: TicketRef | None
    rating: RatingRead | None
    version: int

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_names(cls, value: Any) -> Any:
        return [getattr(tag, "name", tag) for tag in value]


class TicketListItem(TicketRead):
    """A ticket in a list; with `q`, `snippet` is the best matching text around the first
    match: HTML-escaped, matches wrapped in <mark>."""

    snippet: str | None = None


class AttachmentRead(ReadModel):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    url: str


class MessageRead(ReadModel):
    id: int
    ticket_id: int
    author: UserRef
    body: str
    internal: bool
    channel: Channel
    attachments: list[AttachmentRead]
    created_at: datetime

    @classmethod
    def build(cls, message: Any, url_for: Callable[[Any], str]) -> MessageRead:
        """From a Message with author and attachments loaded; `url_for` signs download links."""
        return cls(
            id=message.id,
            ticket_id=message.ticket_id,
            author=UserRef.model_validate(message.author),
            body=message.body,
            internal=message.internal,
            channel=message.channel,
            attachments=[
                AttachmentRead(
                    id=a.id,
                    filename=a.filename,
                    content_type=a.content_type,
                    size=a.size,
                    sha256=a.sha256,
                    url=url_for(a),
                )
                for a in message.attachments
            ],
            created_at=message.created_at,
        )


class TicketEventRead(ReadModel):
    id: int
    ticket_id: int
    type: str
    actor: UserRef | None
    internal: bool
    data: dict[str, Any]
    created_at: datetime
