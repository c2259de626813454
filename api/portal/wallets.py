"""Portal "Portefeuille" of a company (seed 000): enable or disable it, its minimum balance, funding by card,
the overview over a period (starting balance, total topped up, total spent, final balance), the ledger with
its references and the CSV export. Fundings are followed live until they end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from api.deps import SessionDep, StateDep
from api.portal.routes import page
from api.portal.security import CsrfChecked, PortalForbidden, PortalNotFound, PortalPrincipalDep, PortalRoute
from api.routes.wallets import WalletCreate, create_owned_wallet, fund_wallet, require_wallet_manager
from domain.authz import Action, Principal, TenantChain, authorize
from domain.enums import FundingStatus, WalletOwnerType
from domain.errors import DomainError
from domain.models import Company, EndUser, Wallet, WalletFunding
from domain.money import InvalidAmount, Money
from domain.services.wallets import (
    KIND_LABELS_FR,
    Period,
    balance_of,
    ledger_overview,
    update_wallet,
    wallet_of,
)
from domain.wallet_contracts import FUNDING_TERMINAL_STATUSES

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

LEDGER_PAGE_ENTRIES = 500
FUNDING_STATUS_FR = {
    FundingStatus.PENDING: "En attente",
    FundingStatus.CHARGING: "Paiement en cours",
    FundingStatus.CHARGED: "Payé, crédit en cours",
    FundingStatus.SUCCEEDED: "Crédité",
    FundingStatus.FAILED: "Échoué",
    FundingStatus.REFUNDED: "Remboursé",
    FundingStatus.NEEDS_ATTENTION: "Intervention requise",
}


@dataclass(frozen=True)
class Holder:
    """Whose wallet a page shows: a company, or one of its end users (the same page, its own URLs)."""

    owner: Company | EndUser
    id: str  # kept apart from `owner`: a refused form rolls back, which expires the owner's attributes
    owner_type: WalletOwnerType
    name: str
    base: str  # the wallet page's URL
    crumbs: tuple[tuple[str, str], ...]  # breadcrumb links before "Portefeuille"


async def _company(session: SessionDep, principal: Principal, company_id: str) -> Holder:
    company = await session.get(Company, company_id[:64])
    if company is None:
        raise PortalNotFound()
    try:
        authorize(principal, Action.READ, TenantChain(company.org_id, company.id), "entreprise")
    except DomainError as err:
        raise PortalNotFound() from err
    crumbs = (("/portal/companies", "Entreprises"), (f"/portal/companies/{company.id}", company.name))
    return Holder(
        company, company.id, WalletOwnerType.COMPANY, company.name, f"/portal/companies/{company.id}/wallet", crumbs
    )


async def _end_user(session: SessionDep, principal: Principal, end_user_id: str) -> Holder:
    user = await session.get(EndUser, end_user_id[:64])
    if user is None:
        raise PortalNotFound()
    try:
        authorize(principal, Action.READ, TenantChain(user.org_id, user.company_id, user.id), "utilisateur final")
    except DomainError as err:
        raise PortalNotFound() from err
    company = await session.get(Company, user.company_id)
    crumbs = (
        ("/portal/companies", "Entreprises"),
        (f"/portal/companies/{user.company_id}", company.name if company else user.company_id),
    )
    name = user.full_name or user.email
    return Holder(user, user.id, WalletOwnerType.END_USER, name, f"/portal/end-users/{user.id}/wallet", crumbs)


def _can_manage(principal: Principal) -> bool:
    try:
        require_wallet_manager(principal)
    except DomainError:
        return False
    return True


def _euros(value: str, field: str, *, allow_negative: bool) -> int:
    try:
        return Money.parse(
            value.strip().replace(" ", "").replace("\u00a0", ""), allow_negative=allow_negative
        ).amount_minor
    except (InvalidAmount, ValueError) as err:
        raise ValueError(f"{field} : montant invalide (exemple : 25,50)") from err


async def _wallet_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    state: StateDep,
    holder: Holder,
    *,
    first: date | None = None,
    last: date | None = None,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    wallet = await wallet_of(session, holder.owner_type, holder.id)
    context: dict[str, Any] = {
        "holder": holder,
        "wallet": wallet,
        "error": error,
        "notice": notice,
        "period_from": first.isoformat() if first else "",
        "period_to": last.isoformat() if last else "",
        "kind_fr": KIND_LABELS_FR,
        "funding_fr": FUNDING_STATUS_FR,
        "can_manage": _can_manage(principal),
    }
    if wallet is not None:
        period = Period.of_days(first, last)
        fundings = await _fundings(session, wallet)
        context.update(
            balance_minor=await balance_of(session, wallet.id),
            overview=await ledger_overview(session, wallet.id, period, LEDGER_PAGE_ENTRIES),
            fundings=fundings,
            live=any(f.status not in FUNDING_TERMINAL_STATUSES for f in fundings),
            csv_query="&".join(f"{k}={v.isoformat()}" for k, v in (("from", first), ("to", last)) if v is not None),
        )
    return page(
        request,
        state.settings,
        principal,
        "portal/companies/wallet.html",
        context,
        nav="companies",
        status_code=status_code,
    )


async def _fundings(session: SessionDep, wallet: Wallet) -> list[WalletFunding]:
    query = (
        select(WalletFunding)
        .where(WalletFunding.wallet_id == wallet.id)
        .order_by(WalletFunding.created_at.desc(), WalletFunding.id)
        .limit(20)
    )
    return list((await session.execute(query)).scalars())


# --- one implementation per action, for both holders ---------------------------------------------------


async def _fundings_table(
    request: Request, principal: Principal, session: SessionDep, state: StateDep, holder: Holder
) -> Response:
    """The fundings table alone, polled by htmx while a funding runs."""
    wallet = await wallet_of(session, holder.owner_type, holder.id)
    if wallet is None:
        raise PortalNotFound()
    fundings = await _fundings(session, wallet)
    context = {
        "holder": holder,
        "wallet": wallet,
        "fundings": fundings,
        "live": any(f.status not in FUNDING_TERMINAL_STATUSES for f in fundings),
        "funding_fr": FUNDING_STATUS_FR,
    }
    return page(request, state.settings, principal, "portal/companies/_wallet_fundings.html", context)


async def _create(
    request: Request, principal: Principal, session: SessionDep, state: StateDep, holder: Holder
) -> Response:
    try:
        require_wallet_manager(principal)
    except DomainError as err:
        raise PortalForbidden(err.reason) from err
    try:  # the API's handler: its checks and its audit row ("wallet.created")
        await create_owned_wallet(session, principal, holder.owner_type, holder.id, WalletCreate())
    except DomainError as err:
        await session.rollback()
        return await _wallet_page(request, principal, session, state, holder, error=err.reason, status_code=409)
    await session.commit()
    return RedirectResponse(holder.base, status_code=303)


async def _settings(
    request: Request,
    principal: Principal,
    session: SessionDep,
    state: StateDep,
    holder: Holder,
    min_balance: str,
    enabled: str | None,
) -> Response:
    try:
        require_wallet_manager(principal)
    except DomainError as err:
        raise PortalForbidden(err.reason) from err
    wallet = await wallet_of(session, holder.owner_type, holder.id)
    if wallet is None:
        raise PortalNotFound()
    try:
        minimum = _euros(min_balance, "Solde minimum", allow_negative=True)
        update_wallet(wallet, enabled=enabled is not None, min_balance_minor=minimum)
    except (ValueError, DomainError) as err:
        reason = err.reason if isinstance(err, DomainError) else str(err)  # checked before any change
        return await _wallet_page(request, principal, session, state, holder, error=reason, status_code=422)
    await session.commit()
    return RedirectResponse(holder.base, status_code=303)


async def _fund(
    request: Request,
    principal: Principal,
    session: SessionDep,
    state: StateDep,
    holder: Holder,
    amount: str,
    batch: str,
) -> Response:
    """`batch` is drawn once per rendered form: submitting the same form twice funds once."""
    wallet = await wallet_of(session, holder.owner_type, holder.id)
    if wallet is None:
        raise PortalNotFound()
    wallet_id = wallet.id
    await session.commit()  # release the connection while the funding starts
    try:
        amount_minor = _euros(amount, "Montant", allow_negative=False)
        await fund_wallet(state, principal, wallet_id, amount_minor, f"portal-{batch}")
    except (ValueError, DomainError) as err:
        reason = err.reason if isinstance(err, DomainError) else str(err)
        return await _wallet_page(request, principal, session, state, holder, error=reason, status_code=422)
    return RedirectResponse(f"{holder.base}#fundings", status_code=303)


# --- a company's wallet ---------------------------------------------------------------------------------

Amount = Annotated[str, Form(max_length=32)]
Batch = Annotated[str, Form(pattern=r"^[a-f0-9]{32}$")]
Enabled = Annotated[str | None, Form(max_length=8)]
From = Annotated[date | None, Query(alias="from")]
To = Annotated[date | None, Query(alias="to")]


@router.get("/companies/{company_id}/wallet")
async def wallet_page(
    company_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    first: From = None,
    last: To = None,
) -> Response:
    holder = await _company(session, principal, company_id)
    return await _wallet_page(request, principal, session, state, holder, first=first, last=last)


@router.get("/companies/{company_id}/wallet/fundings")
async def wallet_fundings(
    company_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    return await _fundings_table(request, principal, session, state, await _company(session, principal, company_id))


@router.post("/companies/{company_id}/wallet", dependencies=[CsrfChecked])
async def wallet_create(
    company_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    return await _create(request, principal, session, state, await _company(session, principal, company_id))


@router.post("/companies/{company_id}/wallet/settings", dependencies=[CsrfChecked])
async def wallet_settings(
    company_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    min_balance: Amount,
    enabled: Enabled = None,
) -> Response:
    holder = await _company(session, principal, company_id)
    return await _settings(request, principal, session, state, holder, min_balance, enabled)


@router.post("/companies/{company_id}/wallet/fundings", dependencies=[CsrfChecked])
async def wallet_fund(
    company_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    amount: Amount,
    batch: Batch,
) -> Response:
    holder = await _company(session, principal, company_id)
    return await _fund(request, principal, session, state, holder, amount, batch)


# --- an end user's wallet (the API's `/end-users/{end_user_id}/wallet`) ---------------------------------


@router.get("/end-users/{end_user_id}/wallet")
async def end_user_wallet_page(
    end_user_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    first: From = None,
    last: To = None,
) -> Response:
    holder = await _end_user(session, principal, end_user_id)
    return await _wallet_page(request, principal, session, state, holder, first=first, last=last)


@router.get("/end-users/{end_user_id}/wallet/fundings")
async def end_user_wallet_fundings(
    end_user_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    return await _fundings_table(request, principal, session, state, await _end_user(session, principal, end_user_id))


@router.post("/end-users/{end_user_id}/wallet", dependencies=[CsrfChecked])
async def end_user_wallet_create(
    end_user_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    return await _create(request, principal, session, state, await _end_user(session, principal, end_user_id))


@router.post("/end-users/{end_user_id}/wallet/settings", dependencies=[CsrfChecked])
async def end_user_wallet_settings(
    end_user_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    min_balance: Amount,
    enabled: Enabled = None,
) -> Response:
    holder = await _end_user(session, principal, end_user_id)
    return await _settings(request, principal, session, state, holder, min_balance, enabled)


@router.post("/end-users/{end_user_id}/wallet/fundings", dependencies=[CsrfChecked])
async def end_user_wallet_fund(
    end_user_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    amount: Amount,
    batch: Batch,
) -> Response:
    holder = await _end_user(session, principal, end_user_id)
    return await _fund(request, principal, session, state, holder, amount, batch)
