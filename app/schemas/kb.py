"""Knowledge-base schemas: articles (markdown), their list items, and search hits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from app.models.kb import KbStatus
from app.schemas.common import ReadModel, RequestModel, clean_line, clean_text

KbTitle = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(clean_line)]
KbBody = Annotated[str, Field(min_length=1, max_length=100_000), AfterValidator(clean_text)]


class KbArticleCreate(RequestModel):
    title: KbTitle
    # Markdown, stored as written; clients render it (and must sanitise the HTML they make).
    body: KbBody
    status: KbStatus = KbStatus.draft
    category_id: int | None = None


class KbArticleUpdate(RequestModel):
    """All optional; `category_id: null` clears the category, `null` elsewhere changes nothing."""

    title: KbTitle | None = None
    body: KbBody | None = None
    status: KbStatus | None = None
    category_id: int | None = None


class KbArticleListItem(ReadModel):
    id: int
    title: str
    status: KbStatus
    category_id: int | None
    author_id: int | None
    created_at: datetime
    updated_at: datetime
    version: int


class KbArticleRead(KbArticleListItem):
    body: str


class KbSearchHit(ReadModel):
    id: int
    title: str
    status: KbStatus
    category_id: int | None
    updated_at: datetime
    # HTML-escaped excerpt of the body (or of the title when only it matches), each match
    # wrapped in <mark>.
    snippet: str


class KbSearchResults(BaseModel):
    """The best matches, best first (no cursor: a search answers its top `limit`)."""

    items: list[KbSearchHit]
