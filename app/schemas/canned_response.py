"""Canned response schemas: reply templates, and the text rendered for one ticket."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from app.schemas.common import ReadModel, RequestModel, clean_line, clean_text

CannedTitle = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(clean_line)]
CannedBody = Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(clean_text)]


class CannedResponseCreate(RequestModel):
    title: CannedTitle
    # May hold variables such as {{ticket.number}}; see app/services/canned_response.py.
    body: CannedBody
    # None: shared by every team.
    team_id: int | None = None


class CannedResponseUpdate(RequestModel):
    """All optional; `team_id: null` makes it shared, `null` for `title` or `body` changes nothing."""

    title: CannedTitle | None = None
    body: CannedBody | None = None
    team_id: int | None = None


class CannedResponseRead(ReadModel):
    id: int
    title: str
    body: str
    team_id: int | None
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime


class RenderRequest(RequestModel):
    ticket_id: int


class RenderedResponse(BaseModel):
    body: str
