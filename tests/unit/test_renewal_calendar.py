from __future__ import annotations

import calendar
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.renewal_calendar import RenewalCalendar, add_months

anchors = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))


def test_an_anchor_on_31_january_renews_on_the_last_day_of_february_then_on_31_march() -> None:
    cal = RenewalCalendar(anchor=date(2027, 1, 31), validity_days=30)
    assert [cal.period_start(n) for n in range(4)] == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
    ]
    leap = RenewalCalendar(anchor=date(2028, 1, 31), validity_days=31)
    assert leap.period_end(0) == date(2028, 2, 29)
    assert leap.period_end(1) == date(2028, 3, 31)


def test_a_non_monthly_validity_renews_every_validity_days() -> None:
    cal = RenewalCalendar(anchor=date(2027, 1, 31), validity_days=7)
    assert cal.period_start(3) == date(2027, 2, 21)
    assert cal.period_end(3) == date(2027, 2, 28)


def test_reminders_fall_10_and_5_days_before_expiry_inside_the_period() -> None:
    cal = RenewalCalendar(anchor=date(2027, 3, 15), validity_days=30)
    assert cal.reminder_dates(0) == [(10, date(2027, 4, 5)), (5, date(2027, 4, 10))]
    week = RenewalCalendar(anchor=date(2027, 3, 15), validity_days=7)
    assert week.reminder_dates(0) == [(5, date(2027, 3, 17))]


def test_bad_inputs_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="validity_days"):
        RenewalCalendar(anchor=date(2027, 1, 1), validity_days=0)
    with pytest.raises(ValueError, match="period"):
        RenewalCalendar(anchor=date(2027, 1, 1), validity_days=30).period_start(-1)


def test_proration_charges_the_share_of_the_period_left() -> None:
    cal = RenewalCalendar(anchor=date(2027, 4, 1), validity_days=30)  # April: 30 days
    assert cal.prorated_minor(0, date(2027, 4, 16), 1000, 2500) == 750
    assert cal.prorated_minor(0, date(2027, 4, 16), 2500, 1000) == -750
    assert cal.prorated_minor(0, date(2027, 4, 1), 1000, 2500) == 1500
    assert cal.prorated_minor(0, date(2027, 5, 1), 1000, 2500) == 0


@given(anchors, st.integers(min_value=0, max_value=400))
def test_monthly_renewals_keep_the_anchor_day_when_the_month_has_it(anchor: date, n: int) -> None:
    start = RenewalCalendar(anchor=anchor, validity_days=30).period_start(n)
    last_day = calendar.monthrange(start.year, start.month)[1]
    assert start.day == min(anchor.day, last_day)
    assert (start.year - anchor.year) * 12 + start.month - anchor.month == n


@given(anchors, st.integers(min_value=28, max_value=31), st.integers(min_value=0, max_value=200))
def test_periods_are_contiguous_and_last_28_to_31_days(anchor: date, validity: int, n: int) -> None:
    cal = RenewalCalendar(anchor=anchor, validity_days=validity)
    assert cal.period_end(n) == cal.period_start(n + 1)
    assert 28 <= (cal.period_end(n) - cal.period_start(n)).days <= 31


@given(anchors, st.integers(min_value=1, max_value=400), st.integers(min_value=0, max_value=5000))
def test_period_of_finds_the_period_containing_the_day(anchor: date, validity: int, offset: int) -> None:
    cal = RenewalCalendar(anchor=anchor, validity_days=validity)
    day = anchor + timedelta(days=offset)
    n = cal.period_of(day)
    assert cal.period_start(n) <= day < cal.period_end(n)


@given(anchors, st.integers(min_value=-30, max_value=30))
def test_add_months_round_trips_when_the_day_exists(anchor: date, months: int) -> None:
    if anchor.day <= 28:
        assert add_months(add_months(anchor, months), -months) == anchor
