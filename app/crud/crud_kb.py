"""Knowledge-base articles: all their SQL, including who may read what and full-text matching.

Customers read published articles only (a draft is 404 to them, like a missing article); staff
read everything. Matching works on `tokens` (segmented text, see
app/services/knowledge_base.py) as ticket search does on its documents: SQLite through the
FTS5 table `kb_articles_fts` (rowid = kb_articles.id), PostgreSQL through the stored
`tokens_fts` tsvector and its GIN index (migration 0014_knowledge_base); the terms go in
quoted or bound exactly as in app/crud/crud_search.py.

The index only narrows the candidates; what counts is the same plain SQL on both databases:
how many times each term occurs as a whole token in `tokens`. So an article is a hit on
SQLite exactly when it is one on PostgreSQL, and both rank hits alike (integer keys, no
floating-point scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    case,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from app.core.errors import KbArticleNotFound
from app.crud.crud_search import fts5_query, is_sqlite, like_pattern, tsquery
from app.models.category import Category
from app.models.kb import KbArticle, KbStatus
from app.models.user import Role, User

# The FTS5 table (SQLite only), joined through its rowid and named in MATCH.
_FTS = table("kb_articles_fts", column("rowid", Integer))
# The stored tsvector (PostgreSQL only).
_TSV: ColumnElement[Any] = literal_column("kb_articles.tokens_fts")


# --- visibility ----------------------------------------------------------------------------


def readable_by(user: User) -> Select[KbArticle]:
    """The articles `user` may read: every list, search and single read starts here."""
    stmt = select(KbArticle)
    if user.role == Role.customer:
        stmt = stmt.where(KbArticle.status == KbStatus.published)
    return stmt


def published() -> Select[KbArticle]:
    """What grounds AI answers: published articles, whoever asks."""
    return select(KbArticle).where(KbArticle.status == KbStatus.published)


async def get_readable(session: AsyncSession, article_id: int, user: User) -> KbArticle:
    stmt = readable_by(user).where(KbArticle.id == article_id)
    article = (await session.execute(stmt)).scalar_one_or_none()
    if article is None:
        raise KbArticleNotFound
    return article


async def list_page(
    session: AsyncSession,
    user: User,
    *,
    status: KbStatus | None,
    category_id: int | None,
    before_id: int | None,
    limit: int,
) -> list[KbArticle]:
    """Keyset page, newest first (by id: immutable, so a walk returns every article once);
    one extra row tells whether more follow. Bodies are not loaded: lists do not show them."""
    stmt = (
        readable_by(user).options(defer(KbArticle.body, raiseload=True)).order_by(KbArticle.id.desc()).limit(limit + 1)
    )
    if status is not None:
        stmt = stmt.where(KbArticle.status == status)
    if category_id is not None:
        stmt = stmt.where(KbArticle.category_id == category_id)
    if before_id is not None:
        stmt = stmt.where(KbArticle.id < before_id)
    return list((await session.execute(stmt)).scalars())


async def category_exists(session: AsyncSession, category_id: int) -> bool:
    return (await session.execute(select(Category.id).where(Category.id == category_id))).first() is not None


async def add(session: AsyncSession, article: KbArticle) -> KbArticle:
    session.add(article)
    await session.flush()
    return article


async def delete_article(session: AsyncSession, article: KbArticle) -> None:
    await session.delete(article)
    await session.flush()


# --- matching ------------------------------------------------------------------------------


def occurrences(term: str) -> ColumnElement[Any]:
    """How many times `term` is a whole token of `tokens`: the characters removing
    " term " takes away, over its length. Tokens are padded to two spaces apart first, so
    neighbours ("vpn vpn") do not share a space and both count."""
    padded = literal(" ") + func.replace(KbArticle.tokens, literal(" "), literal("  ")) + literal(" ")
    needle = f" {term} "
    removed = func.length(padded) - func.length(func.replace(padded, literal(needle, String), literal(" ")))
    return removed // (len(needle) - 1)  # exact: integer division of a whole multiple


def _index_match(session: AsyncSession, stmt: Select[Any], terms: Sequence[str], *, any_term: bool) -> Select[Any]:
    """`stmt` narrowed by the full-text index to articles holding every term (or any)."""
    if is_sqlite(session):
        match = literal_column("kb_articles_fts").op("MATCH")(literal(fts5_query(terms, any_term=any_term), String))
        return stmt.join(_FTS, _FTS.c.rowid == KbArticle.id).where(match)
    return stmt.where(_TSV.op("@@")(tsquery(terms, any_term=any_term)))


async def ranked(
    session: AsyncSession, articles: Select[KbArticle], terms: Sequence[str], *, any_term: bool, limit: int
) -> list[tuple[KbArticle, int, int]]:
    """(article, distinct terms held, occurrences of the terms) for the best `limit` articles
    of `articles` holding every term (or, with `any_term`, at least one): most distinct terms
    first, then most occurrences, then newest."""
    if not terms:
        return []
    counts = [occurrences(term).label(f"c{i}") for i, term in enumerate(terms)]
    candidates = _index_match(session, articles.with_only_columns(KbArticle.id, *counts), terms, any_term=any_term)
    scored = candidates.subquery("scored")
    held: ColumnElement[Any] = literal(0)
    total: ColumnElement[Any] = literal(0)
    for i in range(len(terms)):
        count = scored.c[f"c{i}"]
        held = held + case((count > 0, 1), else_=0)
        total = total + count
    held, total = held.label("held"), total.label("occurrences")
    stmt = (
        select(KbArticle, held, total)
        .join(scored, scored.c.id == KbArticle.id)
        .where(held > 0 if any_term else held == len(terms))
        .order_by(held.desc(), total.desc(), KbArticle.id.desc())
        .limit(limit)
    )
    return [(article, int(h), int(t)) for article, h, t in await session.execute(stmt)]


async def containing(
    session: AsyncSession, articles: Select[KbArticle], substring: str, *, limit: int
) -> list[KbArticle]:
    """The newest `limit` articles of `articles` whose title or body contains `substring` (a
    1-2 character query: no index serves it; a knowledge base is small enough to scan)."""
    like = like_pattern(substring)
    stmt = (
        articles.where(KbArticle.title.ilike(like, escape="\\") | KbArticle.body.ilike(like, escape="\\"))
        .order_by(KbArticle.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def token_batch(session: AsyncSession, first_id: int, *, batch: int) -> list[tuple[int, str, str]]:
    """(id, title, body) of up to `batch` articles from id `first_id` on, for re-segmenting."""
    stmt = (
        select(KbArticle.id, KbArticle.title, KbArticle.body)
        .where(KbArticle.id >= first_id)
        .order_by(KbArticle.id)
        .limit(batch)
    )
    return [(i, title, body) for i, title, body in await session.execute(stmt)]


async def set_tokens(session: AsyncSession, tokens: dict[int, str]) -> None:
    """Store re-segmented tokens (bookkeeping: neither `version` nor `updated_at` moves)."""
    if not tokens:
        return
    kb_articles = cast(Table, KbArticle.__table__)  # a mapped class's table is a Table
    stmt = update(kb_articles).where(kb_articles.c.id == bindparam("article_id")).values(tokens=bindparam("new"))
    await session.execute(stmt, [{"article_id": i, "new": t} for i, t in tokens.items()])
