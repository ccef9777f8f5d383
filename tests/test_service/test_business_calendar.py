"""Business time: add/elapsed over working hours, weekends, Chinese holidays and 调休 make-up
days, at day boundaries and in the configured timezone. Pure: no database."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.services.business_calendar import DEFAULT_RULES, BusinessCalendar, CalendarRules, parse_days, parse_span

SH = ZoneInfo("Asia/Shanghai")
HOUR = 3600

# 2025 National Day + Mid-Autumn: Oct 1-8 off; Sunday Sep 28 and Saturday Oct 11 are worked.
NATIONAL_DAY_2025 = {
    "week": {d: ["09:00-12:00", "13:30-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2025-10-01/2025-10-08"],
    "workdays": ["2025-09-28", "2025-10-11"],
}


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


@pytest.fixture
def office() -> BusinessCalendar:
    """Monday to Friday 09:00-18:00 (the default)."""
    return BusinessCalendar(DEFAULT_RULES, SH)


@pytest.fixture
def china() -> BusinessCalendar:
    return BusinessCalendar(CalendarRules.parse(NATIONAL_DAY_2025), SH)


def test_add_within_one_working_day(office):
    assert office.add(sh(2026, 11, 24, 10, 0), 2 * HOUR) == sh(2026, 11, 24, 12, 0)


def test_result_is_utc(office):
    due = office.add(sh(2026, 11, 24, 10, 0), HOUR)
    assert due.tzinfo == UTC
    assert due == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def test_target_ending_at_closing_time_is_due_at_closing_time(office):
    assert office.add(sh(2026, 11, 24, 9, 0), 9 * HOUR) == sh(2026, 11, 24, 18, 0)


def test_one_second_more_carries_to_the_next_morning(office):
    assert office.add(sh(2026, 11, 24, 9, 0), 9 * HOUR + 1) == sh(2026, 11, 25, 9, 0, 1)


def test_start_before_opening_counts_from_opening(office):
    assert office.add(sh(2026, 11, 24, 6, 30), HOUR) == sh(2026, 11, 24, 10, 0)


def test_start_after_closing_counts_from_the_next_opening(office):
    assert office.add(sh(2026, 11, 24, 20, 0), HOUR) == sh(2026, 11, 25, 10, 0)


def test_friday_evening_rolls_over_the_weekend(office):
    # Friday 2026-11-27 17:00 + 2 h: one hour on Friday, one on Monday.
    assert office.add(sh(2026, 11, 27, 17, 0), 2 * HOUR) == sh(2026, 11, 30, 10, 0)


def test_start_on_a_weekend(office):
    assert office.add(sh(2026, 11, 28, 15, 0), HOUR) == sh(2026, 11, 30, 10, 0)


def test_zero_seconds_is_the_start_itself(office):
    start = sh(2026, 11, 28, 15, 0)
    assert office.add(start, 0) == start


def test_lunch_break_does_not_count(china):
    # Thursday 2025-09-25 11:00 + 2 h: 11-12, then 13:30-14:30.
    assert china.add(sh(2025, 9, 25, 11, 0), 2 * HOUR) == sh(2025, 9, 25, 14, 30)


def test_holidays_are_skipped_and_make_up_saturday_is_worked(china):
    # Tuesday 2025-09-30 17:00 + 8 h: 1 h on the 30th, Oct 1-8 off, then 7.5 h on Thursday
    # Oct 9, the last half hour on Friday Oct 10.
    assert china.add(sh(2025, 9, 30, 17, 0), 9 * HOUR) == sh(2025, 10, 10, 9, 30)
    # Friday Oct 10 17:00 + 2 h: 1 h on Friday, then Saturday Oct 11 is a working day (调休).
    assert china.add(sh(2025, 10, 10, 17, 0), 2 * HOUR) == sh(2025, 10, 11, 10, 0)


def test_make_up_sunday_is_worked_with_mondays_hours(china):
    assert china.hours_on(date(2025, 9, 28)) == china.hours_on(date(2025, 9, 29))
    assert china.add(sh(2025, 9, 27, 12, 0), HOUR) == sh(2025, 9, 28, 10, 0)  # Saturday the 27th is off
    assert china.is_working(sh(2025, 9, 28, 10, 0))
    assert not china.is_working(sh(2025, 10, 6, 10, 0))  # a Monday inside the holiday


def test_make_up_days_can_have_their_own_hours():
    rules = CalendarRules.parse({**NATIONAL_DAY_2025, "workday_hours": ["10:00-16:00"]})
    calendar = BusinessCalendar(rules, SH)
    assert calendar.add(sh(2025, 10, 11, 0, 0), HOUR) == sh(2025, 10, 11, 11, 0)


def test_elapsed_counts_working_seconds_only(china):
    # Tuesday Sep 30 17:00 -> Saturday Oct 11 10:00: 1 h + 7.5 h (Oct 9) + 7.5 h (Oct 10) + 1 h.
    assert china.elapsed(sh(2025, 9, 30, 17, 0), sh(2025, 10, 11, 10, 0)) == 17 * HOUR


def test_elapsed_across_a_whole_holiday_is_zero(china):
    assert china.elapsed(sh(2025, 10, 1, 0, 0), sh(2025, 10, 9, 0, 0)) == 0


def test_elapsed_is_zero_when_end_is_not_after_start(office):
    moment = sh(2026, 11, 24, 10, 0)
    assert office.elapsed(moment, moment) == 0
    assert office.elapsed(moment, moment - timedelta(hours=1)) == 0


@pytest.mark.parametrize("seconds", [1, 59, HOUR, 3 * HOUR + 7, 9 * HOUR, 40 * HOUR, 400 * HOUR])
@pytest.mark.parametrize(
    "start", [sh(2025, 9, 26, 8, 0), sh(2025, 9, 30, 17, 59, 59), sh(2025, 10, 4, 12, 0), sh(2025, 10, 10, 12, 15)]
)
def test_elapsed_undoes_add(china, start, seconds):
    assert china.elapsed(start, china.add(start, seconds)) == seconds


def test_a_year_of_working_time_is_computed_day_by_day_quickly(office):
    start = sh(2026, 1, 1, 9, 0)
    begun = time.perf_counter()
    due = office.add(start, 261 * 9 * HOUR)  # about a year of weekdays
    spent = office.elapsed(start, due)
    assert spent == 261 * 9 * HOUR
    assert due.year == 2026
    assert time.perf_counter() - begun < 1.0  # generous: it walks ~365 days, not minutes


def test_days_are_the_configured_timezones():
    # 16:30Z on Monday is 00:30 Tuesday in Shanghai (closed), 16:30 Monday in UTC (open).
    moment = datetime(2026, 11, 23, 16, 30, tzinfo=UTC)
    assert BusinessCalendar(DEFAULT_RULES, SH).add(moment, HOUR) == sh(2026, 11, 24, 10, 0)
    in_utc = BusinessCalendar(DEFAULT_RULES, ZoneInfo("UTC"))
    assert in_utc.add(moment, HOUR) == datetime(2026, 11, 23, 17, 30, tzinfo=UTC)


def test_a_dst_day_is_measured_in_real_seconds():
    berlin = ZoneInfo("Europe/Berlin")
    calendar = BusinessCalendar(CalendarRules.parse({"week": {"sun": ["00:00-24:00"]}}), berlin)
    day = datetime(2026, 3, 29, tzinfo=berlin)  # clocks go forward: a 23-hour Sunday
    assert calendar.elapsed(day, day + timedelta(days=1)) == 23 * HOUR


def test_naive_moments_are_refused(office):
    with pytest.raises(ValueError, match="naive"):
        office.add(datetime(2026, 11, 24, 10, 0), HOUR)  # the point of the test


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"week": {}}, "no working hours"),
        ({"week": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "overlap"),
        ({"week": {"mon": ["18:00-09:00"]}}, "ends before"),
        ({"week": {"mon": ["9-18"]}}, "HH:MM"),
        ({"week": {"mon": ["09:00-24:30"]}}, "time of day"),
        ({"week": {"funday": ["09:00-18:00"]}}, "unknown weekday"),
        ({"week": {"mon": ["09:00-18:00"]}, "holidays": ["2025-10-01"], "workdays": ["2025-10-01"]}, "both"),
        ({"week": {"mon": ["09:00-18:00"]}, "holidays": ["2025-10-08/2025-10-01"]}, "ends before"),
        ({"week": {"mon": ["09:00-18:00"]}, "holidays": ["2025-13-01"]}, "not a date"),
        ({"week": {"sat": ["09:00-18:00"]}, "workdays": ["2025-10-11"]}, "workday_hours"),
    ],
)
def test_bad_documents_are_refused_with_a_reason(document, message):
    with pytest.raises(ValueError, match=message):
        CalendarRules.parse(document)


def test_document_is_normalised():
    rules = CalendarRules.parse(NATIONAL_DAY_2025)
    document = rules.document()
    assert document["holidays"] == [f"2025-10-0{d}" for d in range(1, 9)]
    assert document["week"]["sat"] == []  # type: ignore[index]
    assert CalendarRules.parse(document) == rules


def test_parsers():
    assert parse_span("09:00-24:00") == (9 * HOUR, 24 * HOUR)
    assert parse_days("2025-10-01/2025-10-03") == [date(2025, 10, 1), date(2025, 10, 2), date(2025, 10, 3)]
