"""SLA schemas: policies (admin CRUD) and the business calendar document (GET/PUT)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from app.models.ticket import Priority
from app.schemas.common import ReadModel, RequestModel, clean_line
from app.services.business_calendar import CalendarRules, parse_days, parse_span

PolicyName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(clean_line)]
# Business minutes; a year of round-the-clock minutes is more than any target needs.
Minutes = Annotated[int, Field(ge=1, le=525_600)]


class SlaPolicyCreate(RequestModel):
    name: PolicyName
    priority: Priority
    # Tickets of this category (or of its subcategories, unless they have a policy of their
    # own); null: every ticket of this priority that no category policy covers.
    category_id: int | None = None
    first_response_minutes: Minutes | None = None
    resolution_minutes: Minutes | None = None


class SlaPolicyUpdate(RequestModel):
    """All optional; `null` for a target removes it, `null` for `category_id` makes the policy
    priority-only; `null` for `name` or `priority` changes nothing."""

    name: PolicyName | None = None
    priority: Priority | None = None
    category_id: int | None = None
    first_response_minutes: Minutes | None = None
    resolution_minutes: Minutes | None = None


class SlaPolicyRead(ReadModel):
    id: int
    name: str
    priority: Priority
    category_id: int | None
    first_response_minutes: int | None
    resolution_minutes: int | None
    created_at: datetime
    updated_at: datetime


def _span(value: str) -> str:
    parse_span(value)
    return value.strip()


def _days(value: str) -> str:
    parse_days(value)
    return value.strip()


Hours = Annotated[list[Annotated[str, Field(max_length=16), AfterValidator(_span)]], Field(max_length=8)]
Days = Annotated[str, Field(max_length=21), AfterValidator(_days)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class BusinessCalendarDocument(RequestModel):
    """Working hours per weekday ("HH:MM-HH:MM", end up to "24:00"; a missing or empty day is
    not worked), holidays and make-up working days (调休) as dates or ranges
    ("2026-10-01/2026-10-08"), and the hours of a make-up day (default: Monday's). The same
    shape as the settings file (HELPDESK_SLA__CALENDAR_FILE, TOML or JSON)."""

    week: dict[Weekday, Hours]
    holidays: list[Days] = Field(default_factory=list, max_length=1000)
    workdays: list[Days] = Field(default_factory=list, max_length=1000)
    workday_hours: Hours | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BusinessCalendarDocument:
        self.rules()  # overlapping hours, an empty week, a day both holiday and workday
        return self

    def rules(self) -> CalendarRules:
        return CalendarRules.parse(self.model_dump())


class BusinessCalendarRead(BaseModel):
    """The calendar in force: `source` says where it comes from ("database": saved through
    this API, wins over the file; "file": HELPDESK_SLA__CALENDAR_FILE; "default": Monday to
    Friday 09:00-18:00). Dates are single days, sorted; times are in `timezone`."""

    source: Literal["database", "file", "default"]
    timezone: str
    week: dict[Weekday, list[str]]
    holidays: list[str]
    workdays: list[str]
    workday_hours: list[str] | None
    revision: int | None
    updated_at: datetime | None
