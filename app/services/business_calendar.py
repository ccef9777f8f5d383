"""Business time: working hours per weekday, holidays and make-up working days (调休) in one
timezone. SLA due dates are made of `BusinessCalendar.add` and `.elapsed`.

Pure: no database, no settings. Moments in and out are timezone-aware (UTC in the database);
hours are wall-clock times in the calendar's zone, so a span's length is measured between its
real start and end (a DST change inside working hours shortens or lengthens that day, which
Asia/Shanghai never has). Both operations walk whole days and never loop over minutes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 24 * 3600
# add() gives up after this many calendar days without enough working time (a calendar whose
# week is empty cannot be built; this guards against decades of holidays).
MAX_DAYS = 20 * 366
# A range in `holidays` may cover at most this many days ("2026-10-01/2026-10-08").
MAX_RANGE_DAYS = 366

Span = tuple[int, int]  # [start, end) in seconds after local midnight; end may be 24:00

_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def parse_span(value: str) -> Span:
    """ "09:00-18:00" -> (32400, 64800). The end may be "24:00"; the start must be earlier."""
    match = _HOURS.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{value!r} is not a time of day")
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if start >= end:
        raise ValueError(f"{value!r} ends before it starts")
    return start, end


def parse_spans(values: Sequence[str]) -> tuple[Span, ...]:
    """Sorted spans of one day; overlapping spans are refused (touching ones are fine)."""
    spans = sorted(parse_span(v) for v in values)
    for (_, end), (start, _) in pairwise(spans):
        if start < end:
            raise ValueError("working hours overlap")
    return tuple(spans)


def parse_days(value: str) -> list[date]:
    """ "2026-10-01" or an ISO 8601 interval "2026-10-01/2026-10-08" (both ends included)."""
    first, sep, last = value.strip().partition("/")
    try:
        start = date.fromisoformat(first)
        end = date.fromisoformat(last) if sep else start
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or a range (YYYY-MM-DD/YYYY-MM-DD)") from None
    days = (end - start).days
    if days < 0:
        raise ValueError(f"{value!r} ends before it starts")
    if days >= MAX_RANGE_DAYS:
        raise ValueError(f"{value!r} is longer than {MAX_RANGE_DAYS} days")
    return [start + timedelta(days=i) for i in range(days + 1)]


def format_span(span: Span) -> str:
    (h1, m1), (h2, m2) = divmod(span[0] // 60, 60), divmod(span[1] // 60, 60)
    return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"


@dataclass(frozen=True)
class CalendarRules:
    """What a calendar document says, parsed: 7 weekdays' spans (Monday first), holidays,
    make-up working days and the hours those are worked (default: Monday's)."""

    week: tuple[tuple[Span, ...], ...]
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    workday_hours: tuple[Span, ...] | None = None

    @classmethod
    def parse(cls, document: Mapping[str, object]) -> CalendarRules:
        """From the settings file's / API's document (see docs/decisions.md "SLA"); raises
        ValueError with a readable message."""
        week_doc = document.get("week") or {}
        if not isinstance(week_doc, Mapping):
            raise ValueError("week must map weekdays (mon..sun) to lists of HH:MM-HH:MM")
        unknown = set(week_doc) - set(WEEKDAYS)
        if unknown:
            raise ValueError(f"unknown weekday(s): {', '.join(sorted(map(str, unknown)))}")
        week = tuple(parse_spans(_strings(week_doc.get(name) or [], f"week.{name}")) for name in WEEKDAYS)
        holidays = {d for v in _strings(document.get("holidays") or [], "holidays") for d in parse_days(v)}
        workdays = {d for v in _strings(document.get("workdays") or [], "workdays") for d in parse_days(v)}
        raw_hours = document.get("workday_hours")
        hours = None if raw_hours is None else parse_spans(_strings(raw_hours, "workday_hours"))
        rules = cls(week, frozenset(holidays), frozenset(workdays), hours)
        rules.check()
        return rules

    def check(self) -> None:
        if len(self.week) != 7:
            raise ValueError("week needs 7 days")
        if not any(self.week):
            raise ValueError("the week has no working hours")
        both = self.holidays & self.workdays
        if both:
            raise ValueError(f"{min(both).isoformat()} is both a holiday and a make-up working day")
        if self.workdays and not (self.workday_hours if self.workday_hours is not None else self.week[0]):
            raise ValueError("make-up working days need workday_hours (Monday has no hours)")

    def document(self) -> dict[str, object]:
        """The normalised document: every weekday listed, single days, sorted."""
        return {
            "week": {name: [format_span(s) for s in spans] for name, spans in zip(WEEKDAYS, self.week, strict=True)},
            "holidays": [d.isoformat() for d in sorted(self.holidays)],
            "workdays": [d.isoformat() for d in sorted(self.workdays)],
            "workday_hours": None if self.workday_hours is None else [format_span(s) for s in self.workday_hours],
        }


def _strings(value: object, name: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    return list(value)


# Monday to Friday, 09:00-18:00: what applies until an admin saves a calendar or a file is set.
DEFAULT_RULES = CalendarRules(week=(((9 * 3600, 18 * 3600),),) * 5 + ((), ()))


class BusinessCalendar:
    """Working time in `tz` under `rules`. Keeps each day's spans (as UTC moments) once
    computed; build a new calendar when the rules change."""

    _CACHE_DAYS = 4096

    def __init__(self, rules: CalendarRules, tz: ZoneInfo) -> None:
        rules.check()
        self.rules = rules
        self.tz = tz
        self._days: dict[date, tuple[tuple[datetime, datetime], ...]] = {}

    def hours_on(self, day: date) -> tuple[Span, ...]:
        """The working spans of a local calendar day: holidays have none, make-up days
        (调休) have `workday_hours`, other days their weekday's."""
        if day in self.rules.holidays:
            return ()
        if day in self.rules.workdays:
            return self.rules.workday_hours if self.rules.workday_hours is not None else self.rules.week[0]
        return self.rules.week[day.weekday()]

    def is_working(self, moment: datetime) -> bool:
        moment = _aware(moment)
        return any(start <= moment < end for start, end in self._spans(moment.astimezone(self.tz).date()))

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment `seconds` of working time after `start` (UTC). A target that ends
        exactly at closing time is due at closing time, not at the next opening."""
        start = _aware(start).astimezone(UTC)
        if seconds <= 0:
            return start
        remaining = float(seconds)
        for day in self._days_from(start.astimezone(self.tz).date()):
            for span_start, span_end in self._spans(day):
                if span_end <= start:
                    continue
                begin = max(span_start, start)
                length = (span_end - begin).total_seconds()
                if remaining <= length:
                    return begin + timedelta(seconds=remaining)
                remaining -= length
        raise ValueError(f"no {seconds} s of working time within {MAX_DAYS} days of {start.isoformat()}")

    def elapsed(self, start: datetime, end: datetime) -> int:
        """Working seconds in [start, end), rounded to whole seconds; 0 when end <= start."""
        start, end = _aware(start).astimezone(UTC), _aware(end).astimezone(UTC)
        if end <= start:
            return 0
        total = 0.0
        day, last = start.astimezone(self.tz).date(), end.astimezone(self.tz).date()
        while day <= last:
            for span_start, span_end in self._spans(day):
                overlap = (min(span_end, end) - max(span_start, start)).total_seconds()
                if overlap > 0:
                    total += overlap
            day += timedelta(days=1)
        return round(total)

    # --- internals ----------------------------------------------------------------------------

    @staticmethod
    def _days_from(day: date) -> Iterator[date]:
        for offset in range(MAX_DAYS):
            yield day + timedelta(days=offset)

    def _spans(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        cached = self._days.get(day)
        if cached is None:
            if len(self._days) >= self._CACHE_DAYS:
                self._days.clear()
            cached = tuple((self._moment(day, s), self._moment(day, e)) for s, e in self.hours_on(day))
            self._days[day] = cached
        return cached

    def _moment(self, day: date, seconds: int) -> datetime:
        day += timedelta(days=seconds // DAY_SECONDS)
        hours, rest = divmod(seconds % DAY_SECONDS, 3600)
        local = datetime(day.year, day.month, day.day, hours, rest // 60, rest % 60, tzinfo=self.tz)
        return local.astimezone(UTC)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: business time needs a timezone-aware moment")
    return moment
