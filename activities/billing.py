"""Database side of the monthly billing run. Each invoice is issued in its own database transaction, which
also bumps the organisation's counter: a run interrupted between two companies leaves no gap."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities._errors import translates_errors
from domain.billing_contracts import (
    BillingCompanies,
    BillingCompaniesRequest,
    BillingOrganisations,
    BillingScan,
    IssuedInvoice,
    IssuePeriodInvoice,
    Period,
)
from domain.errors import DomainError, ErrorCode
from domain.models import Organisation
from domain.services.billing import companies_to_bill, issue_period_invoice
from workflows import activity_names as names


def _period(label: str) -> Period:
    try:
        return Period.parse(label)
    except DomainError as exc:
        raise DomainError(exc.field, exc.reason, code=ErrorCode.BILLING_INVALID_PERIOD) from exc


@translates_errors
class BillingActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name=names.BILLING_LIST_ORGANISATIONS)
    async def list_organisations(self, _scan: BillingScan) -> BillingOrganisations:
        async with self._sessionmaker() as session:
            rows = await session.execute(select(Organisation.id).order_by(Organisation.id))
            return BillingOrganisations(org_ids=list(rows.scalars()))

    @activity.defn(name=names.BILLING_COMPANIES_TO_BILL)
    async def companies_to_bill(self, data: BillingCompaniesRequest) -> BillingCompanies:
        async with self._sessionmaker() as session:
            return BillingCompanies(company_ids=await companies_to_bill(session, data.org_id, _period(data.period)))

    @activity.defn(name=names.BILLING_ISSUE_PERIOD_INVOICE)
    async def issue_period_invoice(self, data: IssuePeriodInvoice) -> IssuedInvoice:
        async with self._sessionmaker() as session:
            try:
                invoice = await issue_period_invoice(session, data.org_id, data.company_id, _period(data.period))
            except DomainError as exc:
                raise DomainError(exc.field, exc.reason, code=ErrorCode.BILLING_COMPANY_NOT_FOUND) from exc
            if invoice is None:
                await session.rollback()  # nothing to bill: the number goes back to the counter
                return IssuedInvoice(company_id=data.company_id)
            result = IssuedInvoice(
                company_id=data.company_id,
                invoice_id=invoice.id,
                number=invoice.number,
                total_minor=invoice.total_minor,
            )
            await session.commit()
            return result
