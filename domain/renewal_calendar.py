"""Renewal calendar of a subscription: pure date arithmetic, used by the workflow and the API alike.

A plan whose validity is about a month (28 to 31 days) renews on the anchor's day of month: the anchor is
the day the service started, and it is kept for ever. A month shorter than the anchor's day renews on its
last day (an anchor on 31 Jan renews on 28 or 29 Feb, then on 31 Mar). Any other validity renews every
`validity_days` days from the anchor. Period n (n ≥ 0) runs from `period_start(n)` included to
`period_start(n + 1)` excluded; period 0 starts on the anchor.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

MONTHLY_VALIDITY_DAYS = range(28, 32)
# The prepaid expiry reminders (seed 000): 10 and 5 days before the end of the period.
REMINDER_DAYS_BEFORE = (10, 5)


def add_months(anchor: date, months: int) -> date:
    """`anchor` moved by `months` calendar months, on the anchor's day or the month's last day if shorter."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))


def is_monthly(validity_days: int) -> bool:
    return validity_days in MONTHLY_VALIDITY_DAYS


@dataclass(frozen=True, slots=True)
class RenewalCalendar:
    anchor: date
    validity_days: int

    def __post_init__(self) -> None:
        if self.validity_days < 1:
            raise ValueError("validity_days: au moins 1 jour")

    def period_start(self, n: int) -> date:
        if n < 0:
            raise ValueError("period: numéro de période négatif")
        if is_monthly(self.validity_days):
            return add_months(self.anchor, n)
        return self.anchor + timedelta(days=self.validity_days * n)

    def period_end(self, n: int) -> date:
        """The renewal date that ends period n (the first day of period n + 1): the service's expiry."""
        return self.period_start(n + 1)

    def period_of(self, day: date) -> int:
        """The period that contains `day` (a day before the anchor belongs to period 0)."""
        n = 0
        if not is_monthly(self.validity_days):
            n = max(0, (day - self.anchor).days // self.validity_days)
        else:
            n = max(0, (day.year - self.anchor.year) * 12 + day.month - self.anchor.month - 1)
        while self.period_end(n) <= day:
            n += 1
        return n

    def reminder_dates(self, n: int) -> list[tuple[int, date]]:
        """(days before expiry, date) of each prepaid reminder of period n that falls inside it."""
        start, end = self.period_start(n), self.period_end(n)
        dates = [(days, end - timedelta(days=days)) for days in REMINDER_DAYS_BEFORE]
        return [(days, day) for days, day in dates if day > start]

    def prorated_minor(self, n: int, today: date, old_price_minor: int, new_price_minor: int) -> int:
        """What a plan change on `today` costs for the rest of period n: the price difference times the share
        of the period left (rounded half up; negative is a credit)."""
        start, end = self.period_start(n), self.period_end(n)
        total, left = (end - start).days, max(0, (end - max(today, start)).days)
        difference = (new_price_minor - old_price_minor) * left
        return (abs(difference) * 2 + total) // (2 * total) * (1 if difference >= 0 else -1)
