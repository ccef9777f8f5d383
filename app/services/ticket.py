"""The ticket workflow: who may do what, the status table, and the timeline.

Every change follows one path: change the rows, append `ticket_events`, flush. The request
(or job) that called owns the transaction and commits before it answers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.core.config import TicketSettings
from app.core.errors import (
    FieldNotAllowed,
    Forbidden,
    InvalidReference,
    InvalidTransition,
    MergeNotAllowed,
    RatingNotAllowed,
    TicketClosed,
    TicketNotFound,
    VersionConflict,
)
from app.crud import crud_search, crud_ticket
from app.db.base import loaded, utcnow
from app.db.session import PUBLISH_AFTER_COMMIT
from app.models.category import Category
from app.models.sla import TicketSla
from app.models.team import Team
from app.models.ticket import Channel, Message, Priority, Rating, Ticket, TicketEvent, TicketStatus
from app.models.user import Role, User
from app.realtime.bus import Frame
from app.schemas.ticket import MessageCreate, RatingCreate, TicketCreate, TicketUpdate
from app.services.assignment import AutoAssigner
from app.services.numbering import NumberShape, number_shape
from app.services.search import SearchIndex
from app.services.sla import SlaService

S = TicketStatus
# The job kind that fans a timeline event out (see app/jobs/handlers.py).
DISPATCH_EVENT = "events.dispatch"
STAFF = frozenset({Role.agent, Role.admin})

# API.md's status table. (from, to) -> who may make the move by changing the status.
# "requester" = the customer who owns the ticket; "staff" = agents and admins. Moves made by a
# reply (pending/resolved -> open, new -> open) are automatic and live in add_message.
_MOVES: dict[tuple[TicketStatus, TicketStatus], frozenset[str]] = {
    (S.new, S.open): frozenset({"staff"}),
    (S.new, S.pending): frozenset({"staff"}),
    (S.open, S.pending): frozenset({"staff"}),
    (S.pending, S.open): frozenset({"staff"}),
    (S.new, S.resolved): frozenset({"staff"}),
    (S.open, S.resolved): frozenset({"staff"}),
    (S.pending, S.resolved): frozenset({"staff"}),
    (S.resolved, S.open): frozenset({"staff", "requester_within_window"}),
    (S.new, S.closed): frozenset({"staff", "requester"}),
    (S.open, S.closed): frozenset({"staff", "requester"}),
    (S.pending, S.closed): frozenset({"staff", "requester"}),
    (S.resolved, S.closed): frozenset({"staff", "requester"}),
    (S.closed, S.open): frozenset({"staff"}),
}

# Fields a customer may send; anything else they send is 422 field_not_allowed.
_CUSTOMER_CREATE_FIELDS = frozenset({"title", "body", "category_id", "attachment_ids"})
_CUSTOMER_UPDATE_FIELDS = frozenset({"status"})


def is_staff(user: User) -> bool:
    return user.role in STAFF


@dataclass(frozen=True)
class SegmentedTicket:
    """A new ticket's title and first message as search tokens."""

    title: str
    body: str


class TicketService:
    def __init__(
        self,
        settings: TicketSettings,
        *,
        timezone: ZoneInfo,
        search: SearchIndex | None = None,
        assigner: AutoAssigner | None = None,
        sla: SlaService | None = None,
    ) -> None:
        self.settings = settings
        self.timezone = timezone
        # Keeps the full-text index in step with titles and messages (None: nothing indexed).
        self.search = search
        # Routes unassigned tickets by their category's team (None: no auto-assignment).
        self.assigner = assigner
        # Keeps SLA due dates in step with every change, as bookkeeping (None: no SLA).
        self.sla = sla

    # --- create ---------------------------------------------------------------------------

    async def create(self, session: AsyncSession, body: TicketCreate, *, actor: User, channel: Channel) -> Ticket:
        if not is_staff(actor):
            _refuse_fields(body, allowed=_CUSTOMER_CREATE_FIELDS)
        requester = await self._requester(session, body.requester_id, actor)
        category = await self._check_references(
            session, category_id=body.category_id, assignee_id=body.assignee_id, team_id=body.team_id
        )
        # Segmented before the first write: on SQLite, outside the write lock every creator waits for.
        tokens = None
        if self.search is not None:
            tokens = SegmentedTicket(*await self.search.segment_all(body.title, body.body))
        now = utcnow()
        values = _new_ticket(body, requester_id=requester.id, channel=channel, now=now)
        shape = number_shape(self.settings.number_format, self._day(now))
        if shape is not None and self._plain(body):
            ticket = await self._insert_plain(session, values, shape, actor=actor, text=body.body, tokens=tokens)
        else:
            tags = await crud_ticket.get_or_create_tags(session, body.tags or [])
            ticket = Ticket(**values, number=_unnumbered(), tags=tags)
            await self._insert_step_by_step(session, ticket, body, actor=actor, tokens=tokens)
        await self._auto_assign(session, ticket)
        del category  # held until here for the auto-assigner (see _check_references)
        await session.flush()
        # Flushed, not reloaded: callers want its id and number; the API answers with the read
        # model built from the session (crud_ticket.new_ticket_view), no statement.
        return ticket

    @staticmethod
    def _plain(body: TicketCreate) -> bool:
        """A create with only rows of its own to write (its SLA row among them): no tags,
        uploads, chosen assignee or team."""
        return not (body.tags or body.attachment_ids or body.assignee_id is not None or body.team_id is not None)

    async def _insert_plain(
        self,
        session: AsyncSession,
        values: dict[str, Any],
        shape: NumberShape,
        *,
        actor: User,
        text: str,
        tokens: SegmentedTicket | None,
    ) -> Ticket:
        """A plain create: its rows by Core statements, on PostgreSQL one statement, one round
        trip (crud_ticket.insert_new_ticket); the ticket joins the session as if loaded."""
        now = values["created_at"]
        sla = await self._new_ticket_sla(session, values, now)
        rows = await crud_ticket.insert_new_ticket(
            session,
            ticket=values,
            sla=sla,
            message={"author_id": actor.id, "body": text, "internal": False, "channel": values["channel"]},
            event={"type": "ticket.created", "actor_id": actor.id, "internal": False},
            day=self._day(now).isoformat(),
            number=shape,
            tokens=(tokens.title, tokens.body) if tokens is not None else None,
            dispatch=DISPATCH_EVENT,
        )
        ticket = loaded(Ticket, values | {"id": rows.ticket_id, "number": rows.number})
        set_committed_value(ticket, "tags", [])
        session.add(ticket)
        event = TicketEvent(
            id=rows.event_id,
            ticket_id=rows.ticket_id,
            type="ticket.created",
            actor_id=actor.id,
            internal=False,
            data={"number": rows.number, "title": ticket.title, "message_id": rows.message_id},
            created_at=now,
        )
        self._publish_after_commit(session, event, ticket)
        return ticket

    async def _new_ticket_sla(self, session: AsyncSession, values: dict[str, Any], now: datetime) -> TicketSla | None:
        """The SLA row of a plain create, if a policy applies; its due dates go into `values`."""
        if self.sla is None:
            return None
        unsaved = Ticket(**values)  # in no session: read and given due dates by the SLA rules only
        sla = await self.sla.new_ticket_sla(session, unsaved, now)
        values["first_response_due_at"] = unsaved.first_response_due_at
        values["resolution_due_at"] = unsaved.resolution_due_at
        return sla

    async def _insert_step_by_step(
        self, session: AsyncSession, ticket: Ticket, body: TicketCreate, *, actor: User, tokens: SegmentedTicket | None
    ) -> None:
        """Any create, by the unit of work: what has tags, uploads, a chosen assignee or team, an
        SLA policy, or a number format the database cannot render. The day's number: on PostgreSQL its counter row
        stays locked until the transaction commits, every other create of the day waiting for
        it, so it is taken last there (the ticket holds a placeholder meanwhile, replaced by the
        statement that takes the number). SQLite's write lock serialises whole write
        transactions anyway: taken first there."""
        now = ticket.created_at
        number_first = crud_ticket.writes_serialised(session)
        if number_first:
            ticket.number = await self._next_number(session, now)
        session.add(ticket)
        if self.sla is not None:
            with session.no_autoflush:  # its due dates go into its INSERT
                await self.sla.refresh(session, ticket, now, new=True)
        await session.flush()
        message = await self._write_message(
            session,
            ticket,
            actor=actor,
            text=body.body,
            internal=False,
            channel=ticket.channel,
            now=now,
            attachment_ids=body.attachment_ids,
            tokens=tokens,
        )
        if not number_first:
            await self._number_last(session, ticket, now)
        await self._record(
            session,
            ticket,
            "ticket.created",
            actor,
            data={"number": ticket.number, "title": ticket.title, "message_id": message.id},
        )
        if body.assignee_id is not None or body.team_id is not None:
            await self._record(
                session,
                ticket,
                "ticket.assigned",
                actor,
                internal=True,
                data={"assignee_id": [None, body.assignee_id], "team_id": [None, body.team_id]},
            )

    async def _requester(self, session: AsyncSession, requester_id: int | None, actor: User) -> User:
        if requester_id is None or requester_id == actor.id:
            return actor
        requester = await session.get(User, requester_id)
        if requester is None or not requester.is_active:
            raise InvalidReference("requester_id")
        return requester

    async def _check_references(
        self, session: AsyncSession, *, category_id: int | None, assignee_id: int | None, team_id: int | None
    ) -> Category | None:
        """422 for a reference to nothing (or to an inactive category, or to someone who cannot be
        assigned). Returns the category: a caller that keeps it keeps it in the session's identity
        map (which holds clean objects weakly), where the auto-assigner finds it without a query."""
        category = None
        if category_id is not None:
            category = await session.get(Category, category_id)
            if category is None or not category.is_active:
                raise InvalidReference("category_id")
        if assignee_id is not None:
            assignee = await session.get(User, assignee_id)
            if assignee is None or not assignee.is_active or assignee.role not in STAFF:
                raise InvalidReference("assignee_id")
        if team_id is not None and await session.get(Team, team_id) is None:
            raise InvalidReference("team_id")
        return category

    def _day(self, now: datetime) -> date:
        """The day a ticket's number counts in: the helpdesk's own time zone."""
        return now.astimezone(self.timezone).date()

    async def _next_number(self, session: AsyncSession, now: datetime) -> str:
        day = self._day(now)
        seq = await crud_ticket.next_sequence(session, day.isoformat())
        return self.settings.number_format.format(date=day, seq=seq)

    async def _number_last(self, session: AsyncSession, ticket: Ticket, now: datetime) -> None:
        """PostgreSQL: the day's number replaces the placeholder, in the statement that takes it
        when the format allows (app/services/numbering.py), else by an UPDATE after it."""
        day = self._day(now)
        shape = number_shape(self.settings.number_format, day)
        if shape is None:
            ticket.number = await self._next_number(session, now)
            await session.flush()
            return
        number = await crud_ticket.take_number(
            session, ticket.id, day.isoformat(), prefix=shape.prefix, width=shape.width, suffix=shape.suffix
        )
        set_committed_value(ticket, "number", number)  # written already: nothing for the flush to do

    async def _write_message(
        self,
        session: AsyncSession,
        ticket: Ticket,
        *,
        actor: User,
        text: str,
        internal: bool,
        channel: Channel,
        now: datetime,
        attachment_ids: Sequence[int] | None,
        tokens: SegmentedTicket | None = None,
    ) -> Message:
        """The message row, with the caller's own unattached uploads claimed for it. `tokens`:
        a new ticket's title and first message, already segmented."""
        message = Message(
            ticket_id=ticket.id, author_id=actor.id, body=text, internal=internal, channel=channel, created_at=now
        )
        session.add(message)
        await session.flush()
        if self.search is not None:
            if tokens is not None:
                await self.search.index_new_ticket(session, message, title_tokens=tokens.title, tokens=tokens.body)
            else:
                await self.search.index_message(session, message)
        if attachment_ids and not await crud_ticket.claim_attachments(
            session, attachment_ids, uploader_id=actor.id, ticket_id=ticket.id, message_id=message.id
        ):
            raise InvalidReference("attachment_ids")
        return message

    # --- update ---------------------------------------------------------------------------

    async def update(
        self,
        session: AsyncSession,
        ticket: Ticket,
        body: TicketUpdate,
        *,
        actor: User,
        expected_version: int | None = None,
    ) -> Ticket:
        if expected_version is not None and expected_version != ticket.version:
            raise VersionConflict(precondition=True, current_version=ticket.version)
        if not is_staff(actor):
            _refuse_fields(body, allowed=_CUSTOMER_UPDATE_FIELDS)
        sent = {name for name in body.model_fields_set if getattr(body, name) is not None or name in _NULLABLE}
        now = utcnow()
        changes: dict[str, list[Any]] = {}
        routing: dict[str, list[Any]] = {}

        if "status" in sent and body.status is not None and body.status != ticket.status:
            self._check_move(ticket, body.status, actor, now)
            changes["status"] = [ticket.status.value, body.status.value]
            self._set_status(ticket, body.status, now)
        if "title" in sent and body.title is not None and body.title != ticket.title:
            changes["title"] = [ticket.title, body.title]
            ticket.title = body.title
            if self.search is not None:
                await self.search.index_title(session, ticket)
        if "priority" in sent and body.priority is not None and body.priority != ticket.priority:
            changes["priority"] = [ticket.priority.value, body.priority.value]
            ticket.priority, ticket.priority_rank = body.priority, body.priority.rank
        if "category_id" in sent and body.category_id != ticket.category_id:
            await self._check_references(session, category_id=body.category_id, assignee_id=None, team_id=None)
            changes["category_id"] = [ticket.category_id, body.category_id]
            ticket.category_id = body.category_id
        if "tags" in sent and body.tags is not None:
            old = [tag.name for tag in ticket.tags]
            if sorted(set(body.tags)) != old:
                ticket.tags = await crud_ticket.get_or_create_tags(session, body.tags)
                changes["tags"] = [old, [tag.name for tag in ticket.tags]]
        if "assignee_id" in sent and body.assignee_id != ticket.assignee_id:
            await self._check_references(session, category_id=None, assignee_id=body.assignee_id, team_id=None)
            routing["assignee_id"] = [ticket.assignee_id, body.assignee_id]
            ticket.assignee_id = body.assignee_id
        if "team_id" in sent and body.team_id != ticket.team_id:
            await self._check_references(session, category_id=None, assignee_id=None, team_id=body.team_id)
            routing["team_id"] = [ticket.team_id, body.team_id]
            ticket.team_id = body.team_id

        if changes:
            await self._record(session, ticket, "ticket.updated", actor, data=changes)
        if routing:
            await self._record(session, ticket, "ticket.assigned", actor, internal=True, data=routing)
        if "category_id" in changes and "assignee_id" not in sent:  # an assignee chosen here wins
            await self._auto_assign(session, ticket)
        if changes or routing:
            self._touch(ticket, now)
        return await self._save(session, ticket)

    def _check_move(self, ticket: Ticket, target: TicketStatus, actor: User, now: datetime) -> None:
        allowed = _MOVES.get((ticket.status, target), frozenset())
        if is_staff(actor) and "staff" in allowed:
            return
        if actor.id == ticket.requester_id:
            if "requester" in allowed:
                return
            window = timedelta(days=self.settings.reopen_window_days)
            resolved_at = ticket.resolved_at
            if "requester_within_window" in allowed and resolved_at is not None and now - resolved_at <= window:
                return
        raise InvalidTransition

    def _set_status(self, ticket: Ticket, status: TicketStatus, now: datetime) -> None:
        ticket.status = status
        if status == S.resolved:
            ticket.resolved_at = now
        elif status == S.closed:
            ticket.closed_at = now
        elif status in (S.open, S.pending, S.new):
            ticket.resolved_at = None
            ticket.closed_at = None

    # --- messages -------------------------------------------------------------------------

    async def add_message(
        self, session: AsyncSession, ticket: Ticket, body: MessageCreate, *, actor: User, channel: Channel
    ) -> Message:
        staff = is_staff(actor)
        if body.internal and not staff:
            raise FieldNotAllowed("internal")
        if ticket.status == S.closed and not body.internal:
            raise TicketClosed
        now = utcnow()
        message = await self._write_message(
            session,
            ticket,
            actor=actor,
            text=body.body,
            internal=body.internal,
            channel=channel,
            now=now,
            attachment_ids=body.attachment_ids,
        )
        if body.internal:
            # Internal notes leave the ticket as the customer sees it untouched (updated_at too).
            await self._record(
                session, ticket, "ticket.note_added", actor, internal=True, data={"message_id": message.id}
            )
            await session.flush()
            return await crud_ticket.get_message(session, message.id)
        await self._record(session, ticket, "ticket.message_added", actor, data={"message_id": message.id})
        await self._auto_transition(session, ticket, actor, staff=staff, now=now)
        self._touch(ticket, now)
        await self._save(session, ticket)
        return await crud_ticket.get_message(session, message.id)

    async def _auto_transition(
        self, session: AsyncSession, ticket: Ticket, actor: User, *, staff: bool, now: datetime
    ) -> None:
        target: TicketStatus | None = None
        if staff and actor.id != ticket.requester_id:
            if ticket.first_responded_at is None:
                ticket.first_responded_at = now
            if ticket.status == S.new:
                target = S.open
        elif actor.id == ticket.requester_id and ticket.status in (S.pending, S.resolved):
            target = S.open
        if target is not None:
            await self._record(
                session,
                ticket,
                "ticket.updated",
                None,
                data={"status": [ticket.status.value, target.value], "automatic": True},
            )
            self._set_status(ticket, target, now)

    async def close_automatically(self, session: AsyncSession, ticket: Ticket, *, resolved_before: datetime) -> Ticket:
        """Resolved for long enough: closed by the system (API.md's "Automatic" column). Checked
        again on the locked row: a ticket reopened and resolved again since the job chose it has
        a new `resolved_at` and is not due yet."""
        if ticket.status != S.resolved or ticket.resolved_at is None or ticket.resolved_at > resolved_before:
            return ticket
        now = utcnow()
        await self._record(
            session,
            ticket,
            "ticket.updated",
            None,
            data={"status": [ticket.status.value, S.closed.value], "automatic": True},
        )
        self._set_status(ticket, S.closed, now)
        self._touch(ticket, now)
        return await self._save(session, ticket)

    # --- merge and rating -----------------------------------------------------------------

    async def merge(self, session: AsyncSession, source: Ticket, target: Ticket, *, actor: User) -> Ticket:
        if not is_staff(actor):
            raise Forbidden
        if source.id == target.id or source.merged_into_id is not None or target.status == S.closed:
            raise MergeNotAllowed
        if source.requester_id != target.requester_id:
            # Moving one customer's messages into another customer's ticket would show them to
            # a stranger: merging is for duplicates from the same requester.
            raise MergeNotAllowed(reason="different_requesters")
        now = utcnow()
        # The event is public: it counts what the customer will see, never the internal notes.
        public_moved = await crud_ticket.count_messages(session, source.id, include_internal=False)
        await crud_ticket.move_messages(session, source_id=source.id, target_id=target.id)
        await crud_search.move_docs(session, source_id=source.id, target_id=target.id)
        await self._record(
            session, source, "ticket.merged", actor, data={"into": target.id, "into_number": target.number}
        )
        await self._record(
            session,
            target,
            "ticket.merged",
            actor,
            data={"from": source.id, "from_number": source.number, "messages": public_moved},
        )
        source.merged_into_id = target.id
        if source.status != S.closed:
            self._set_status(source, S.closed, now)
        self._touch(source, now)
        self._touch(target, now)
        await self._save(session, target)
        return await self._save(session, source)

    async def rate(self, session: AsyncSession, ticket: Ticket, body: RatingCreate, *, actor: User) -> Ticket:
        if actor.id != ticket.requester_id:
            raise Forbidden
        if ticket.status not in (S.resolved, S.closed) or ticket.merged_into_id is not None:
            raise RatingNotAllowed(reason="not_resolved")
        now = utcnow()
        rating = ticket.rating
        if rating is None:
            rating = Rating(ticket_id=ticket.id, score=body.score, comment=body.comment, created_at=now, updated_at=now)
            session.add(rating)
        elif now - rating.created_at > timedelta(days=self.settings.rating_edit_days):
            raise RatingNotAllowed(reason="edit_window_passed")
        else:
            rating.score, rating.comment, rating.updated_at = body.score, body.comment, now
        await self._record(session, ticket, "ticket.rated", actor, data={"score": body.score})
        self._touch(ticket, now)
        return await self._save(session, ticket)

    # --- requester ------------------------------------------------------------------------

    async def change_requester(
        self, session: AsyncSession, ticket: Ticket, *, requester: User, actor: User | None
    ) -> None:
        """Hands the ticket to another requester (a QQ account's tickets follow it to the web
        account it binds to). Users see this change: the ticket enters the new requester's list
        and `requester` in its body changes; so, like `update`, it is a public `ticket.updated`
        (`{"requester_id": [old, new]}`, one of API.md's event names) and bumps version and
        updated_at, which also lets clients that sync with `updated_after=` pick it up."""
        if ticket.requester_id == requester.id:
            return
        previous = ticket.requester_id
        ticket.requester_id = requester.id
        self._touch(ticket, utcnow())
        # After the change: the realtime frame is addressed to the new requester.
        await self._record(session, ticket, "ticket.updated", actor, data={"requester_id": [previous, requester.id]})
        await self._save(session, ticket)  # reloads `ticket` in place, `requester` included

    # --- watchers -------------------------------------------------------------------------

    async def watch(self, session: AsyncSession, ticket: Ticket, *, actor: User, watching: bool) -> None:
        if not is_staff(actor):
            raise TicketNotFound  # watchers are invisible to customers, as is this route
        if watching:
            await crud_ticket.add_watcher(session, ticket.id, actor.id)
        else:
            await crud_ticket.remove_watcher(session, ticket.id, actor.id)

    async def record_notification_failure(
        self, session: AsyncSession, ticket: Ticket, *, channel: str, recipient: str, reason: str
    ) -> None:
        """A notification that can never be delivered (a QQ user who is not the bot's friend,
        with no group to reach them in): shown to agents on the timeline, as an internal
        `ticket.updated` (API.md fixes the event names). Bookkeeping: `version` stays."""
        data = {"delivery": {"channel": channel, "recipient": recipient, "status": "undeliverable", "reason": reason}}
        await self._record(session, ticket, "ticket.updated", None, internal=True, data=data)

    async def record_attachment_failure(self, session: AsyncSession, ticket: Ticket, *, name: str, reason: str) -> None:
        """An image sent from QQ that could not be fetched: the text stays, agents see why the
        picture is missing (internal, bookkeeping)."""
        data = {"attachment": {"name": name, "status": "failed", "reason": reason}}
        await self._record(session, ticket, "ticket.updated", None, internal=True, data=data)

    async def record_sla_event(self, session: AsyncSession, ticket: Ticket, kind: str, data: dict[str, Any]) -> None:
        """`sla.warning` / `sla.breached` from the periodic check (app/services/sla.py): for
        agents (internal), by the system, bookkeeping (`version` stays)."""
        await self._record(session, ticket, kind, None, internal=True, data=data)

    async def apply_ai_triage(
        self,
        session: AsyncSession,
        ticket: Ticket,
        *,
        suggestion: dict[str, Any],
        category_id: int | None = None,
        priority: Priority | None = None,
        add_tags: Sequence[str] = (),
    ) -> Ticket:
        """The AI's triage (app/llm/triage.py): the suggestion on the internal timeline for
        agents (bookkeeping: `version` stays) and, in mode `apply`, the fields the caller found
        still unset, written like any change with no actor and `"by": "ai"`. Tags are only
        added; the caller passes names of tags that exist."""
        await self._record(
            session, ticket, "ticket.updated", None, internal=True, data={"by": "ai", "triage": suggestion}
        )
        changes: dict[str, list[Any]] = {}
        if category_id is not None and ticket.category_id is None:
            await self._check_references(session, category_id=category_id, assignee_id=None, team_id=None)
            changes["category_id"] = [None, category_id]
            ticket.category_id = category_id
        if priority is not None and priority != ticket.priority:
            changes["priority"] = [ticket.priority.value, priority.value]
            ticket.priority, ticket.priority_rank = priority, priority.rank
        old = [tag.name for tag in ticket.tags]
        if set(add_tags) - set(old):
            ticket.tags = await crud_ticket.get_or_create_tags(session, [*old, *add_tags])
            changes["tags"] = [old, [tag.name for tag in ticket.tags]]
        if not changes:
            await session.flush()
            return ticket
        await self._record(session, ticket, "ticket.updated", None, data={**changes, "by": "ai"})
        if "category_id" in changes:
            await self._auto_assign(session, ticket)
        self._touch(ticket, utcnow())
        return await self._save(session, ticket)

    # --- shared steps ---------------------------------------------------------------------

    async def _record(
        self,
        session: AsyncSession,
        ticket: Ticket,
        kind: str,
        actor: User | None,
        *,
        internal: bool = False,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append to the timeline and, in the same transaction, the job that fans the event out
        (webhooks now; notifications and realtime later)."""
        event = TicketEvent(
            ticket_id=ticket.id,
            type=kind,
            actor_id=actor.id if actor else None,
            internal=internal,
            data=data or {},
            created_at=utcnow(),
        )
        event.id = await crud_ticket.add_event(session, event, dispatch=DISPATCH_EVENT)
        self._publish_after_commit(session, event, ticket)

    @staticmethod
    def _publish_after_commit(session: AsyncSession, event: TicketEvent, ticket: Ticket) -> None:
        session.info.setdefault(PUBLISH_AFTER_COMMIT, []).append(Frame.of(event, requester_id=ticket.requester_id))

    async def _auto_assign(self, session: AsyncSession, ticket: Ticket) -> None:
        """An unassigned ticket with a category goes to the category's team and, by the team's
        strategy, to a member (app/services/assignment.py): internal, by the system."""
        data = await self.assigner.apply(session, ticket) if self.assigner is not None else None
        if data is not None:
            await self._record(session, ticket, "ticket.assigned", None, internal=True, data=data)

    def _touch(self, ticket: Ticket, now: datetime) -> None:
        """A change users see: newer updated_at, next version."""
        ticket.updated_at = now
        ticket.version = ticket.version + 1

    async def _save(self, session: AsyncSession, ticket: Ticket) -> Ticket:
        # A lost race shows up as StaleDataError at this (or an earlier) flush; the error
        # handlers answer it as 409 version_conflict.
        if self.sla is not None:  # every change ends here: status, priority, category, first reply
            await self.sla.refresh(session, ticket, utcnow())
        await session.flush()
        return await crud_ticket.reload(session, ticket.id)


_NULLABLE = frozenset({"category_id", "assignee_id", "team_id"})
# What a new ticket's INSERT writes besides its id and number.
_NEW_TICKET_KEYS = tuple(column.key for column in Ticket.__table__.c if column.key not in ("id", "number"))


def _new_ticket(body: TicketCreate, *, requester_id: int, channel: Channel, now: datetime) -> dict[str, Any]:
    """A new ticket's column values but its id and number (None where it has none yet)."""
    priority = body.priority or Priority.normal
    return dict.fromkeys(_NEW_TICKET_KEYS) | {
        "title": body.title,
        "status": S.new,
        "priority": priority,
        "priority_rank": priority.rank,
        "channel": channel,
        "category_id": body.category_id,
        "requester_id": requester_id,
        "assignee_id": body.assignee_id,
        "team_id": body.team_id,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }


def _unnumbered() -> str:
    """A new ticket's number until it takes the day's next one, at the end of its transaction
    (unique, so the column's unique index holds meanwhile; never committed)."""
    return f"~{secrets.token_hex(12)}"


def _refuse_fields(body: TicketCreate | TicketUpdate, *, allowed: frozenset[str]) -> None:
    """422 for a field the caller may not set. On a create a null is the default anyway; on an
    update a null clears the field (`assignee_id: null` unassigns), so it counts as setting it."""
    clearing_counts = isinstance(body, TicketUpdate)
    for name in sorted(body.model_fields_set - allowed):
        if clearing_counts or getattr(body, name) is not None:
            raise FieldNotAllowed(name)
