"""The lists of the API: lines, companies, end users, plans, catalogue articles, transactions — each scoped
to the caller's subtree with the very rule `Principal.reads` applies to one object, so a list never shows a
row its detail route would refuse. Filters are applied here; paging is `domain.pagination`'s.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select, true

from domain.authz import Principal
from domain.billing_contracts import Period
from domain.enums import ArticleKind, LineStatus, PhoneNumberStatus, PlanType
from domain.models import CatalogueArticle, Company, EndUser, Line, PhoneNumber, Plan, SimCard, Transaction
from domain.pagination import AnySelect

# Lines that still hold their SIM: the SIM's current line (`GET /sims/{iccid}` → `line_id`).
CURRENT_LINE_STATUSES = (LineStatus.UNDER_CONSTRUCTION, LineStatus.ACTIVE, LineStatus.SUSPENDED, LineStatus.INACTIVE)


def readable_by(
    principal: Principal,
    *,
    org: Any,
    company: Any = None,
    end_user: Any = None,
    org_wide: bool = False,
    org_wide_without_company: bool = False,
) -> ColumnElement[bool]:
    """SQL for `principal.reads(chain of the row)`, given the row's columns of its chain (None: that level
    is not in the row's chain)."""
    if principal.is_platform_admin:
        return true()
    if principal.org_id is None:
        return false()
    in_org: ColumnElement[bool] = org == principal.org_id
    if org_wide:
        return in_org
    conditions: list[ColumnElement[bool]] = []
    if principal.company_id is not None:
        conditions.append(false() if company is None else company == principal.company_id)
    if principal.end_user_id is not None:
        conditions.append(false() if end_user is None else end_user == principal.end_user_id)
    seen: ColumnElement[bool] = in_org
    for condition in conditions:
        seen = seen & condition
    if org_wide_without_company and company is not None:
        without_company: ColumnElement[bool] = company.is_(None)
        return seen | (in_org & without_company)
    return seen


def lines_query(
    principal: Principal,
    *,
    status: LineStatus | None = None,
    company_id: str | None = None,
    plan_id: str | None = None,
    iccid: str | None = None,
    msisdn: str | None = None,
) -> AnySelect:
    """Rows (line, its SIM's ICCID); `iccid` and `msisdn` already normalised."""
    query = (
        select(Line, SimCard.iccid)
        .outerjoin(SimCard, SimCard.id == Line.sim_id)
        .where(readable_by(principal, org=Line.org_id, company=Line.company_id, end_user=Line.end_user_id))
    )
    if status is not None:
        query = query.where(Line.status == status)
    if company_id is not None:
        query = query.where(Line.company_id == company_id)
    if plan_id is not None:
        query = query.where(Line.plan_id == plan_id)
    if iccid is not None:
        query = query.where(SimCard.iccid == iccid)
    if msisdn is not None:
        query = query.where(Line.msisdn == msisdn)
    return query


def current_line_id_query(sim_id: str) -> AnySelect:
    """The id of the line that holds the SIM now (the newest not terminated nor obsolete)."""
    return (
        select(Line.id)
        .where(Line.sim_id == sim_id, Line.status.in_(CURRENT_LINE_STATUSES))
        .order_by(Line.created_at.desc(), Line.id)
        .limit(1)
    )


def companies_query(principal: Principal, *, name: str | None = None, is_virtual: bool | None = None) -> AnySelect:
    query = select(Company).where(readable_by(principal, org=Company.org_id, company=Company.id))
    if name:
        query = query.where(func.lower(Company.name).contains(name.lower(), autoescape=True))
    if is_virtual is not None:
        query = query.where(Company.is_virtual.is_(is_virtual))
    return query


def end_users_query(principal: Principal, *, company_id: str | None = None, email: str | None = None) -> AnySelect:
    query = select(EndUser).where(
        readable_by(principal, org=EndUser.org_id, company=EndUser.company_id, end_user=EndUser.id)
    )
    if company_id is not None:
        query = query.where(EndUser.company_id == company_id)
    if email is not None:
        query = query.where(func.lower(EndUser.email) == email.lower())
    return query


def plans_query(principal: Principal, *, plan_type: PlanType | None = None, company_id: str | None = None) -> AnySelect:
    query = select(Plan).where(
        readable_by(principal, org=Plan.org_id, company=Plan.company_id, org_wide_without_company=True)
    )
    if plan_type is not None:
        query = query.where(Plan.plan_type == plan_type)
    if company_id is not None:
        query = query.where(or_(Plan.company_id == company_id, Plan.company_id.is_(None)))
    return query


def articles_query(principal: Principal, *, kind: ArticleKind | None = None, category: str | None = None) -> AnySelect:
    query = select(CatalogueArticle).where(readable_by(principal, org=CatalogueArticle.org_id, org_wide=True))
    if kind is not None:
        query = query.where(CatalogueArticle.kind == kind)
    if category:
        query = query.where(func.lower(CatalogueArticle.category) == category.lower())
    return query


def range_numbers_query(range_id: str, *, status: PhoneNumberStatus | None = None) -> AnySelect:
    """The numbers of one range the platform knows (allocated, reserved, quarantined, released); the range
    itself was authorised by the caller (an organisation-level object)."""
    query = select(PhoneNumber).where(PhoneNumber.range_id == range_id)
    if status is not None:
        query = query.where(PhoneNumber.status == status)
    return query


def transactions_query(
    principal: Principal,
    *,
    company_id: str | None = None,
    period: Period | None = None,
    invoiced: bool | None = None,
    voided: bool = False,
) -> AnySelect:
    """The transactions the caller can see (`GET /transactions`, the portal's "Transactions"); `period`: the
    month they were recorded in; voided ones only when `voided`."""
    query = select(Transaction).where(readable_by(principal, org=Transaction.org_id, company=Transaction.company_id))
    if company_id is not None:
        query = query.where(Transaction.company_id == company_id)
    if period is not None:
        query = query.where(Transaction.created_at >= period.start_at, Transaction.created_at < period.end_at)
    if invoiced is not None:
        query = query.where(Transaction.invoice_id.is_not(None) if invoiced else Transaction.invoice_id.is_(None))
    if not voided:
        query = query.where(Transaction.voided.is_(False))
    return query
