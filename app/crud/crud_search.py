"""The SQL of search: keeping `search_docs` in step with titles and messages, and matching
segmented query terms against it on either database.

A document matches when its own tokens and its `context_tokens` (the ticket's title, copied
onto every message) hold every term: "宿舍 连不上" finds a message saying 连不上 on a ticket
titled 宿舍网络. SQLite matches through the FTS5 table `search_docs_fts` (rowid =
search_docs.id, both columns indexed); PostgreSQL through the stored `tokens_fts` tsvector and
its GIN index. Neither object is in the models (see migration 0009_search). A term is one
segmented word, always a bound parameter: FTS5 gets it double-quoted (a one-token phrase, so
no query syntax leaks in), PostgreSQL through `plainto_tsquery`.

Relevance is computed by the same SQL expression on both databases (term frequency in the
document's own tokens over its length, a title counting double), so both rank alike; it is
computed for the newest `window` matching documents only, which keeps a common word as cheap
at a million tickets as at ten thousand.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    Subquery,
    Table,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    text,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.statements import PerDialect
from app.models.search import SearchDoc
from app.models.ticket import Message, Ticket

# A title counts this much more than a message with the same match.
TITLE_WEIGHT = 2.0
# Rows per upsert statement: 5 parameters each, well under both drivers' limits.
_UPSERT_CHUNK = 1000


@dataclass(frozen=True)
class DocRow:
    """One searchable text, segmented: the title (message_id None) or a message, which also
    carries its ticket's title tokens as context."""

    ticket_id: int
    message_id: int | None
    internal: bool
    tokens: str
    context_tokens: str = ""


def is_sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


# --- keeping the documents in step ---------------------------------------------------------


async def upsert_docs(session: AsyncSession, rows: Sequence[DocRow]) -> None:
    """Insert or refresh documents. Idempotent, so `helpdesk reindex` can run beside the app:
    whoever writes a document last writes the same tokens for the same text."""
    for start in range(0, len(rows), _UPSERT_CHUNK):
        await _upsert_chunk(session, rows[start : start + _UPSERT_CHUNK])


async def _upsert_chunk(session: AsyncSession, rows: Sequence[DocRow]) -> None:
    titles = [_values(row) for row in rows if row.message_id is None]
    messages = [_values(row) for row in rows if row.message_id is not None]
    if titles:
        await session.execute(_upsert_titles(session), titles)
    if messages:
        await session.execute(_upsert_messages(session), messages)


async def insert_new_docs(session: AsyncSession, rows: Sequence[DocRow]) -> None:
    """Documents of texts that have none yet (a new ticket's title and first message): one
    plain INSERT, no conflict possible."""
    await session.execute(_insert_docs, [_values(row) for row in rows])


def _build_upsert_titles(insert: Any) -> Any:
    stmt = insert(_DOCS)
    return stmt.on_conflict_do_update(
        index_elements=[_DOCS.c.ticket_id],
        index_where=text("message_id IS NULL"),
        set_={"tokens": stmt.excluded.tokens},
    )


def _build_upsert_messages(insert: Any) -> Any:
    stmt = insert(_DOCS)
    refreshed = ("tokens", "context_tokens", "internal", "ticket_id")
    return stmt.on_conflict_do_update(
        index_elements=[_DOCS.c.message_id], set_={name: stmt.excluded[name] for name in refreshed}
    )


_DOCS = typing.cast(Table, SearchDoc.__table__)  # a mapped class's table is a Table
_insert_docs = _DOCS.insert()
_upsert_titles = PerDialect(_build_upsert_titles)
_upsert_messages = PerDialect(_build_upsert_messages)


def _values(row: DocRow) -> dict[str, Any]:
    return {
        "ticket_id": row.ticket_id,
        "message_id": row.message_id,
        "internal": row.internal,
        "tokens": row.tokens,
        "context_tokens": row.context_tokens,
    }


async def title_tokens(session: AsyncSession, ticket_id: int) -> str:
    """The stored tokens of a ticket's title (a new message's context: not segmented again)."""
    stmt = select(SearchDoc.tokens).where(SearchDoc.ticket_id == ticket_id, SearchDoc.message_id.is_(None))
    return (await session.execute(stmt)).scalar_one_or_none() or ""


async def set_context(session: AsyncSession, ticket_id: int) -> None:
    """Copy the ticket's title tokens onto its messages' documents (after a new title, or
    after messages were merged in)."""
    title = (
        select(SearchDoc.tokens)
        .where(SearchDoc.ticket_id == ticket_id, SearchDoc.message_id.is_(None))
        .scalar_subquery()
    )
    await session.execute(
        update(SearchDoc)
        .where(SearchDoc.ticket_id == ticket_id, SearchDoc.message_id.is_not(None))
        .values(context_tokens=func.coalesce(title, ""))
        .execution_options(synchronize_session=False)
    )


async def move_docs(session: AsyncSession, *, source_id: int, target_id: int) -> None:
    """Messages merged into another ticket take their documents along (the title stays), with
    the target's title as their context."""
    await session.execute(
        update(SearchDoc)
        .where(SearchDoc.ticket_id == source_id, SearchDoc.message_id.is_not(None))
        .values(ticket_id=target_id)
        .execution_options(synchronize_session=False)
    )
    await set_context(session, target_id)


# --- matching ------------------------------------------------------------------------------

# The FTS5 table (SQLite only), joined through its rowid and named in MATCH.
_FTS = table("search_docs_fts", column("rowid", Integer))
# The stored tsvector (PostgreSQL only).
_TSV: ColumnElement[Any] = literal_column("search_docs.tokens_fts")


def _matches(session: AsyncSession, terms: Sequence[str]) -> tuple[ColumnElement[bool], bool]:
    """The condition "this document holds every term", and whether it needs the FTS5 join."""
    if is_sqlite(session):
        return literal_column("search_docs_fts").op("MATCH")(literal(fts5_query(terms), String)), True
    return _TSV.op("@@")(tsquery(terms)), False


def fts5_query(terms: Sequence[str], *, any_term: bool = False) -> str:
    """FTS5 MATCH text for segmented terms: each a double-quoted one-token phrase (so no query
    syntax leaks in), all required (implicit AND) or, with `any_term`, any of them (OR)."""
    phrases = ['"' + term.replace('"', '""') + '"' for term in terms]
    return (" OR " if any_term else " ").join(phrases)


def tsquery(terms: Sequence[str], *, any_term: bool = False) -> ColumnElement[Any]:
    """The PostgreSQL counterpart: `plainto_tsquery('simple', term)` per term (a bound
    parameter), combined with && (all) or, with `any_term`, || (any)."""
    parts = [func.plainto_tsquery(literal_column("'simple'"), literal(term, String)) for term in terms]
    combined: ColumnElement[Any] = parts[0]
    for part in parts[1:]:
        combined = combined.op("||" if any_term else "&&")(part)
    return combined


def _visible(include_internal: bool) -> ColumnElement[bool]:
    return true() if include_internal else SearchDoc.internal.is_(False)


def _score(terms: Sequence[str]) -> ColumnElement[Any]:
    """Occurrences of the terms in the document's own tokens, over its length in tokens; a
    title counts double. Plain SQL, the same on both databases."""
    padded = literal(" ") + SearchDoc.tokens + literal(" ")
    occurrences: ColumnElement[Any] = literal(0)
    for term in terms:
        needle = f" {term} "
        removed = func.length(padded) - func.length(func.replace(padded, needle, " "))
        occurrences = occurrences + removed // (len(needle) - 1)  # exact: integer division
    length = func.length(SearchDoc.tokens) - func.length(func.replace(SearchDoc.tokens, " ", "")) + 1
    weight = case((SearchDoc.message_id.is_(None), TITLE_WEIGHT), else_=1.0)
    return cast(occurrences, Float) * weight / (cast(length, Float) / 10.0 + 1.0)


async def ranked_hits(
    session: AsyncSession,
    terms: Sequence[str],
    *,
    tickets: Select[Any],
    include_internal: bool,
    window: int,
) -> Subquery:
    """(ticket_id, score) from the newest `window` visible documents that match every term
    (for a customer: all of theirs), on tickets of `tickets` (the caller's readable and filtered
    statement, applied before the window, so filters never empty it), each ticket's documents'
    scores summed."""
    match, needs_fts = _matches(session, terms)
    candidates = select(SearchDoc.ticket_id, _score(terms).label("score")).where(_visible(include_internal))
    if tickets.whereclause is not None:  # unfiltered staff searches skip the join
        candidates = candidates.join(Ticket, Ticket.id == SearchDoc.ticket_id).where(tickets.whereclause)
    if not include_internal:
        # A customer's own tickets are few: start from them (the requester index) and ask the
        # index about each of their documents; no window is needed.
        if needs_fts:
            match = select(_FTS.c.rowid).where(match, _FTS.c.rowid == SearchDoc.id).exists()
        newest = candidates.where(match).subquery("candidates")
    elif needs_fts:
        # Staff search everything: FTS5 drives, read newest first (ordered by its own rowid, the
        # same id), and stops after `window` rows instead of sorting every match.
        candidates = candidates.join(_FTS, _FTS.c.rowid == SearchDoc.id).where(match)
        newest = candidates.order_by(_FTS.c.rowid.desc()).limit(window).subquery("candidates")
    else:
        candidates = candidates.where(match)
        newest_first = await _newest_first(session, candidates, window)
        newest = candidates.order_by(newest_first).limit(window).subquery("candidates")
    return (
        select(newest.c.ticket_id, func.sum(newest.c.score).label("score"))
        .group_by(newest.c.ticket_id)
        .subquery("hits")
    )


async def _newest_first(session: AsyncSession, candidates: Select[Any], window: int) -> ColumnElement[Any]:
    """How PostgreSQL should find the newest `window` matches: walk the primary key backwards
    (cheap when matches are many) or sort every match the GIN index yields (cheap when they are
    few). Its planner cannot tell for several words: it multiplies their frequencies, so words
    often together look rare and words never together look common (then it walks through every
    document: 0.9 s at a million tickets). So count the matches among the newest
    `_RECENT_DOCS` documents first (a bounded walk) and extrapolate to the whole table."""
    newest, total = select(func.max(SearchDoc.id)).scalar_subquery(), func.count()
    recent = candidates.with_only_columns(SearchDoc.id).where(SearchDoc.id > newest - _RECENT_DOCS).limit(window)
    found = (await session.execute(select(total).select_from(recent.subquery()))).scalar_one()
    if found >= window:
        return SearchDoc.id.desc()
    documents = (await session.execute(select(func.max(SearchDoc.id)))).scalar_one() or 0
    expected = found * documents / _RECENT_DOCS
    return SearchDoc.id.desc() if expected > 5 * window else (SearchDoc.id + 0).desc()


# How far back the counting walk goes (documents).
_RECENT_DOCS = 20_000


def all_hits(session: AsyncSession, terms: Sequence[str], *, include_internal: bool) -> Select[Any]:
    """The ids of every ticket with a visible document matching every term (for the date and
    priority sorts, which want every result, not the best of the newest)."""
    match, needs_fts = _matches(session, terms)
    stmt = select(SearchDoc.ticket_id)
    if needs_fts:
        stmt = stmt.join(_FTS, _FTS.c.rowid == SearchDoc.id)
    return stmt.where(match, _visible(include_internal))


def like_condition(pattern: str, *, include_internal: bool, newest_tickets: int) -> ColumnElement[bool]:
    """ "The ticket's title or one of its visible messages contains `pattern`", for the newest
    `newest_tickets` tickets only: no index serves a substring, so the scan is bounded. As a
    condition on `tickets`, a newest-first page stops at its last row."""
    like = like_pattern(pattern)
    newest = select(func.max(Ticket.id)).scalar_subquery()
    in_message = select(Message.id).where(Message.ticket_id == Ticket.id, Message.body.ilike(like, escape="\\"))
    if not include_internal:
        in_message = in_message.where(Message.internal.is_(False))
    # OFFSET 0 keeps PostgreSQL from turning the EXISTS into a hashed subplan, which reads every
    # message (2 s at a million tickets) instead of the few of the tickets the page walks past.
    in_message = in_message.offset(0)
    return and_(Ticket.id > newest - newest_tickets, or_(Ticket.title.ilike(like, escape="\\"), in_message.exists()))


# --- snippets --------------------------------------------------------------------------------


async def page_docs(
    session: AsyncSession, ticket_ids: Sequence[int], *, include_internal: bool
) -> list[tuple[int, int | None, str]]:
    """(ticket_id, message_id, tokens) of the visible documents of a result page's tickets."""
    if not ticket_ids:
        return []
    stmt = select(SearchDoc.ticket_id, SearchDoc.message_id, SearchDoc.tokens).where(
        SearchDoc.ticket_id.in_(list(ticket_ids)), _visible(include_internal)
    )
    return [(t, m, tokens) for t, m, tokens in await session.execute(stmt)]


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
        .where(Message.ticket_id.in_(list(ticket_ids)), Message.body.ilike(like_pattern(pattern), escape="\\"))
        .order_by(Message.ticket_id, Message.id)  # the (ticket_id, id) index: never a walk of all messages
    )
    if not include_internal:
        stmt = stmt.where(Message.internal.is_(False))
    found: dict[int, str] = {}
    for ticket_id, body in await session.execute(stmt):
        found.setdefault(ticket_id, body)
    return found


def like_pattern(pattern: str) -> str:
    """`%pattern%` with LIKE's wildcards escaped (use with `escape="\\"`)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
