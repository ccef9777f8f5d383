"""Tickets, messages and the timeline: all their SQL, including who may read what.

`readable_by(user)` is the one place that decides which tickets a user may see; every list,
lookup and (later) search and export starts from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from typing import Any, Protocol, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    Subquery,
    Table,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.interfaces import LoaderOption
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.functions import FunctionElement

from app.core.errors import TicketNotFound
from app.crud.crud_search import DocRow, insert_new_docs
from app.crud.crud_sla import existing_policy_id
from app.db.base import utcnow
from app.db.session import WAKE_AFTER_COMMIT
from app.db.statements import PerDialect, dialect_name, upsert_insert
from app.jobs.queue import insert_and_enqueue, job_for_row, job_parameters
from app.models.attachment import Attachment
from app.models.category import Category
from app.models.search import SearchDoc
from app.models.sla import TicketSla
from app.models.tag import Tag, ticket_tags
from app.models.team import Team
from app.models.ticket import (
    Channel,
    Message,
    Priority,
    Rating,
    Ticket,
    TicketEvent,
    TicketNumberCounter,
    TicketStatus,
    ticket_watchers,
)
from app.models.user import Role, User

# Everything a TicketRead needs, in two statements whatever the page size.
TICKET_LOADS: tuple[LoaderOption, ...] = (
    joinedload(Ticket.requester),
    joinedload(Ticket.assignee),
    joinedload(Ticket.category),
    joinedload(Ticket.team),
    joinedload(Ticket.merged_into),
    joinedload(Ticket.rating),
    selectinload(Ticket.tags),
)


# The read model of a ticket (TicketRead, TicketListItem) in one Core statement: the ticket's
# columns, the names of what it points at, its rating and its tags as a JSON array. Reads build
# the response from these rows, never from ORM objects: joined eager loading of six relations
# cost four times the statement itself (docs/benchmarks.md "HTTP throughput"). The names are
# scalar subqueries, not joins: PostgreSQL plans a seven-way join for every execution (3.6 ms,
# ten times the execution), a lookup per row it plans in 0.2 ms.
_tickets = Ticket.__table__
_users = User.__table__
_merged_into = _tickets.alias("merged_into")
_categories = Category.__table__
_teams = Team.__table__
_ratings = Rating.__table__


class JsonArrayAgg(FunctionElement[str]):
    """The aggregated values as the text of a JSON array (NULL or '[]' when there are none)."""

    type = String()
    inherit_cache = True


@compiles(JsonArrayAgg, "sqlite")
def _json_array_agg_sqlite(element: JsonArrayAgg, compiler: Any, **kw: Any) -> str:
    return f"json_group_array({compiler.process(element.clauses, **kw)})"


@compiles(JsonArrayAgg, "postgresql")
def _json_array_agg_postgresql(element: JsonArrayAgg, compiler: Any, **kw: Any) -> str:
    return f"CAST(json_agg({compiler.process(element.clauses, **kw)}) AS TEXT)"


_TAG_NAMES = (
    select(JsonArrayAgg(Tag.name))
    .select_from(ticket_tags.join(Tag, Tag.id == ticket_tags.c.tag_id))
    .where(ticket_tags.c.ticket_id == _tickets.c.id)
    .scalar_subquery()
)


def _lookup(column: Any, key: Any, ticket_column: Any) -> Any:
    return select(column).where(key == ticket_column).scalar_subquery()


_VIEW_COLUMNS = (
    *_tickets.c,
    _lookup(_users.c.display_name, _users.c.id, _tickets.c.requester_id).label("requester_name"),
    _lookup(_users.c.display_name, _users.c.id, _tickets.c.assignee_id).label("assignee_name"),
    _lookup(_categories.c.name, _categories.c.id, _tickets.c.category_id).label("category_name"),
    _lookup(_teams.c.name, _teams.c.id, _tickets.c.team_id).label("team_name"),
    _lookup(_merged_into.c.number, _merged_into.c.id, _tickets.c.merged_into_id).label("merged_into_number"),
    _ratings.c.score.label("rating_score"),
    _ratings.c.comment.label("rating_comment"),
    _ratings.c.created_at.label("rating_created_at"),
    _ratings.c.updated_at.label("rating_updated_at"),
    _TAG_NAMES.label("tag_names"),
)


def as_views(stmt: Select[Any]) -> Select[Any]:
    """`stmt` (over tickets) selecting the read model's columns instead; its WHERE, joins and
    ORDER BY stay. Rows go through `ticket_view`."""
    return stmt.with_only_columns(*_VIEW_COLUMNS, maintain_column_froms=False).outerjoin_from(
        _tickets, _ratings, _ratings.c.ticket_id == _tickets.c.id
    )


def ticket_view(row: Row[Any]) -> dict[str, Any]:
    """A row of `as_views` as the fields of TicketRead."""
    return _view(row._mapping)


async def new_ticket_view(session: AsyncSession, ticket: Ticket, user: User) -> dict[str, Any]:
    """The read model of a ticket this transaction created, for `user` who created it. Built
    from what the session holds when it holds every name (the requester and the references the
    create checked are in its identity map); otherwise, when auto-assignment brought in a team
    or agent, read as `get_view` does. A new ticket has no rating and is merged into nothing."""
    names = _held_names(session, ticket)
    if names is None:
        return await get_view(session, ticket.id, user)
    row = {column.key: getattr(ticket, column.key) for column in _tickets.c}
    row |= names | {"merged_into_number": None, "rating_score": None}
    row["tag_names"] = json.dumps([tag.name for tag in ticket.tags])
    return _view(row)


def _held_names(session: AsyncSession, ticket: Ticket) -> dict[str, str | None] | None:
    names: dict[str, str | None] = {}
    for key, model, ref_id in (
        ("requester_name", User, ticket.requester_id),
        ("assignee_name", User, ticket.assignee_id),
        ("category_name", Category, ticket.category_id),
        ("team_name", Team, ticket.team_id),
    ):
        if ref_id is None:
            names[key] = None
            continue
        held = session.identity_map.get(identity_key(model, ref_id))
        if isinstance(held, User):
            names[key] = held.display_name
        elif isinstance(held, Category | Team):
            names[key] = held.name
        else:
            return None
    return names


def _view(m: Mapping[Any, Any]) -> dict[str, Any]:
    rating = None
    if m["rating_score"] is not None:
        rating = {
            "score": m["rating_score"],
            "comment": m["rating_comment"],
            "created_at": m["rating_created_at"],
            "updated_at": m["rating_updated_at"],
        }
    return {
        **{name: m[name] for name in _VIEW_FIELDS},
        "category": _ref(m["category_id"], name=m["category_name"]),
        "tags": sorted(json.loads(m["tag_names"] or "[]")),
        "requester": _ref(m["requester_id"], display_name=m["requester_name"]),
        "assignee": _ref(m["assignee_id"], display_name=m["assignee_name"]),
        "team": _ref(m["team_id"], name=m["team_name"]),
        "merged_into": _ref(m["merged_into_id"], number=m["merged_into_number"]),
        "rating": rating,
    }


_VIEW_FIELDS = (
    "id",
    "number",
    "title",
    "status",
    "priority",
    "channel",
    "created_at",
    "updated_at",
    "first_response_due_at",
    "resolution_due_at",
    "first_responded_at",
    "resolved_at",
    "closed_at",
    "version",
)


def _ref(ref_id: int | None, **fields: Any) -> dict[str, Any] | None:
    return None if ref_id is None else {"id": ref_id, **fields}


async def get_view(session: AsyncSession, ticket_id: int, user: User) -> dict[str, Any]:
    """The read model of a ticket `user` may see, in one statement; 404 alike for missing and
    hidden. The statement is built once per role; run on the session's connection (Core), it
    skips the ORM's execution machinery, which returns no objects here anyway."""
    connection = await session.connection()
    params = {"ticket_id": ticket_id, "user_id": user.id}
    row = (await connection.execute(_VIEW_BY_ID[user.role], params)).first()
    if row is None:
        raise TicketNotFound
    return ticket_view(row)


def readable_by(user: User) -> Select[Ticket]:
    """The tickets `user` may see: customers their own, agents and admins all."""
    return _readable(user.role, user.id)


def _readable(role: Role, user_id: Any) -> Select[Ticket]:
    stmt = select(Ticket)
    if role == Role.customer:
        stmt = stmt.where(Ticket.requester_id == user_id)
    return stmt


_VIEW_BY_ID = {
    role: as_views(_readable(role, bindparam("user_id")).where(Ticket.id == bindparam("ticket_id"))) for role in Role
}


async def get_readable(session: AsyncSession, ticket_id: int, user: User, *, for_update: bool = False) -> Ticket:
    """The ticket if `user` may see it; 404 `ticket_not_found` alike for missing and hidden.

    `for_update` locks its row until the transaction ends (PostgreSQL; SQLite's writers are
    serialised already): concurrent writers without If-Match then follow one another, last
    writer wins as API.md promises, instead of the later one failing the version check. The
    ticket is read after the lock, even when the session already holds it. A writer that
    locks two tickets locks them in id order (no deadlock between them)."""
    return await _one_readable(session, user, Ticket.id == ticket_id, for_update=for_update)


async def get_readable_by_number(session: AsyncSession, number: str, user: User) -> Ticket:
    """By its number (what people type in QQ); 404 alike for missing and hidden."""
    return await _one_readable(session, user, Ticket.number == number)


async def _one_readable(
    session: AsyncSession, user: User, condition: ColumnElement[bool], *, for_update: bool = False
) -> Ticket:
    stmt = readable_by(user).where(condition).options(*TICKET_LOADS)
    if for_update:
        await _lock(session, stmt)
        stmt = stmt.execution_options(populate_existing=True)
    ticket = (await session.execute(stmt)).unique().scalar_one_or_none()
    if ticket is None:
        raise TicketNotFound
    return ticket


async def _lock(session: AsyncSession, readable: Select[Ticket]) -> None:
    """Locks the ticket row, alone, before the caller reads it: under a lock that waited,
    PostgreSQL re-reads the locked row but not the rows a statement joins to it, which would
    stay as they were before the other writer's commit (a rating that "does not exist" yet).
    The read that follows is a statement of its own, so it sees that commit. SQLite's writers
    are serialised already: no statement there."""
    if not writes_serialised(session):
        await session.execute(readable.with_only_columns(Ticket.id).with_for_update())


async def open_for(session: AsyncSession, user: User, *, limit: int) -> list[Ticket]:
    """A customer's open tickets, or the ones assigned to an agent; most recent first."""
    stmt = readable_by(user).where(Ticket.status != TicketStatus.closed)
    if user.role != Role.customer:
        stmt = stmt.where(Ticket.assignee_id == user.id)
    stmt = stmt.order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars().all())


async def reload(session: AsyncSession, ticket_id: int, *, for_update: bool = False) -> Ticket:
    """The ticket with everything TicketRead needs, fresh from the database; `for_update` as
    in `get_readable` (for writers that found the ticket by other means than a user's view)."""
    stmt = select(Ticket).where(Ticket.id == ticket_id).options(*TICKET_LOADS).execution_options(populate_existing=True)
    if for_update:
        await _lock(session, select(Ticket).where(Ticket.id == ticket_id))
    return (await session.execute(stmt)).unique().scalar_one()


@dataclass(frozen=True)
class TicketFilters:
    status: Sequence[TicketStatus] = ()
    priority: Priority | None = None
    category_id: int | None = None
    # an id, "me" (resolved by the caller to an id) or "none"
    assignee_id: int | None = None
    unassigned: bool = False
    requester_id: int | None = None
    team_id: int | None = None
    tag: str | None = None
    channel: Channel | None = None
    number: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    conditions: list[ColumnElement[bool]] = field(default_factory=list)

    def values(self) -> dict[str, Any]:
        """The filters that are set, by name (the names of their bind parameters in `list_page`'s
        statements); `unassigned` has no value of its own."""
        values: dict[str, Any] = {"status": list(self.status)} if self.status else {}
        if self.unassigned:
            values["unassigned"] = True
        elif self.assignee_id is not None:
            values["assignee_id"] = self.assignee_id
        for name in _VALUED_FILTERS:
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        return values

    def apply(self, stmt: Select[Ticket]) -> Select[Ticket]:
        where = [*self.conditions, *(_FILTERS[name](value) for name, value in self.values().items())]
        return stmt.where(*where) if where else stmt


_VALUED_FILTERS = (
    "priority",
    "category_id",
    "requester_id",
    "team_id",
    "tag",
    "channel",
    "number",
    "created_after",
    "created_before",
    "updated_after",
)


def _tagged(name: Any) -> ColumnElement[bool]:
    return exists().where(ticket_tags.c.ticket_id == Ticket.id, ticket_tags.c.tag_id == Tag.id, Tag.name == name)


# Each filter's condition, given its value or a bind parameter standing for it.
_FILTERS: dict[str, Callable[[Any], ColumnElement[bool]]] = {
    "status": lambda value: Ticket.status.in_(value),
    "priority": lambda value: Ticket.priority == value,
    "category_id": lambda value: Ticket.category_id == value,
    "unassigned": lambda _: Ticket.assignee_id.is_(None),
    "assignee_id": lambda value: Ticket.assignee_id == value,
    "requester_id": lambda value: Ticket.requester_id == value,
    "team_id": lambda value: Ticket.team_id == value,
    "tag": _tagged,
    "channel": lambda value: Ticket.channel == value,
    "number": lambda value: Ticket.number == value,
    "created_after": lambda value: Ticket.created_at >= value,
    "created_before": lambda value: Ticket.created_at < value,
    "updated_after": lambda value: Ticket.updated_at > value,
}


@dataclass(frozen=True)
class SortOrder:
    """A keyset order on (key, id); `nulls_last` for keys that may be NULL (due dates)."""

    name: str
    key: Any
    descending: bool
    nulls_last: bool = False

    def order_by(self) -> list[Any]:
        if self.descending:
            return [self.key.desc(), Ticket.id.desc()]
        key = self.key.asc().nulls_last() if self.nulls_last else self.key.asc()
        return [key, Ticket.id.asc()]

    def after(self, key_value: Any, last_id: Any) -> ColumnElement[bool]:
        if self.descending:
            return or_(self.key < key_value, and_(self.key == key_value, Ticket.id < last_id))
        if self.nulls_last and key_value is None:
            return and_(self.key.is_(None), Ticket.id > last_id)
        later = or_(self.key > key_value, and_(self.key == key_value, Ticket.id > last_id))
        return or_(later, self.key.is_(None)) if self.nulls_last else later


SORTS: dict[str, SortOrder] = {
    "-updated_at": SortOrder("-updated_at", Ticket.updated_at, descending=True),
    "created_at": SortOrder("created_at", Ticket.created_at, descending=False),
    "-created_at": SortOrder("-created_at", Ticket.created_at, descending=True),
    "-priority": SortOrder("-priority", Ticket.priority_rank, descending=True),
    "due": SortOrder("due", Ticket.resolution_due_at, descending=False, nulls_last=True),
}


async def list_page(
    session: AsyncSession,
    user: User,
    filters: TicketFilters,
    sort: SortOrder,
    *,
    after: tuple[Any, int] | None,
    limit: int,
) -> list[Row[Any]]:
    """One page (plus one row to tell whether more follow) of `as_views` rows, one statement.

    The statement is built once per shape (who reads, which filters are set, the order, where
    the page starts) with a bind parameter for every value, and kept: building it and its
    cache key cost a tenth of a list request (docs/benchmarks.md). None of its parameters has a
    value of its own, so one that a request did not give fails instead of taking another's."""
    connection = await session.connection()  # Core: the ORM's execution returns no objects here anyway
    if filters.conditions:  # search conditions: built per request
        stmt = filters.apply(readable_by(user))
        if after is not None:
            stmt = stmt.where(sort.after(*after))
        return list(await connection.execute(as_views(stmt.order_by(*sort.order_by()).limit(limit + 1))))
    values = filters.values()
    start = "" if after is None else ("null" if after[0] is None else "key")
    stmt = _list_statement(user.role == Role.customer, tuple(values), sort.name, start)
    params = values | {"user_id": user.id, "limit": limit + 1}
    if after is not None:
        params |= {"after_key": after[0], "after_id": after[1]}
    return list(await connection.execute(stmt, params))


@lru_cache(maxsize=256)
def _list_statement(customer: bool, filters: tuple[str, ...], sort_name: str, start: str) -> Select[Any]:
    """`list_page`'s statement for one shape; `start`: "" (first page), "key" or "null" (after
    a row whose sort key is NULL)."""
    stmt = _readable(Role.customer if customer else Role.agent, bindparam("user_id"))
    stmt = stmt.where(*(_FILTERS[name](bindparam(name, expanding=name == "status")) for name in filters))
    sort = SORTS[sort_name]
    if start:
        stmt = stmt.where(sort.after(None if start == "null" else bindparam("after_key"), bindparam("after_id")))
    return as_views(stmt.order_by(*sort.order_by()).limit(bindparam("limit", type_=Integer)))


async def search_page(
    session: AsyncSession,
    user: User,
    filters: TicketFilters,
    hits: Subquery,
    *,
    after: tuple[float, int] | None,
    limit: int,
) -> list[tuple[Row[Any], float]]:
    """One page of search results (`as_views` rows), best first, then newest (by id: immutable,
    so the keyset (score, id) walks every result once); plus one row to tell whether more follow."""
    stmt = filters.apply(readable_by(user)).join(hits, hits.c.ticket_id == Ticket.id)
    if after is not None:
        score, last_id = after
        stmt = stmt.where(or_(hits.c.score < score, and_(hits.c.score == score, Ticket.id < last_id)))
    stmt = as_views(stmt.order_by(hits.c.score.desc(), Ticket.id.desc()).limit(limit + 1)).add_columns(hits.c.score)
    connection = await session.connection()
    return [(row, float(row.score)) for row in await connection.execute(stmt)]


async def add_event(session: AsyncSession, event: TicketEvent, *, dispatch: str) -> int:
    """Appends `event` to the timeline with the `dispatch` job that fans it out (payload
    `{"event_id": id}`), in one statement on PostgreSQL; a Core INSERT, since the ORM's unit of
    work costs more than the row. Returns its id; the event object stays outside the session."""
    values = {column.key: getattr(event, column.key) for column in _EVENT_COLUMNS}
    return await insert_and_enqueue(session, _EVENTS, values, dispatch, payload_key="event_id", key_prefix="event")


_EVENTS = cast(Table, TicketEvent.__table__)  # a mapped class's table is a Table
_EVENT_COLUMNS = [column for column in _EVENTS.c if column.key != "id"]


def writes_serialised(session: AsyncSession) -> bool:
    """Whether the database runs one write transaction at a time (SQLite), so the order of the
    rows a transaction locks does not matter to concurrent writers."""
    return dialect_name(session) == "sqlite"


async def next_sequence(session: AsyncSession, day: str) -> int:
    """That day's next ticket number: an atomic upsert, so concurrent creates never collide."""
    return int((await session.execute(_next_sequence(session), {"day": day})).scalar_one())


def _build_next_sequence(insert: Any) -> Any:
    counters = TicketNumberCounter.__table__
    return (
        insert(counters)
        .values(day=bindparam("day"), last=1)
        .on_conflict_do_update(index_elements=[counters.c.day], set_={"last": counters.c.last + 1})
        .returning(counters.c.last)
    )


_next_sequence = PerDialect(_build_next_sequence)


async def take_number(session: AsyncSession, ticket_id: int, day: str, *, prefix: str, width: int, suffix: str) -> str:
    """PostgreSQL: that day's next number, written into the ticket by the statement that takes
    it (`WITH counter AS (INSERT ... ON CONFLICT DO UPDATE ... RETURNING last) UPDATE tickets
    SET number = prefix || last zero-padded to width || suffix`); returns the number."""
    values = {"day": day, "ticket_id": ticket_id, "prefix": prefix, "width": width, "suffix": suffix}
    return str((await session.execute(_TAKE_NUMBER, values)).scalar_one())


def _build_take_number() -> Any:
    counter = _build_next_sequence(pg_insert).cte("counter")
    seq = sql_cast(select(counter.c.last).scalar_subquery(), String)  # its one row; no FROM to join
    padded = func.lpad(seq, func.greatest(bindparam("width", type_=Integer), func.length(seq)), "0")
    number = bindparam("prefix", type_=String) + padded + bindparam("suffix", type_=String)
    stmt = update(cast(Table, _tickets)).where(_tickets.c.id == bindparam("ticket_id"))
    return stmt.values(number=number).returning(_tickets.c.number).add_cte(counter)


_TAKE_NUMBER = _build_take_number()


class NumberParts(Protocol):
    """A number format split around its counter (app/services/numbering.py NumberShape)."""

    @property
    def prefix(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def suffix(self) -> str: ...
    def render(self, seq: int) -> str: ...


@dataclass(frozen=True)
class NewTicketRows:
    """What `insert_new_ticket` wrote: the ids and the number."""

    ticket_id: int
    number: str
    message_id: int
    event_id: int


async def insert_new_ticket(
    session: AsyncSession,
    *,
    ticket: Mapping[str, Any],
    sla: TicketSla | None,
    message: Mapping[str, Any],
    event: Mapping[str, Any],
    day: str,
    number: NumberParts,
    tokens: tuple[str, str] | None,
    dispatch: str,
) -> NewTicketRows:
    """A new ticket's own rows: the day's counter, the ticket numbered from it, its SLA row
    (`sla`: unsaved, its policy named by id; None: no policy applies), its first message, the
    search documents of both (`tokens`: title and body segmented; None: no index), the
    `ticket.created` event and the job that dispatches it. On PostgreSQL one statement, one
    round trip (data-modifying CTEs); SQLite has none of those and runs in this process, where
    a statement per table costs no round trip.

    `ticket`: every column but id and number; `message`: author_id, body, internal, channel;
    `event`: type, actor_id, internal (its data: number, title and message_id); both created
    when the ticket was; `number`: the day's format split around its counter. The counter row
    is locked from here to the commit, as by `take_number`."""
    created = {"created_at": ticket["created_at"]}
    if dialect_name(session) != "postgresql":
        return await _insert_new_ticket_by_table(
            session, ticket, sla, {**message, **created}, {**event, **created}, day, number, tokens, dispatch
        )
    params: dict[str, Any] = {f"ticket_{key}": value for key, value in ticket.items()}
    if sla is not None:
        params |= _sla_values(sla, prefix="sla_")
    params |= {f"message_{key}": value for key, value in {**message, **created}.items()}
    params |= {f"event_{key}": value for key, value in {**event, **created}.items()}
    params |= {"day": day, "prefix": number.prefix, "width": number.width, "suffix": number.suffix}
    params |= job_parameters(dispatch)
    if tokens is not None:
        params |= {"title_tokens": tokens[0], "body_tokens": tokens[1]}
    row = (await session.execute(_create_in_one(tokens is not None, sla is not None), params)).one()
    session.info[WAKE_AFTER_COMMIT] = True
    return NewTicketRows(row.id, row.number, row.message_id, row.event_id)


async def _insert_new_ticket_by_table(
    session: AsyncSession,
    ticket: Mapping[str, Any],
    sla: TicketSla | None,
    message: Mapping[str, Any],
    event: Mapping[str, Any],
    day: str,
    number: NumberParts,
    tokens: tuple[str, str] | None,
    dispatch: str,
) -> NewTicketRows:
    """`insert_new_ticket` on SQLite: the same rows, a Core statement each."""
    numbered = number.render(await next_sequence(session, day))
    ticket_id = int((await session.execute(_INSERT_TICKET, {**ticket, "number": numbered})).scalar_one())
    if sla is not None:
        await session.execute(_INSERT_SLA, {"ticket_id": ticket_id, **_sla_values(sla)})
    message_id = int((await session.execute(_INSERT_MESSAGE, {**message, "ticket_id": ticket_id})).scalar_one())
    if tokens is not None:
        title = DocRow(ticket_id, None, False, tokens[0])
        await insert_new_docs(session, [title, DocRow(ticket_id, message_id, False, tokens[1], tokens[0])])
    data = {"number": numbered, "title": ticket["title"], "message_id": message_id}
    values = {**event, "ticket_id": ticket_id, "data": data}
    event_id = await insert_and_enqueue(session, _EVENTS, values, dispatch, payload_key="event_id", key_prefix="event")
    return NewTicketRows(ticket_id, numbered, message_id, event_id)


def _values_of(table: Table, prefix: str, keys: Sequence[str]) -> list[Any]:
    return [bindparam(f"{prefix}_{key}", type_=table.c[key].type) for key in keys]


@cache
def _create_in_one(indexed: bool, with_sla: bool) -> Select[Any]:
    counter = _build_next_sequence(pg_insert).cte("counter")
    seq = sql_cast(counter.c.last, String)
    padded = func.lpad(seq, func.greatest(bindparam("width", type_=Integer), func.length(seq)), "0")
    number = bindparam("prefix", type_=String) + padded + bindparam("suffix", type_=String)
    tickets = cast(Table, _tickets)
    ticket_keys = [column.key for column in tickets.c if column.key not in ("id", "number")]
    ticket_row = select(number, *_values_of(tickets, "ticket", ticket_keys)).select_from(counter)
    new_ticket = (
        pg_insert(tickets)
        .from_select(["number", *ticket_keys], ticket_row)
        .returning(tickets.c.id, tickets.c.number)
        .cte("new_ticket")
    )
    message_keys = ["author_id", "body", "internal", "channel", "created_at"]
    message_row = select(new_ticket.c.id, *_values_of(_MESSAGES, "message", message_keys)).select_from(new_ticket)
    new_message = (
        pg_insert(_MESSAGES)
        .from_select(["ticket_id", *message_keys], message_row)
        .returning(_MESSAGES.c.id, _MESSAGES.c.ticket_id)
        .cte("new_message")
    )
    data = func.json_build_object(
        literal("number", String),
        new_ticket.c.number,
        literal("title", String),
        bindparam("ticket_title", type_=String),
        literal("message_id", String),
        new_message.c.id,
    )
    event_keys = ["type", "actor_id", "internal", "created_at"]
    event_row = select(new_message.c.ticket_id, data, *_values_of(_EVENTS, "event", event_keys))
    new_event = (
        pg_insert(_EVENTS)
        .from_select(["ticket_id", "data", *event_keys], event_row.select_from(new_ticket.join(new_message, true())))
        .returning(_EVENTS.c.id)
        .cte("new_event")
    )
    statement = select(
        new_ticket.c.id, new_ticket.c.number, new_message.c.id.label("message_id"), new_event.c.id.label("event_id")
    ).select_from(new_ticket.join(new_message, true()).join(new_event, true()))
    statement = statement.add_cte(job_for_row(new_event, "event_id", "event"))
    if indexed:
        statement = statement.add_cte(_new_ticket_docs(new_message))
    if with_sla:
        statement = statement.add_cte(_new_ticket_sla(new_ticket))
    return statement


def _new_ticket_sla(new_ticket: CTE) -> CTE:
    """The SLA row, its policy checked as the ORM path checks it (crud_sla.existing_policy_id)."""
    policy = existing_policy_id(bindparam("sla_policy_id", type_=Integer))
    row = select(new_ticket.c.id, policy, *_values_of(_SLAS, "sla", _SLA_KEYS)).select_from(new_ticket)
    return pg_insert(_SLAS).from_select(["ticket_id", "policy_id", *_SLA_KEYS], row).cte("new_sla")


def _sla_values(sla: TicketSla, *, prefix: str = "") -> dict[str, Any]:
    """An unsaved SLA row's columns as `_INSERT_SLA` (no prefix) and `_new_ticket_sla` ("sla_")
    take them."""
    return {"sla_policy_id": sla.policy_id} | {f"{prefix}{key}": getattr(sla, key) for key in _SLA_KEYS}


def _new_ticket_docs(new_message: CTE) -> CTE:
    """The title's document and the first message's (its context: the title), as
    SearchIndex.index_new_ticket writes them."""
    docs = cast(Table, SearchDoc.__table__)
    title = bindparam("title_tokens", type_=docs.c.tokens.type)
    body = bindparam("body_tokens", type_=docs.c.tokens.type)
    rows = union_all(
        select(new_message.c.ticket_id, null(), false(), title, literal("", String)),
        select(new_message.c.ticket_id, new_message.c.id, false(), body, title),
    )
    columns = ["ticket_id", "message_id", "internal", "tokens", "context_tokens"]
    return pg_insert(docs).from_select(columns, rows).cte("new_docs")


_MESSAGES = cast(Table, Message.__table__)
_INSERT_TICKET = cast(Table, _tickets).insert().returning(_tickets.c.id)
_INSERT_MESSAGE = _MESSAGES.insert().returning(_MESSAGES.c.id)
_SLAS = cast(Table, TicketSla.__table__)
_SLA_KEYS = [column.key for column in _SLAS.c if column.key not in ("ticket_id", "policy_id")]
_INSERT_SLA = _SLAS.insert().values(policy_id=existing_policy_id(bindparam("sla_policy_id", type_=Integer)))


async def get_or_create_tags(session: AsyncSession, names: Sequence[str]) -> list[Tag]:
    wanted = sorted(set(names))
    if not wanted:
        return []
    insert = upsert_insert(dialect_name(session))
    now = utcnow()
    await session.execute(
        insert(Tag)
        .values([{"name": n, "created_at": now, "updated_at": now} for n in wanted])
        .on_conflict_do_nothing(index_elements=[Tag.name])
    )
    return list((await session.execute(select(Tag).where(Tag.name.in_(wanted)).order_by(Tag.name))).scalars())


async def list_messages(session: AsyncSession, ticket_id: int, *, include_internal: bool) -> list[Message]:
    stmt = (
        select(Message)
        .where(Message.ticket_id == ticket_id)
        .options(joinedload(Message.author), selectinload(Message.attachments))
        .order_by(Message.id)
    )
    if not include_internal:
        stmt = stmt.where(Message.internal.is_(False))
    return list((await session.execute(stmt)).unique().scalars())


async def get_message(session: AsyncSession, message_id: int) -> Message:
    stmt = (
        select(Message)
        .where(Message.id == message_id)
        .options(joinedload(Message.author), selectinload(Message.attachments))
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).unique().scalar_one()


async def events_by_id(session: AsyncSession, event_ids: Sequence[int]) -> list[TicketEvent]:
    """The events that still exist, in the order of `event_ids`."""
    found = await session.execute(select(TicketEvent).where(TicketEvent.id.in_(event_ids)))
    by_id = {event.id: event for event in found.scalars()}
    return [by_id[event_id] for event_id in event_ids if event_id in by_id]


async def list_events(session: AsyncSession, ticket_id: int, *, include_internal: bool) -> list[TicketEvent]:
    stmt = (
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket_id)
        .options(joinedload(TicketEvent.actor))
        .order_by(TicketEvent.id)
    )
    if not include_internal:
        stmt = stmt.where(TicketEvent.internal.is_(False))
    return list((await session.execute(stmt)).unique().scalars())


async def count_messages(session: AsyncSession, ticket_id: int, *, include_internal: bool) -> int:
    stmt = select(func.count()).select_from(Message).where(Message.ticket_id == ticket_id)
    if not include_internal:
        stmt = stmt.where(Message.internal.is_(False))
    return int((await session.execute(stmt)).scalar_one())


async def move_messages(session: AsyncSession, *, source_id: int, target_id: int) -> int:
    await session.execute(
        update(Attachment)
        .where(Attachment.ticket_id == source_id)
        .values(ticket_id=target_id)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(
        update(Message)
        .where(Message.ticket_id == source_id)
        .values(ticket_id=target_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult for DML


async def claim_attachments(
    session: AsyncSession, ids: Sequence[int], *, uploader_id: int, ticket_id: int, message_id: int
) -> bool:
    """Attach the caller's own, not yet attached uploads; False if any id is not such an upload."""
    if not ids:
        return True
    result = await session.execute(
        update(Attachment)
        .where(Attachment.id.in_(list(ids)), Attachment.uploader_id == uploader_id, Attachment.ticket_id.is_(None))
        .values(ticket_id=ticket_id, message_id=message_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount) == len(set(ids))  # type: ignore[attr-defined]  # CursorResult for DML


async def is_watching(session: AsyncSession, ticket_id: int, user_id: int) -> bool:
    stmt = select(ticket_watchers.c.user_id).where(
        ticket_watchers.c.ticket_id == ticket_id, ticket_watchers.c.user_id == user_id
    )
    return (await session.execute(stmt)).first() is not None


async def add_watcher(session: AsyncSession, ticket_id: int, user_id: int) -> None:
    if not await is_watching(session, ticket_id, user_id):
        await session.execute(ticket_watchers.insert().values(ticket_id=ticket_id, user_id=user_id))


async def remove_watcher(session: AsyncSession, ticket_id: int, user_id: int) -> None:
    await session.execute(
        ticket_watchers.delete().where(ticket_watchers.c.ticket_id == ticket_id, ticket_watchers.c.user_id == user_id)
    )


async def list_watchers(session: AsyncSession, ticket_id: int) -> list[User]:
    stmt = (
        select(User)
        .join(ticket_watchers, ticket_watchers.c.user_id == User.id)
        .where(ticket_watchers.c.ticket_id == ticket_id)
        .order_by(User.id)
    )
    return list((await session.execute(stmt)).scalars())


async def events_since(
    session: AsyncSession, user: User, *, after_id: int, limit: int
) -> list[tuple[TicketEvent, int]]:
    """Timeline events after `after_id` that `user` may see, with each ticket's requester (what
    realtime frames carry), oldest first."""
    readable = readable_by(user).with_only_columns(Ticket.id, Ticket.requester_id).subquery()
    stmt = (
        select(TicketEvent, readable.c.requester_id)
        .join(readable, readable.c.id == TicketEvent.ticket_id)
        .where(TicketEvent.id > after_id)
        .order_by(TicketEvent.id)
        .limit(limit)
    )
    if user.role == Role.customer:
        stmt = stmt.where(TicketEvent.internal.is_(False))
    return [(event, int(requester_id)) for event, requester_id in (await session.execute(stmt)).all()]
