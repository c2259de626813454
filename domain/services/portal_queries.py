"""Read models of the staff portal: companies, SIM cards with their joined names, MAJ history.

Every query takes a `ViewScope` (the caller's subtree), so an object outside it is simply not found.
Services never commit; the request owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.enums import SimStatus
from domain.models import (
    BillingSite,
    Company,
    EndUser,
    Line,
    Organisation,
    Parc,
    Plan,
    Pool,
    SimCard,
    UpdateRecord,
)
from domain.pagination import decode_cursor, encode_cursor

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_SEARCH_LENGTH = 32


@dataclass(frozen=True)
class ViewScope:
    """The subtree a caller sees: everything (platform), one organisation, or one company of it."""

    org_id: str | None
    company_id: str | None = None

    @property
    def everything(self) -> bool:
        return self.org_id is None and self.company_id is None


# --- companies -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompanyRow:
    company: Company
    org_name: str


def _scoped_companies(query: Select[Company, str], scope: ViewScope) -> Select[Company, str]:
    if scope.org_id is not None:
        query = query.where(Company.org_id == scope.org_id)
    if scope.company_id is not None:
        query = query.where(Company.id == scope.company_id)
    return query


async def list_companies(session: AsyncSession, scope: ViewScope) -> list[CompanyRow]:
    query = select(Company, Organisation.name).join(Organisation, Organisation.id == Company.org_id)
    query = _scoped_companies(query, scope).order_by(Organisation.name, Company.name, Company.id)
    return [CompanyRow(company, org_name) for company, org_name in (await session.execute(query))]


async def get_company(session: AsyncSession, scope: ViewScope, company_id: str) -> CompanyRow | None:
    query = select(Company, Organisation.name).join(Organisation, Organisation.id == Company.org_id)
    query = _scoped_companies(query.where(Company.id == company_id), scope)
    row = (await session.execute(query)).first()
    return None if row is None else CompanyRow(row[0], row[1])


@dataclass(frozen=True)
class SiteWithParcs:
    site: BillingSite
    parcs: list[Parc] = field(default_factory=list)


async def company_sites(session: AsyncSession, company_id: str) -> list[SiteWithParcs]:
    sites = (
        await session.execute(
            select(BillingSite).where(BillingSite.company_id == company_id).order_by(BillingSite.created_at)
        )
    ).scalars()
    parcs = (await session.execute(select(Parc).where(Parc.company_id == company_id).order_by(Parc.label))).scalars()
    by_site: dict[str, SiteWithParcs] = {s.id: SiteWithParcs(s) for s in sites}
    for parc in parcs:
        if parc.billing_site_id in by_site:
            by_site[parc.billing_site_id].parcs.append(parc)
    return list(by_site.values())


async def company_update_records(session: AsyncSession, company_id: str, limit: int = 200) -> list[UpdateRecord]:
    query = (
        select(UpdateRecord)
        .where(UpdateRecord.company_id == company_id)
        .order_by(UpdateRecord.at.desc(), UpdateRecord.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


# --- SIM cards -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimFilters:
    status: SimStatus | None = None
    company_id: str | None = None
    carrier: str | None = None
    search: str | None = None  # part of an ICCID or an IMSI


@dataclass(frozen=True)
class SimRow:
    sim: SimCard
    plan_name: str | None
    company_name: str | None
    end_user_email: str | None


@dataclass(frozen=True)
class SimPageResult:
    rows: list[SimRow]
    next_cursor: str | None
    prev_cursor: str | None


def _sim_rows_query(scope: ViewScope) -> Select[SimCard, str | None, str | None, str | None]:
    query = (
        select(SimCard, Plan.name, Company.name, EndUser.email)
        .outerjoin(Plan, Plan.id == SimCard.plan_id)
        .outerjoin(Company, Company.id == SimCard.company_id)
        .outerjoin(EndUser, EndUser.id == SimCard.end_user_id)
    )
    if scope.org_id is not None:
        query = query.where(SimCard.org_id == scope.org_id)
    if scope.company_id is not None:
        query = query.where(SimCard.company_id == scope.company_id)
    return query


async def list_sims_page(
    session: AsyncSession,
    scope: ViewScope,
    filters: SimFilters,
    *,
    after: str | None = None,
    before: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> SimPageResult:
    """Keyset pagination on the ICCID (unique): `after` pages forward, `before` pages back."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    query = _sim_rows_query(scope)
    if filters.status is not None:
        query = query.where(SimCard.status == filters.status)
    if filters.company_id:
        query = query.where(SimCard.company_id == filters.company_id)
    if filters.carrier:
        query = query.where(SimCard.carrier == filters.carrier)
    search = (filters.search or "").strip()[:MAX_SEARCH_LENGTH]
    if search:
        query = query.where(
            SimCard.iccid.contains(search, autoescape=True) | SimCard.imsi.contains(search, autoescape=True)
        )
    backwards = before is not None and after is None
    if backwards:
        assert before is not None
        query = query.where(SimCard.iccid < decode_cursor(before)).order_by(SimCard.iccid.desc())
    else:
        if after is not None:
            query = query.where(SimCard.iccid > decode_cursor(after))
        query = query.order_by(SimCard.iccid)
    found = [SimRow(*row) for row in (await session.execute(query.limit(limit + 1)))]
    more = len(found) > limit
    rows = found[:limit]
    if backwards:
        rows.reverse()
        has_prev, has_next = more, True
    else:
        has_prev, has_next = after is not None, more
    return SimPageResult(
        rows=rows,
        next_cursor=encode_cursor(rows[-1].sim.iccid) if rows and has_next else None,
        prev_cursor=encode_cursor(rows[0].sim.iccid) if rows and has_prev else None,
    )


@dataclass(frozen=True)
class SimFilterOptions:
    companies: list[tuple[str, str]]  # (id, name)
    carriers: list[str]


async def sim_filter_options(session: AsyncSession, scope: ViewScope) -> SimFilterOptions:
    companies = [(row.company.id, row.company.name) for row in await list_companies(session, scope)]
    carrier_query = select(SimCard.carrier).distinct()
    if scope.org_id is not None:
        carrier_query = carrier_query.where(SimCard.org_id == scope.org_id)
    if scope.company_id is not None:
        carrier_query = carrier_query.where(SimCard.company_id == scope.company_id)
    carriers = sorted(c for c in (await session.execute(carrier_query)).scalars() if c)
    return SimFilterOptions(companies=companies, carriers=carriers)


@dataclass(frozen=True)
class SimDetailView:
    row: SimRow
    org_name: str
    pool_name: str | None
    lines: list[Line]


async def get_sim_detail(session: AsyncSession, scope: ViewScope, iccid: str) -> SimDetailView | None:
    query = _sim_rows_query(scope).where(SimCard.iccid == iccid)
    found = (await session.execute(query)).first()
    if found is None:
        return None
    row = SimRow(*found)
    org_name = (await session.execute(select(Organisation.name).where(Organisation.id == row.sim.org_id))).scalar_one()
    pool_name = None
    if row.sim.pool_id is not None:
        pool_name = (await session.execute(select(Pool.name).where(Pool.id == row.sim.pool_id))).scalar_one_or_none()
    lines = list(
        (
            await session.execute(
                select(Line).where(Line.sim_id == row.sim.id).order_by(Line.created_at.desc(), Line.id)
            )
        ).scalars()
    )
    return SimDetailView(row=row, org_name=org_name, pool_name=pool_name, lines=lines)


def selected_iccids(values: Sequence[str]) -> list[str]:
    """The ICCIDs posted by the `sim-selection` form, de-duplicated, digits only, in the posted order."""
    seen: dict[str, None] = {}
    for value in values:
        value = value.strip()
        if value.isdigit() and 19 <= len(value) <= 20:
            seen.setdefault(value, None)
    return list(seen)
