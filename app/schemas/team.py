"""Team schemas: teams of agents and their members."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from app.models.team import AssignmentStrategy
from app.schemas.common import ReadModel, RequestModel, clean_line, clean_text
from app.schemas.ticket import UserRef

TeamName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(clean_line)]
Description = Annotated[str, Field(max_length=255), AfterValidator(clean_text)]


class TeamCreate(RequestModel):
    name: TeamName
    description: Description | None = None
    # How tickets routed to the team (by their category) are handed to its members.
    assignment: AssignmentStrategy = AssignmentStrategy.none


class TeamUpdate(RequestModel):
    """All optional; `description: null` clears it, `null` for `name` or `assignment` changes nothing."""

    name: TeamName | None = None
    description: Description | None = None
    assignment: AssignmentStrategy | None = None


class TeamMembersUpdate(RequestModel):
    """The complete new member list (replaces the old one); only active agents and admins."""

    user_ids: Annotated[list[int], Field(max_length=500)]


class TeamRead(ReadModel):
    id: int
    name: str
    description: str | None
    assignment: AssignmentStrategy
    members: list[UserRef]
    created_at: datetime
    updated_at: datetime
