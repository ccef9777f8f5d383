"""Tickets: create, list, read, change, messages, timeline, merge, rating, watchers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import Row, Subquery
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.v1.dependencies import (
    ClientChannel,
    Context,
    CurrentUser,
    IdempotencyKey,
    PageDep,
    PageParams,
    SessionDep,
    idempotent_create,
)
from app.core.errors import (
    FieldNotAllowed,
    Forbidden,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidReference,
    InvalidTransition,
    MergeNotAllowed,
    RatingNotAllowed,
    TicketClosed,
    TicketNotFound,
    VersionConflict,
    problem_responses,
)
from app.core.pagination import decode_cursor, encode_cursor
from app.crud import crud_ticket
from app.models.ticket import Channel, Priority, Ticket, TicketStatus
from app.models.user import User
from app.schemas.common import Page
from app.schemas.ticket import (
    MergeRequest,
    MessageCreate,
    MessageRead,
    RatingCreate,
    TicketCreate,
    TicketEventRead,
    TicketListItem,
    TicketRead,
    TicketUpdate,
    UserRef,
)
from app.services.ticket import is_staff

router = APIRouter(prefix="/tickets", tags=["tickets"])

SortName = Literal["relevance", "-updated_at", "created_at", "-created_at", "-priority", "due"]


def _etag(response: Response, ticket: Ticket) -> None:
    response.headers["ETag"] = f'"{ticket.version}"'


async def _if_match(if_match: Annotated[str | None, Header(alias="If-Match", max_length=64)] = None) -> int | None:
    """`If-Match: "<version>"` (weak or bare accepted); `*` or absent means no precondition."""
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise VersionConflict(precondition=True)
    return int(value)


IfMatch = Annotated[int | None, Depends(_if_match)]


@router.post(
    "",
    response_model=TicketRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(FieldNotAllowed, InvalidReference, IdempotencyKeyReused, IdempotencyKeyInProgress),
)
async def create_ticket(
    body: TicketCreate,
    request: Request,
    user: CurrentUser,
    ctx: Context,
    session: SessionDep,
    channel: ClientChannel,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create() -> Any:
        ticket = await ctx.tickets.create(session, body, actor=user, channel=channel)
        return TicketRead.model_validate(await crud_ticket.new_ticket_view(session, ticket, user))

    return await idempotent_create(session, request, user=user, key=idempotency_key, create=create)


@router.get("", response_model=Page[TicketListItem], responses=problem_responses(InvalidCursor))
async def list_tickets(
    user: CurrentUser,
    ctx: Context,
    session: SessionDep,
    page: PageDep,
    status_: Annotated[list[TicketStatus], Query(alias="status")] = [],  # noqa: B006  # FastAPI copies it
    priority: Priority | None = None,
    category_id: int | None = None,
    assignee_id: Annotated[str | None, Query(pattern=r"^(me|none|\d+)$")] = None,
    requester_id: int | None = None,
    team_id: int | None = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    channel: Channel | None = None,
    number: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    updated_after: datetime | None = None,
    sort: Annotated[SortName | None, Query(description="default: relevance with `q`, else -updated_at")] = None,
) -> dict[str, Any]:
    filters = crud_ticket.TicketFilters(
        status=status_,
        priority=priority,
        category_id=category_id,
        assignee_id=user.id
        if assignee_id == "me"
        else (int(assignee_id) if assignee_id and assignee_id.isdigit() else None),
        unassigned=assignee_id == "none",
        requester_id=requester_id,
        team_id=team_id,
        tag=tag.strip().casefold() if tag else None,
        channel=channel,
        number=number,
        created_after=_aware(created_after),
        created_before=_aware(created_before),
        updated_after=_aware(updated_after),
    )
    query = await ctx.search.parse(q) if q and q.strip() else None
    if query is not None and query.empty:
        return {"items": [], "next_cursor": None}  # only punctuation: nothing can match
    if query is None and sort in (None, "relevance"):
        sort = "-updated_at"
    elif sort is None:
        sort = "relevance"
    if query is not None and query.substring is not None and sort == "relevance":
        sort = "-created_at"  # a substring has no relevance: newest first
    if query is None:
        rows, next_cursor = await _ticket_page(session, user, filters, sort, page)
    elif sort == "relevance":
        readable = filters.apply(crud_ticket.readable_by(user))
        hits = await ctx.search.ranked(session, query, tickets=readable, staff=is_staff(user))
        rows, next_cursor = await _ranked_page(session, user, filters, hits, page)
    else:
        matching = ctx.search.condition(session, query, staff=is_staff(user))
        filters = replace(filters, conditions=[*filters.conditions, matching])
        rows, next_cursor = await _ticket_page(session, user, filters, sort, page)
    snippets = {}
    if query is not None:
        titles = {row.id: row.title for row in rows}
        snippets = await ctx.search.snippets(session, query, titles, include_internal=is_staff(user))
    # Plain dicts: the response model validates and serializes them once.
    items = [{**crud_ticket.ticket_view(row), "snippet": snippets.get(row.id)} for row in rows]
    return {"items": items, "next_cursor": next_cursor}


async def _ranked_page(
    session: AsyncSession, user: User, filters: crud_ticket.TicketFilters, hits: Subquery, page: PageParams
) -> tuple[list[Row[Any]], str | None]:
    """One page of search results, best first, and the cursor to the next."""
    scored = await crud_ticket.search_page(
        session, user, filters, hits, after=_after_score(page.cursor), limit=page.limit
    )
    more = len(scored) > page.limit
    scored = scored[: page.limit]
    cursor = encode_cursor({"s": "relevance", "k": scored[-1][1], "i": scored[-1][0].id}) if more else None
    return [row for row, _ in scored], cursor


async def _ticket_page(
    session: AsyncSession, user: User, filters: crud_ticket.TicketFilters, sort: str, page: PageParams
) -> tuple[list[Row[Any]], str | None]:
    """One page in `sort` order and the cursor to the next."""
    order = crud_ticket.SORTS[sort]
    rows = await crud_ticket.list_page(session, user, filters, order, after=_after(page.cursor, sort), limit=page.limit)
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    last = rows[-1]._mapping
    return rows, encode_cursor({"s": sort, "k": _key_json(last[order.key.key]), "i": last["id"]})


def _after_score(cursor: str | None) -> tuple[float, int] | None:
    if cursor is None:
        return None
    position = decode_cursor(cursor)
    score, last_id = position.get("k"), position.get("i")
    if position.get("s") != "relevance" or not isinstance(score, int | float) or not isinstance(last_id, int):
        raise InvalidCursor
    return float(score), last_id


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _key_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _after(cursor: str | None, sort: str) -> tuple[Any, int] | None:
    if cursor is None:
        return None
    position = decode_cursor(cursor)
    key, last_id = position.get("k"), position.get("i")
    if position.get("s") != sort or not isinstance(last_id, int):
        raise InvalidCursor
    if sort in ("-updated_at", "created_at", "-created_at", "due") and key is not None:
        try:
            key = datetime.fromisoformat(str(key))
        except ValueError:
            raise InvalidCursor from None
    elif (sort == "-priority" and not isinstance(key, int)) or (key is None and sort != "due"):
        raise InvalidCursor
    return key, last_id


@router.get("/{ticket_id}", response_model=TicketRead, responses=problem_responses(TicketNotFound))
async def read_ticket(ticket_id: int, user: CurrentUser, session: SessionDep, response: Response) -> dict[str, Any]:
    view = await crud_ticket.get_view(session, ticket_id, user)
    response.headers["ETag"] = f'"{view["version"]}"'
    return view


@router.patch(
    "/{ticket_id}",
    response_model=TicketRead,
    responses=problem_responses(TicketNotFound, FieldNotAllowed, InvalidReference, InvalidTransition, VersionConflict),
)
async def update_ticket(
    ticket_id: int,
    body: TicketUpdate,
    user: CurrentUser,
    ctx: Context,
    session: SessionDep,
    response: Response,
    if_match: IfMatch,
) -> Ticket:
    ticket = await crud_ticket.get_readable(session, ticket_id, user, for_update=True)
    ticket = await ctx.tickets.update(session, ticket, body, actor=user, expected_version=if_match)
    _etag(response, ticket)
    return ticket


@router.post(
    "/{ticket_id}/messages",
    response_model=MessageRead,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(
        TicketNotFound, FieldNotAllowed, TicketClosed, InvalidReference, IdempotencyKeyReused, IdempotencyKeyInProgress
    ),
)
async def add_message(
    ticket_id: int,
    body: MessageCreate,
    request: Request,
    user: CurrentUser,
    ctx: Context,
    session: SessionDep,
    channel: ClientChannel,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def create() -> Any:
        ticket = await crud_ticket.get_readable(session, ticket_id, user, for_update=True)
        message = await ctx.tickets.add_message(session, ticket, body, actor=user, channel=channel)
        return MessageRead.build(message, ctx.links.url_for)

    return await idempotent_create(session, request, user=user, key=idempotency_key, create=create)


@router.get("/{ticket_id}/messages", response_model=list[MessageRead], responses=problem_responses(TicketNotFound))
async def list_messages(ticket_id: int, user: CurrentUser, ctx: Context, session: SessionDep) -> list[MessageRead]:
    ticket = await crud_ticket.get_readable(session, ticket_id, user)
    messages = await crud_ticket.list_messages(session, ticket.id, include_internal=is_staff(user))
    return [MessageRead.build(m, ctx.links.url_for) for m in messages]


@router.get("/{ticket_id}/events", response_model=list[TicketEventRead], responses=problem_responses(TicketNotFound))
async def list_events(ticket_id: int, user: CurrentUser, session: SessionDep) -> list[Any]:
    ticket = await crud_ticket.get_readable(session, ticket_id, user)
    return await crud_ticket.list_events(session, ticket.id, include_internal=is_staff(user))


@router.post(
    "/{ticket_id}/merge",
    response_model=TicketRead,
    responses=problem_responses(TicketNotFound, Forbidden, MergeNotAllowed),
)
async def merge_ticket(
    ticket_id: int, body: MergeRequest, user: CurrentUser, ctx: Context, session: SessionDep
) -> Ticket:
    if not is_staff(user):
        await crud_ticket.get_readable(session, ticket_id, user)  # 404 before 403 for what is not theirs
        raise Forbidden
    # Both rows locked, in id order: two merges of the same pair in opposite directions wait
    # for each other instead of deadlocking.
    locked = {
        locked_id: await crud_ticket.get_readable(session, locked_id, user, for_update=True)
        for locked_id in sorted({ticket_id, body.into_ticket_id})
    }
    return await ctx.tickets.merge(session, locked[ticket_id], locked[body.into_ticket_id], actor=user)


@router.post(
    "/{ticket_id}/rating",
    response_model=TicketRead,
    responses=problem_responses(TicketNotFound, Forbidden, RatingNotAllowed),
)
async def rate_ticket(
    ticket_id: int, body: RatingCreate, user: CurrentUser, ctx: Context, session: SessionDep
) -> Ticket:
    ticket = await crud_ticket.get_readable(session, ticket_id, user, for_update=True)
    return await ctx.tickets.rate(session, ticket, body, actor=user)


@router.get("/{ticket_id}/watchers", response_model=list[UserRef], responses=problem_responses(TicketNotFound))
async def list_watchers(ticket_id: int, user: CurrentUser, session: SessionDep) -> list[User]:
    ticket = await crud_ticket.get_readable(session, ticket_id, user)
    if not is_staff(user):
        raise TicketNotFound  # watchers are agents' business: invisible to customers
    return await crud_ticket.list_watchers(session, ticket.id)


@router.put(
    "/{ticket_id}/watchers/me", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(TicketNotFound)
)
async def watch_ticket(ticket_id: int, user: CurrentUser, ctx: Context, session: SessionDep) -> Response:
    ticket = await crud_ticket.get_readable(session, ticket_id, user)
    await ctx.tickets.watch(session, ticket, actor=user, watching=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/{ticket_id}/watchers/me", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(TicketNotFound)
)
async def unwatch_ticket(ticket_id: int, user: CurrentUser, ctx: Context, session: SessionDep) -> Response:
    ticket = await crud_ticket.get_readable(session, ticket_id, user)
    await ctx.tickets.watch(session, ticket, actor=user, watching=False)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
