"""Category schemas: what admins send and what every user gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from app.schemas.common import ReadModel, RequestModel, clean_line, clean_text

CategoryName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(clean_line)]
Description = Annotated[str, Field(max_length=255), AfterValidator(clean_text)]


class CategoryCreate(RequestModel):
    name: CategoryName
    # A parent must itself be a top-level category: one level of nesting.
    parent_id: int | None = None
    description: Description | None = None
    # Tickets filed under the category go to this team (a subcategory without one: its parent's).
    team_id: int | None = None


class CategoryUpdate(RequestModel):
    """All optional. `parent_id: null` moves the category to the top level and
    `description: null` clears it, `team_id: null` unmaps it; `null` for `name` or `is_active`
    changes nothing."""

    name: CategoryName | None = None
    parent_id: int | None = None
    description: Description | None = None
    is_active: bool | None = None
    team_id: int | None = None


class CategoryRead(ReadModel):
    id: int
    name: str
    parent_id: int | None
    description: str | None
    is_active: bool
    team_id: int | None
    created_at: datetime
    updated_at: datetime
