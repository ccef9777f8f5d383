"""Knowledge base: staff write articles, everyone signed in reads and searches the ones they
may see (customers: published only; a draft is 404 to them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse

from app.api.v1.dependencies import (
    Context,
    CurrentUser,
    IdempotencyKey,
    PageDep,
    SessionDep,
    StaffUser,
    idempotent_create,
)
from app.api.v1.endpoints.tickets import IfMatch
from app.core.errors import (
    Forbidden,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidReference,
    KbArticleNotFound,
    VersionConflict,
    problem_responses,
)
from app.core.pagination import after_id, id_page
from app.crud import crud_kb
from app.models.kb import KbArticle, KbStatus
from app.schemas.common import Page
from app.schemas.kb import (
    KbArticleCreate,
    KbArticleListItem,
    KbArticleRead,
    KbArticleUpdate,
    KbSearchHit,
    KbSearchResults,
)
from app.services.knowledge_base import KbHit

router = APIRouter(prefix="/kb", tags=["knowledge base"])


def _etag(response: Response, article: KbArticle) -> None:
    response.headers["ETag"] = f'"{article.version}"'


@router.get("/articles", response_model=Page[KbArticleListItem], responses=problem_responses(InvalidCursor))
async def list_articles(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    status_: Annotated[KbStatus | None, Query(alias="status")] = None,
    category_id: int | None = None,
) -> Page[KbArticleListItem]:
    """Newest first, without bodies. Customers see published articles only (`status=draft`
    gives them an empty list)."""
    rows = await crud_kb.list_page(
        session, user, status=status_, category_id=category_id, before_id=after_id(page.cursor), limit=page.limit
    )
    rows, next_cursor = id_page(rows, page.limit)
    return Page[KbArticleListItem](items=[KbArticleListItem.model_validate(a) for a in rows], next_cursor=next_cursor)


@router.post(
    "/articles",
    response_model=KbArticleRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(Forbidden, InvalidReference, IdempotencyKeyReused, IdempotencyKeyInProgress),
)
async def create_article(
    body: KbArticleCreate,
    request: Request,
    staff: StaffUser,
    ctx: Context,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A draft unless `status` says `published`."""

    async def create() -> Any:
        return KbArticleRead.model_validate(await ctx.kb.create(session, body, actor=staff))

    return await idempotent_create(session, request, user=staff, key=idempotency_key, create=create)


@router.get("/articles/{article_id}", response_model=KbArticleRead, responses=problem_responses(KbArticleNotFound))
async def read_article(article_id: int, user: CurrentUser, session: SessionDep, response: Response) -> KbArticle:
    article = await crud_kb.get_readable(session, article_id, user)
    _etag(response, article)
    return article


@router.patch(
    "/articles/{article_id}",
    response_model=KbArticleRead,
    responses=problem_responses(Forbidden, KbArticleNotFound, InvalidReference, VersionConflict),
)
async def update_article(
    article_id: int,
    body: KbArticleUpdate,
    staff: StaffUser,
    ctx: Context,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> KbArticle:
    """`If-Match: "<version>"` (the ETag of the read) makes a stale write 412."""
    article = await crud_kb.get_readable(session, article_id, staff)
    article = await ctx.kb.update(session, article, body, expected_version=if_match)
    _etag(response, article)
    return article


@router.delete(
    "/articles/{article_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(Forbidden, KbArticleNotFound),
)
async def delete_article(article_id: int, staff: StaffUser, ctx: Context, session: SessionDep) -> Response:
    article = await crud_kb.get_readable(session, article_id, staff)
    await ctx.kb.delete(session, article)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/search", response_model=KbSearchResults)
async def search_articles(
    user: CurrentUser,
    ctx: Context,
    session: SessionDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> KbSearchResults:
    """The best `limit` articles the caller may read holding every word of `q`, best first
    (title words weigh double); a 1-2 character query that is not a word matches as a
    substring, newest first. `snippet` is HTML-escaped with the matches in <mark>."""
    hits = await ctx.kb.search(session, q, user=user, limit=limit)
    return KbSearchResults(items=[_search_hit(hit) for hit in hits])


def _search_hit(hit: KbHit) -> KbSearchHit:
    a = hit.article
    return KbSearchHit(
        id=a.id, title=a.title, status=a.status, category_id=a.category_id, updated_at=a.updated_at, snippet=hit.snippet
    )
