"""Inputs and results of the billing-run workflows and activities. Frozen pydantic models; new fields always
get defaults so that running histories still decode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from domain.contracts import Contract
from domain.errors import ValidationFailed


class BillingScan(Contract):
    """The monthly Schedule's pass: one billing run per organisation for `period` (`YYYY-MM`; by default the
    month before the run)."""

    period: str | None = None


class BillingScanResult(Contract):
    period: str
    runs: list[str] = []


class BillingOrganisations(Contract):
    org_ids: list[str] = []


class BillingRunInput(Contract):
    org_id: str
    period: str


class BillingCompaniesRequest(Contract):
    org_id: str
    period: str


class BillingCompanies(Contract):
    company_ids: list[str] = []


class IssuePeriodInvoice(Contract):
    org_id: str
    company_id: str
    period: str


class IssuedInvoice(Contract):
    company_id: str
    invoice_id: str | None = None
    number: int | None = None
    total_minor: int = 0


class BillingRunResult(Contract):
    org_id: str
    period: str
    invoices: list[IssuedInvoice] = []


@dataclass(frozen=True)
class Period:
    """A calendar month `YYYY-MM`, in UTC: [start, end)."""

    label: str
    start: date
    end: date

    @classmethod
    def parse(cls, label: str) -> Period:
        try:
            start = datetime.strptime(label, "%Y-%m").date()
        except ValueError as exc:
            raise ValidationFailed("period", "période au format AAAA-MM attendue") from exc
        end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        return cls(label=start.strftime("%Y-%m"), start=start, end=end)

    @classmethod
    def previous(cls, now: datetime) -> Period:
        """The month before `now` (the run on the 1st bills the month just ended)."""
        first = now.date().replace(day=1)
        return cls.parse((first - timedelta(days=1)).strftime("%Y-%m"))

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, datetime.min.time(), tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, datetime.min.time(), tzinfo=UTC)
