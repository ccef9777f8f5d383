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

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer
from sqlalchemy.sql.elements import TextClause

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


def _index_match(session: AsyncSession, stmt: Select[Any], terms: Sequence[str]) -> Select[Any]:
    """`stmt` narrowed by the full-text index to articles holding every term."""
    if is_sqlite(session):
        match = literal_column("kb_articles_fts").op("MATCH")(literal(fts5_query(terms), String))
        return stmt.join(_FTS, _FTS.c.rowid == KbArticle.id).where(match)
    return stmt.where(_TSV.op("@@")(tsquery(terms)))


async def ranked(
    session: AsyncSession, articles: Select[KbArticle], terms: Sequence[str], *, limit: int
) -> list[KbArticle]:
    """The best `limit` articles of `articles` holding every term: most occurrences of the
    terms first, then newest."""
    if not terms:
        return []
    total: ColumnElement[Any] = literal(0)
    for term in terms:
        total = total + occurrences(term)
    scored = _index_match(session, articles.with_only_columns(KbArticle.id, total.label("total")), terms)
    scored_rows = scored.subquery("scored")
    stmt = (
        select(KbArticle)
        .join(scored_rows, scored_rows.c.id == KbArticle.id)
        .order_by(scored_rows.c.total.desc(), KbArticle.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def best_published(session: AsyncSession, terms: Sequence[str], *, limit: int) -> list[KbArticle]:
    """The `limit` published articles holding most of `terms` (any may match): most distinct
    terms held first, then most occurrences, then newest.

    Retrieval runs before every AI answer, with up to two dozen terms; as an expression tree
    the statement costs milliseconds of Python to build each time. This one is SQL text, made
    once per dialect and number of terms, with the terms as bound parameters."""
    if not terms or limit < 1:
        return []
    sql = _best_published_sql(is_sqlite(session), len(terms))
    params: dict[str, Any] = {f"n{i}": f" {term} " for i, term in enumerate(terms)}
    if is_sqlite(session):
        params["match"] = fts5_query(terms, any_term=True)
    else:
        params |= {f"t{i}": term for i, term in enumerate(terms)}
    ids = [row[0] for row in await session.execute(sql, {**params, "status": KbStatus.published.value, "limit": limit})]
    if not ids:
        return []
    found = {a.id: a for a in (await session.execute(select(KbArticle).where(KbArticle.id.in_(ids)))).scalars()}
    return [found[i] for i in ids if i in found]


@functools.cache
def _best_published_sql(sqlite: bool, count: int) -> TextClause:
    # Tokens padded to two spaces apart, so " term " counts neighbours ("vpn vpn") twice; the
    # characters a replace removes, over the needle's length less one, is the exact count.
    occurrences = [f"(length(p) - length(replace(p, :n{i}, ' '))) / (length(:n{i}) - 1)" for i in range(count)]
    held = " + ".join(f"(CASE WHEN c{i} > 0 THEN 1 ELSE 0 END)" for i in range(count))
    total = " + ".join(f"c{i}" for i in range(count))
    if sqlite:
        source = (
            "kb_articles JOIN kb_articles_fts ON kb_articles_fts.rowid = kb_articles.id "
            "WHERE kb_articles_fts MATCH :match AND kb_articles.status = :status"
        )
    else:
        query = " || ".join(f"plainto_tsquery('simple', :t{i})" for i in range(count))
        source = f"kb_articles WHERE kb_articles.tokens_fts @@ ({query}) AND kb_articles.status = :status"
    counts = ", ".join(f"{expression} AS c{i}" for i, expression in enumerate(occurrences))
    padded = "' ' || replace(kb_articles.tokens, ' ', '  ') || ' '"
    return text(
        f"SELECT id FROM (SELECT id, {held} AS held, {total} AS total FROM "  # noqa: S608  # no user text: binds only
        f"(SELECT id, {counts} FROM (SELECT kb_articles.id AS id, {padded} AS p FROM {source}) AS padded) AS counted"
        ") AS scored WHERE held > 0 ORDER BY held DESC, total DESC, id DESC LIMIT :limit"
    )


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
