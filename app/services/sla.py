"""SLA: due dates in business time, paused while the customer has the ball, and the periodic
check that raises `sla.warning` / `sla.breached` once per ticket and target.

- `refresh` runs in the transaction of every ticket change (TicketService calls it) and keeps
  `tickets.first_response_due_at` / `resolution_due_at` and the `ticket_slas` row in step. It is
  bookkeeping: `version` and `updated_at` stay. Due dates are always recomputed from
  `created_at` in business time plus the business seconds the clock stood still, so a priority
  or category change gives the answer the new policy would have given from the start.
- The clock runs in `new` and `open`; `pending`, `resolved` and `closed` stop it (their business
  seconds are added to `paused_seconds` when it runs again). While `pending`, the due dates of
  targets not met yet are null (unknown until the customer answers); resolved and closed tickets
  keep the last due dates, so reports can compare.
- `check` (the `sla.check` job) claims due alerts with conditional UPDATEs and records each as
  an internal timeline event through TicketService, so realtime, webhooks and the QQ agent
  groups get it the usual way.
- The calendar: the copy an admin saved (`business_calendars`) wins over the settings file,
  which wins over the built-in default. Each process caches the parsed calendar by the row's
  revision and reads that one integer when it needs the calendar.
- The policies: each process keeps them (`PolicyCache`), so a new ticket's policy costs no
  query; a commit that writes policies or categories clears the cache here and, through Redis,
  in the other processes.
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.config import SlaSettings
from app.crud import crud_sla
from app.models.category import Category
from app.models.sla import BusinessCalendarRow, SlaPolicy, TicketSla
from app.models.ticket import Priority, Ticket, TicketStatus
from app.schemas.sla import BusinessCalendarDocument
from app.services.business_calendar import DEFAULT_RULES, BusinessCalendar, CalendarRules

if TYPE_CHECKING:
    from app.services.ticket import TicketService

log = logging.getLogger(__name__)

S = TicketStatus
RUNNING = frozenset({S.new, S.open})
SLA_WARNING = "sla.warning"
SLA_BREACHED = "sla.breached"
FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"

CalendarSource = Literal["database", "file", "default"]
# What choosing a ticket's policy reads: a commit writing any of these clears PolicyCache.
POLICY_MODELS: tuple[type, ...] = (SlaPolicy, Category, BusinessCalendarRow)
# Without Redis, how long another process may keep choosing by policies changed meanwhile.
POLICY_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class CalendarState:
    source: CalendarSource
    calendar: BusinessCalendar
    revision: int | None
    updated_at: datetime | None


def read_calendar_file(path: Path) -> CalendarRules:
    """The settings file: TOML (`.toml`) or JSON (anything else), the same document as
    PUT /business-calendar. Raises ValueError naming the file on any problem."""
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8")) if path.suffix == ".toml" else json.loads(raw)
        return BusinessCalendarDocument.model_validate(data).rules()
    except (OSError, ValueError) as exc:  # pydantic's ValidationError and TOML/JSON errors are ValueErrors
        raise ValueError(f"HELPDESK_SLA__CALENDAR_FILE {path}: {exc}") from exc


@dataclass(frozen=True)
class PolicyTargets:
    """What due dates need of a policy (the cache keeps these, never ORM objects)."""

    id: int
    first_response_minutes: int | None
    resolution_minutes: int | None


@dataclass(frozen=True)
class PolicyTable:
    policies: dict[tuple[Priority, int | None], PolicyTargets]
    parents: dict[int, int]  # subcategory id -> its parent's id

    def choose(self, priority: Priority, category_id: int | None) -> PolicyTargets | None:
        """The most specific policy: the ticket's category, then its parent category, then the
        priority alone."""
        if category_id is not None:
            for scope in (category_id, self.parents.get(category_id)):
                policy = self.policies.get((priority, scope)) if scope is not None else None
                if policy is not None:
                    return policy
        return self.policies.get((priority, None))


class PolicyCache:
    """The policies and the categories' parents, read in two queries when needed and kept.

    `clear()` runs after every commit that wrote policies or categories in this process, and in
    every process when Redis fans it out (`on_clear`); `ttl_seconds` bounds what a process
    without Redis can miss."""

    def __init__(self, ttl_seconds: float = POLICY_CACHE_SECONDS, *, clock: Callable[[], float] = time.monotonic):
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.on_clear: list[Callable[[], None]] = []  # e.g. tell the other processes
        # Counts the clears: a table read before one must not be kept after it.
        self.generation = 0
        self._table: PolicyTable | None = None
        self._expires_at = 0.0

    async def table(self, session: AsyncSession) -> PolicyTable:
        table = self._table
        if table is not None and self.clock() < self._expires_at:
            return table
        generation = self.generation
        rows, parents = await crud_sla.policy_table(session)
        policies = {
            (row.priority, row.category_id): PolicyTargets(row.id, row.first_response_minutes, row.resolution_minutes)
            for row in rows
        }
        table = PolicyTable(policies, parents)
        if generation == self.generation:
            self._table, self._expires_at = table, self.clock() + self.ttl_seconds
        return table

    def clear(self) -> None:
        """Forget the table, here and (through `on_clear`) in the other processes."""
        self.forget()
        for notify in self.on_clear:
            notify()

    def forget(self) -> None:
        """Forget the table here (what another process's `clear` arrives as)."""
        self._table = None
        self.generation += 1


@dataclass(frozen=True)
class _KeptCalendar:
    calendar: BusinessCalendar
    generation: int  # PolicyCache's when it was read
    until: float  # on PolicyCache's clock


@dataclass(frozen=True)
class _Alert:
    kind: str
    target: str
    due: InstrumentedAttribute[datetime | None]
    sent: InstrumentedAttribute[datetime | None]
    also_clear: tuple[InstrumentedAttribute[datetime | None], ...] = ()


# Breaches first: a breach found in the same run as its warning makes the warning pointless.
_ALERTS = (
    _Alert(
        SLA_BREACHED,
        FIRST_RESPONSE,
        TicketSla.first_response_breach_at,
        TicketSla.first_response_breached_at,
        (TicketSla.first_response_warn_at,),
    ),
    _Alert(
        SLA_BREACHED,
        RESOLUTION,
        TicketSla.resolution_breach_at,
        TicketSla.resolution_breached_at,
        (TicketSla.resolution_warn_at,),
    ),
    _Alert(SLA_WARNING, FIRST_RESPONSE, TicketSla.first_response_warn_at, TicketSla.first_response_warned_at),
    _Alert(SLA_WARNING, RESOLUTION, TicketSla.resolution_warn_at, TicketSla.resolution_warned_at),
)


class SlaService:
    def __init__(self, settings: SlaSettings, *, timezone: ZoneInfo) -> None:
        self.settings = settings
        self.timezone = timezone
        self._file_rules: CalendarRules | None = None
        self._cached: CalendarState | None = None
        self._kept_calendar: _KeptCalendar | None = None
        self.policies = PolicyCache()

    def load_file(self) -> None:
        """Reads HELPDESK_SLA__CALENDAR_FILE at start-up: a broken file stops the start."""
        path = self.settings.calendar_file
        self._file_rules = read_calendar_file(path) if path is not None else None
        self._cached = self._kept_calendar = None

    # --- the calendar -------------------------------------------------------------------------

    async def calendar_state(self, session: AsyncSession) -> CalendarState:
        revision = await crud_sla.calendar_revision(session)
        cached = self._cached
        if cached is not None and cached.revision == revision:
            return cached
        row = await crud_sla.get_calendar(session) if revision is not None else None
        if row is not None and row.document is not None:
            state = CalendarState(
                "database",
                BusinessCalendar(CalendarRules.parse(row.document), self.timezone),
                row.revision,
                row.updated_at,
            )
        else:
            source: CalendarSource = "file" if self._file_rules is not None else "default"
            rules = self._file_rules or DEFAULT_RULES
            state = CalendarState(source, BusinessCalendar(rules, self.timezone), revision, None)
        self._cached = state
        return state

    async def calendar(self, session: AsyncSession) -> BusinessCalendar:
        """The calendar due dates are computed with. Kept as long as the policies are: the commits
        that clear PolicyCache (POLICY_MODELS) include the calendar's, so a ticket change reads
        nothing for it; `calendar_state`, what admins are shown, reads the revision every time."""
        kept = self._kept_calendar
        if kept is not None and kept.generation == self.policies.generation and self.policies.clock() < kept.until:
            return kept.calendar
        generation = self.policies.generation
        calendar = (await self.calendar_state(session)).calendar
        if generation == self.policies.generation:  # no clear while it was read
            until = self.policies.clock() + self.policies.ttl_seconds
            self._kept_calendar = _KeptCalendar(calendar, generation, until)
        return calendar

    async def save_calendar(
        self, session: AsyncSession, document: BusinessCalendarDocument | None, *, user_id: int
    ) -> CalendarState:
        """Saves the admin's calendar (None: back to the file or the default). New due dates
        use it at once; tickets already running keep theirs until their next relevant change."""
        normalised = document.rules().document() if document is not None else None
        await crud_sla.save_calendar(session, normalised, user_id=user_id)
        self._cached = self._kept_calendar = None  # and, after the commit, everywhere (POLICY_MODELS)
        return await self.calendar_state(session)

    # --- due dates ----------------------------------------------------------------------------

    async def refresh(self, session: AsyncSession, ticket: Ticket, now: datetime, *, new: bool = False) -> None:
        """Brings the ticket's due dates and SLA row up to date after a change (bookkeeping:
        never bumps `version`). Cheap when nothing that matters changed: one primary-key read.
        `new`: a ticket being created, before its INSERT, so its due dates are part of it (no
        read, and no UPDATE after)."""
        state = None if new else await crud_sla.ticket_sla(session, ticket.id)
        basis = _basis(ticket)
        if state is not None and state.basis == basis:
            return
        policy = (await self.policies.table(session)).choose(ticket.priority, ticket.category_id)
        if state is None:
            if new and policy is None:
                # Nothing to keep: no due date, a clock that has not stopped. The row is made at
                # the ticket's first change, which computes everything from its creation.
                ticket.first_response_due_at = ticket.resolution_due_at = None
                return
            state = TicketSla(ticket=ticket, basis="", paused_seconds=0)
            session.add(state)
        state.policy_id = crud_sla.existing_policy_id(policy.id) if policy is not None else None
        await self._bring_up_to_date(session, ticket, state, policy, now)

    async def new_ticket_sla(self, session: AsyncSession, ticket: Ticket, now: datetime) -> TicketSla | None:
        """For a create that writes its rows by Core statements (TicketService._insert_plain):
        what `refresh(new=True)` does, on a `ticket` and an SLA row that belong to no session. Sets
        the ticket's due dates; returns the row to insert (its `policy_id` a plain id, to be
        checked by the INSERT as `existing_policy_id` does), or None when no policy applies."""
        policy = (await self.policies.table(session)).choose(ticket.priority, ticket.category_id)
        if policy is None:
            ticket.first_response_due_at = ticket.resolution_due_at = None
            return None
        state = TicketSla(basis="", paused_seconds=0, policy_id=policy.id)
        await self._bring_up_to_date(session, ticket, state, policy, now)
        return state

    async def _bring_up_to_date(
        self, session: AsyncSession, ticket: Ticket, state: TicketSla, policy: PolicyTargets | None, now: datetime
    ) -> None:
        """The due dates, the clock and the alert times of `ticket` and its SLA row under `policy`."""
        responded = ticket.first_responded_at
        state.basis = _basis(ticket)
        running = ticket.status in RUNNING
        if policy is None and state.paused_at is None:
            # No target to place and no pause to measure: no business time, so no calendar.
            self._stop_or_start_clock(state, None, responded, running, now)
            _no_targets(ticket, state)
            return
        calendar = await self.calendar(session)
        self._stop_or_start_clock(state, calendar, responded, running, now)
        self._first_response(ticket, state, policy, calendar, running)
        self._resolution(ticket, state, policy, calendar, running)

    @staticmethod
    def _stop_or_start_clock(
        state: TicketSla, calendar: BusinessCalendar | None, responded: datetime | None, running: bool, now: datetime
    ) -> None:
        """Pause bookkeeping. `calendar` is None only for a clock that is not paused."""
        if responded is not None and state.response_paused_seconds is None:
            # The first response's clock stops here: remember how much time was paused by then.
            paused_by_then = state.paused_seconds
            if state.paused_at is not None and calendar is not None:
                paused_by_then += calendar.elapsed(state.paused_at, responded)
            state.response_paused_seconds = paused_by_then
        if running and state.paused_at is not None and calendar is not None:
            state.paused_seconds += calendar.elapsed(state.paused_at, now)
            state.paused_at = None
        elif not running and state.paused_at is None:
            state.paused_at = now

    def _first_response(
        self, ticket: Ticket, state: TicketSla, policy: PolicyTargets | None, calendar: BusinessCalendar, running: bool
    ) -> None:
        minutes = policy.first_response_minutes if policy is not None else None
        due: datetime | None = None
        if minutes is not None:
            if state.response_paused_seconds is not None:
                due = calendar.add(ticket.created_at, minutes * 60 + state.response_paused_seconds)
            elif ticket.status != S.pending:
                due = calendar.add(ticket.created_at, minutes * 60 + state.paused_seconds)
        ticket.first_response_due_at = due
        alerting = minutes is not None and due is not None and running and ticket.first_responded_at is None
        late = _met_late(ticket.first_responded_at, due)
        breach = (alerting or late) and state.first_response_breached_at is None
        state.first_response_breach_at = due if breach else None
        state.first_response_warn_at = (
            self._warn_at(calendar, ticket, minutes, state.paused_seconds)
            if alerting
            and minutes is not None
            and self._may_warn(state.first_response_warned_at, state.first_response_breached_at)
            else None
        )

    def _resolution(
        self, ticket: Ticket, state: TicketSla, policy: PolicyTargets | None, calendar: BusinessCalendar, running: bool
    ) -> None:
        minutes = policy.resolution_minutes if policy is not None else None
        due: datetime | None = None
        if minutes is not None and ticket.status != S.pending:
            due = calendar.add(ticket.created_at, minutes * 60 + state.paused_seconds)
        ticket.resolution_due_at = due
        alerting = minutes is not None and due is not None and running
        late = not running and _met_late(ticket.resolved_at or ticket.closed_at, due)
        breach = (alerting or late) and state.resolution_breached_at is None
        state.resolution_breach_at = due if breach else None
        state.resolution_warn_at = (
            self._warn_at(calendar, ticket, minutes, state.paused_seconds)
            if alerting
            and minutes is not None
            and self._may_warn(state.resolution_warned_at, state.resolution_breached_at)
            else None
        )

    @staticmethod
    def _may_warn(warned_at: datetime | None, breached_at: datetime | None) -> bool:
        return warned_at is None and breached_at is None

    def _warn_at(self, calendar: BusinessCalendar, ticket: Ticket, minutes: int, paused: int) -> datetime:
        return calendar.add(ticket.created_at, int(minutes * 60 * self.settings.warning_share) + paused)

    # --- the periodic check -------------------------------------------------------------------

    async def check(self, session: AsyncSession, tickets: TicketService, now: datetime, *, limit: int = 500) -> int:
        """Claims and records due alerts, at most `limit` of each kind; returns how many went
        out (the job calls again while a kind fills its batch)."""
        await session.flush()  # the claims below are plain UPDATEs: they must see pending changes
        sent = 0
        for alert in _ALERTS:
            claimed = await crud_sla.claim_alerts(
                session, alert.due, alert.sent, now=now, limit=limit, also_clear=alert.also_clear
            )
            if not claimed:
                continue
            policies = dict(claimed)
            for ticket in await crud_sla.tickets_by_id(session, list(policies)):
                due = ticket.first_response_due_at if alert.target == FIRST_RESPONSE else ticket.resolution_due_at
                data = {
                    "target": alert.target,
                    "due_at": due.isoformat().replace("+00:00", "Z") if due is not None else None,
                    "policy_id": policies[ticket.id],
                }
                await tickets.record_sla_event(session, ticket, alert.kind, data)
            sent = max(sent, len(claimed))
        return sent


def _no_targets(ticket: Ticket, state: TicketSla) -> None:
    """No policy: no due dates and no alert to come (what the target steps give for no minutes)."""
    ticket.first_response_due_at = ticket.resolution_due_at = None
    state.first_response_breach_at = state.first_response_warn_at = None
    state.resolution_breach_at = state.resolution_warn_at = None


def _basis(ticket: Ticket) -> str:
    """What a ticket's SLA depends on: a change of it recomputes the row (`refresh`)."""
    return f"{ticket.status.value}|{ticket.priority.value}|{ticket.category_id}|{ticket.first_responded_at is not None}"


def _met_late(met_at: datetime | None, due: datetime | None) -> bool:
    """A target met after its due date, perhaps before any check saw it overdue: the breach
    stays scheduled (its time has passed), so the next check still raises it, once."""
    return met_at is not None and due is not None and met_at > due
