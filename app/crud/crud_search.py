"""The SQL of search: keeping `search_docs` in step with titles and messages, and matching
segmented query terms against it on either database.

SQLite matches through the FTS5 table `search_docs_fts` (rowid = search_docs.id) and ranks with
`bm25()` (negative: smaller is better); PostgreSQL matches `to_tsvector('simple', tokens)`
through its GIN expression index and ranks with `ts_rank`. A term is one segmented word, always
passed as a bound parameter: FTS5 gets it double-quoted (a phrase of one token, so no query
syntax can leak in), PostgreSQL through `plainto_tsquery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Float,
    Integer,
    Select,
    String,
    case,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
    text,
    true,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.search import SearchDoc
from app.models.ticket import Message, Ticket

# A title counts this much more than a message with the same match.
TITLE_WEIGHT = 2.0


@dataclass(frozen=True)
class DocRow:
    """One searchable text, segmented: the title (message_id None) or a message."""

    ticket_id: int
    message_id: int | None
    internal: bool
    tokens: str


def is_sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


async def upsert_docs(session: AsyncSession, rows: Sequence[DocRow]) -> None:
    """Insert or refresh documents. Idempotent, so `helpdesk reindex` can run beside the app:
    whoever writes a document last writes the same tokens for the same text."""
    for start in range(0, len(rows), _UPSERT_CHUNK):
        await _upsert_chunk(session, rows[start : start + _UPSERT_CHUNK])


_UPSERT_CHUNK = 1000  # rows per statement: 4 parameters each, well under both drivers' limits


async def _upsert_chunk(session: AsyncSession, rows: Sequence[DocRow]) -> None:
    titles = [row for row in rows if row.message_id is None]
    messages = [row for row in rows if row.message_id is not None]
    insert = sqlite_insert if is_sqlite(session) else pg_insert
    if titles:
        stmt = insert(SearchDoc).values([_values(row) for row in titles])
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[SearchDoc.ticket_id],
                index_where=text("message_id IS NULL"),
                set_={"tokens": stmt.excluded.tokens, "internal": stmt.excluded.internal},
            )
        )
    if messages:
        stmt = insert(SearchDoc).values([_values(row) for row in messages])
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[SearchDoc.message_id],
                set_={
                    "tokens": stmt.excluded.tokens,
                    "internal": stmt.excluded.internal,
                    "ticket_id": stmt.excluded.ticket_id,
                },
            )
        )


def _values(row: DocRow) -> dict[str, Any]:
    return {"ticket_id": row.ticket_id, "message_id": row.message_id, "internal": row.internal, "tokens": row.tokens}


async def move_docs(session: AsyncSession, *, source_id: int, target_id: int) -> None:
    """Messages merged into another ticket take their documents along (the title stays)."""
    await session.execute(
        update(SearchDoc)
        .where(SearchDoc.ticket_id == source_id, SearchDoc.message_id.is_not(None))
        .values(ticket_id=target_id)
        .execution_options(synchronize_session=False)
    )


# --- matching ------------------------------------------------------------------------------

# The FTS5 table (SQLite only), addressed through its rowid and its own name in MATCH / bm25.
_FTS = table("search_docs_fts", column("rowid", Integer))


def _visible(include_internal: bool) -> ColumnElement[bool]:
    return true() if include_internal else SearchDoc.internal.is_(False)


def _docs_matching_any(
    session: AsyncSession, terms: Sequence[str], *, include_internal: bool
) -> Select[int, int | None, float]:
    """(ticket_id, message_id, score) of the visible documents holding at least one term;
    score is positive, larger is better, comparable within one query only."""
    if is_sqlite(session):
        query = " OR ".join(f'"{term}"' for term in terms)
        # bm25() only works in the statement that scans the FTS table: scored there, as a
        # materialised CTE (never flattened into the join), then joined to the documents.
        ranked = (
            select(_FTS.c.rowid, (-literal_column("bm25(search_docs_fts)", Float)).label("score"))
            .where(literal_column("search_docs_fts").op("MATCH")(literal(query, String)))
            .cte()
            .prefix_with("MATERIALIZED")
        )
        stmt = select(SearchDoc.ticket_id, SearchDoc.message_id, ranked.c.score).join(
            ranked, ranked.c.rowid == SearchDoc.id
        )
    else:
        vector = func.to_tsvector(literal_column("'simple'"), SearchDoc.tokens)
        tsquery = _pg_tsquery(terms)
        stmt = select(SearchDoc.ticket_id, SearchDoc.message_id, func.ts_rank(vector, tsquery).label("score")).where(
            vector.op("@@")(tsquery)
        )
    return stmt.where(_visible(include_internal))


def _pg_tsquery(terms: Sequence[str]) -> ColumnElement[Any]:
    parts = [func.plainto_tsquery(literal_column("'simple'"), literal(term, String)) for term in terms]
    combined: ColumnElement[Any] = parts[0]
    for part in parts[1:]:
        combined = combined.op("||")(part)
    return combined


def ticket_scores(session: AsyncSession, terms: Sequence[str], *, include_internal: bool) -> Select[Any]:
    """(ticket_id, score) of the tickets whose visible documents, together, hold every term:
    "wifi 连不上" finds a ticket titled 宿舍 wifi with 一直连不上 in a message. The score sums
    the matching documents' scores, a title's weighted."""
    docs = _docs_matching_any(session, terms, include_internal=include_internal).subquery("docs")
    weighted = docs.c.score * case((docs.c.message_id.is_(None), TITLE_WEIGHT), else_=1.0)
    stmt = select(docs.c.ticket_id, func.sum(weighted).label("score")).group_by(docs.c.ticket_id)
    if len(terms) > 1:
        for term in terms:
            holders = _docs_matching_any(session, [term], include_internal=include_internal).subquery()
            stmt = stmt.where(docs.c.ticket_id.in_(select(holders.c.ticket_id)))
    return stmt


def like_matches(pattern: str, *, include_internal: bool, newest_docs: int) -> CompoundSelect[int]:
    """The tickets whose title or a visible message contains `pattern` as a substring, among
    the newest `newest_docs` messages and titles (the scan is bounded: no index serves it)."""
    like = _like(pattern)
    newest_ticket = select(func.max(Ticket.id)).scalar_subquery()
    newest_message = select(func.max(Message.id)).scalar_subquery()
    titles = select(Ticket.id.label("ticket_id")).where(
        Ticket.id > newest_ticket - newest_docs, Ticket.title.ilike(like, escape="\\")
    )
    bodies = select(Message.ticket_id.label("ticket_id")).where(
        Message.id > newest_message - newest_docs, Message.body.ilike(like, escape="\\")
    )
    if not include_internal:
        bodies = bodies.where(Message.internal.is_(False))
    return union(titles, bodies)


async def best_docs(
    session: AsyncSession, terms: Sequence[str], ticket_ids: Sequence[int], *, include_internal: bool
) -> dict[int, tuple[int | None, float]]:
    """For each ticket of a result page: its best-scoring matching document (message id, or
    None for the title), to cut the snippet from."""
    docs = _docs_matching_any(session, terms, include_internal=include_internal).subquery("docs")
    weighted = docs.c.score * case((docs.c.message_id.is_(None), TITLE_WEIGHT), else_=1.0)
    rows = await session.execute(
        select(docs.c.ticket_id, docs.c.message_id, weighted).where(docs.c.ticket_id.in_(list(ticket_ids)))
    )
    best: dict[int, tuple[int | None, float]] = {}
    for ticket_id, message_id, score in rows:
        if ticket_id not in best or score > best[ticket_id][1]:
            best[ticket_id] = (message_id, float(score))
    return best


async def message_bodies(session: AsyncSession, message_ids: Sequence[int]) -> dict[int, str]:
    if not message_ids:
        return {}
    rows = await session.execute(select(Message.id, Message.body).where(Message.id.in_(list(message_ids))))
    return {message_id: body for message_id, body in rows}


async def first_bodies_containing(
    session: AsyncSession, pattern: str, ticket_ids: Sequence[int], *, include_internal: bool
) -> dict[int, str]:
    """For each ticket of a result page: its oldest visible message containing `pattern`."""
    if not ticket_ids:
        return {}
    stmt = (
        select(Message.ticket_id, Message.body)
        .where(Message.ticket_id.in_(list(ticket_ids)), Message.body.ilike(_like(pattern), escape="\\"))
        .order_by(Message.id)
    )
    if not include_internal:
        stmt = stmt.where(Message.internal.is_(False))
    found: dict[int, str] = {}
    for ticket_id, body in await session.execute(stmt):
        found.setdefault(ticket_id, body)
    return found


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
