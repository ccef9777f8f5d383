"""Tags: staff list them (for filters and autocompletion), admins delete them. Tickets create
them implicitly when they are tagged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.v1.dependencies import AdminUser, PageDep, SessionDep, StaffUser
from app.core.errors import Forbidden, InvalidCursor, TagNotFound, problem_responses
from app.core.pagination import decode_cursor, encode_cursor
from app.crud import crud_tag
from app.schemas.common import Page
from app.schemas.tag import TagRead, normalize_prefix

router = APIRouter(prefix="/tags", tags=["tags"])


@router.get("", response_model=Page[TagRead], responses=problem_responses(Forbidden, InvalidCursor))
async def list_tags(
    staff: StaffUser,
    session: SessionDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=50, description="name prefix")] = None,
) -> Page[TagRead]:
    """Sorted by name; `q` keeps the tags whose name starts with it (compared as tags are stored)."""
    after_name = None
    if page.cursor is not None:
        after_name = decode_cursor(page.cursor).get("name")
        if not isinstance(after_name, str):
            raise InvalidCursor
    rows = await crud_tag.list_page(session, prefix=normalize_prefix(q), after_name=after_name, limit=page.limit)
    next_cursor = encode_cursor({"name": rows[page.limit - 1].name}) if len(rows) > page.limit else None
    return Page[TagRead](items=[TagRead.model_validate(t) for t in rows[: page.limit]], next_cursor=next_cursor)


@router.delete("/{tag_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(Forbidden, TagNotFound))
async def delete_tag(tag_id: int, admin: AdminUser, session: SessionDep) -> Response:
    """Deletes the tag and removes it from every ticket that carries it."""
    tag = await crud_tag.get(session, tag_id)
    await crud_tag.delete_tag(session, tag)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
