"""Wallets (seed 000 "Portefeuille"): a company's or an end user's wallet (create, enable/disable, minimum
balance), its ledger over a period (with a CSV export), and its funding by card (`Idempotency-Key`), which a
workflow carries out: 202 with the funding id and the workflow id, then `GET` the funding."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.deps import PrincipalDep, SessionDep, StateDep
from api.guard import audit_note
from api.schemas import CSV_RESPONSE, Request, UtcDatetime
from domain.authz import Action, Principal, PrincipalKind, TenantChain, authorize
from domain.csv_files import write_csv
from domain.enums import FundingStatus, WalletOwnerType
from domain.errors import IllegalTransition, NotFound, PermissionDenied, ValidationFailed
from domain.models import Company, EndUser, Wallet, WalletFunding
from domain.services.wallets import (
    KIND_LABELS_FR,
    LEDGER_CSV_HEADER,
    MAX_FUNDING_MINOR,
    MIN_BALANCE_LIMIT_MINOR,
    MIN_FUNDING_MINOR,
    FundingRequest,
    LedgerOverview,
    Period,
    balance_of,
    create_or_get_funding,
    create_wallet,
    funding_input,
    ledger_csv_rows,
    ledger_overview,
    update_wallet,
    wallet_of,
)
from domain.wallet_contracts import FundingResolution
from infra.temporal import workflow_ui_url
from starters.topups import start_wallet_funding
from workflows.wallet_funding import WalletFundingWorkflow

router = APIRouter(prefix="/api/v1", tags=["Portefeuilles"])

MAX_LEDGER_ENTRIES = 1000
MAX_EXPORT_ENTRIES = 50_000


class WalletCreate(Request):
    enabled: bool = True
    min_balance_minor: int = Field(
        default=0,
        ge=-MIN_BALANCE_LIMIT_MINOR,
        le=MIN_BALANCE_LIMIT_MINOR,
        description="Solde minimum en centimes : positif, un montant à conserver ; négatif, un découvert autorisé",
    )


class WalletUpdate(Request):
    enabled: bool | None = None
    min_balance_minor: int | None = Field(default=None, ge=-MIN_BALANCE_LIMIT_MINOR, le=MIN_BALANCE_LIMIT_MINOR)


class WalletOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    org_id: str
    company_id: str
    owner_type: WalletOwnerType
    owner_id: str
    enabled: bool
    min_balance_minor: int
    currency: str
    balance_minor: int
    created_at: UtcDatetime


class LedgerEntryOut(BaseModel):
    id: int
    at: UtcDatetime
    kind: str
    label: str
    description: str
    reference: str
    amount_minor: int
    balance_after_minor: int


class WalletLedgerOut(BaseModel):
    wallet: WalletOut
    period_from: date | None
    period_to: date | None
    starting_balance_minor: int
    total_topped_up_minor: int
    total_spent_minor: int
    final_balance_minor: int
    entries: list[LedgerEntryOut]
    has_more: bool = Field(description="Plus d'écritures sur la période que `limit` : l'export CSV les donne toutes")


class FundingCreate(Request):
    amount_minor: int = Field(ge=MIN_FUNDING_MINOR, le=MAX_FUNDING_MINOR, description="Montant en centimes")


class FundingOut(BaseModel):
    funding_id: str
    wallet_id: str
    workflow_id: str
    workflow_url: str
    status: str
    amount_minor: int
    currency: str
    payment_reference: str | None
    refund_reference: str | None
    ledger_reference: str | None
    failure_reason: str | None
    created_at: UtcDatetime


class FundingResolutionCreate(Request):
    action: Literal["retry_refund", "refunded_manually"]
    note: str = Field(min_length=3, max_length=1000)


class FundingList(BaseModel):
    items: list[FundingOut]


# --- helpers shared with the portal ----------------------------------------------------------------------


async def wallet_out(session: SessionDep, wallet: Wallet) -> WalletOut:
    return WalletOut(
        id=wallet.id,
        org_id=wallet.org_id,
        company_id=wallet.company_id,
        owner_type=wallet.owner_type,
        owner_id=wallet.owner_id,
        enabled=wallet.enabled,
        min_balance_minor=wallet.min_balance_minor,
        currency=wallet.currency,
        balance_minor=await balance_of(session, wallet.id),
        created_at=wallet.created_at,
    )


def funding_out(state: StateDep, funding: WalletFunding) -> FundingOut:
    return FundingOut(
        funding_id=funding.id,
        wallet_id=funding.wallet_id,
        workflow_id=funding.workflow_id,
        workflow_url=workflow_ui_url(state.settings, funding.workflow_id),
        status=funding.status,
        amount_minor=funding.amount_minor,
        currency=funding.currency,
        payment_reference=funding.payment_reference,
        refund_reference=funding.refund_reference,
        ledger_reference=funding.ledger_reference,
        failure_reason=funding.failure_reason,
        created_at=funding.created_at,
    )


def require_wallet_manager(principal: Principal) -> None:
    """A wallet's settings (its existence, its minimum balance: a credit limit) are the organisation's."""
    if principal.kind is PrincipalKind.END_USER or principal.company_id is not None:
        raise PermissionDenied(None, "réglages du portefeuille réservés au personnel de l'organisation")


async def load_wallet(session: SessionDep, principal: Principal, wallet_id: str, action: Action) -> Wallet:
    wallet = await session.get(Wallet, wallet_id)
    if wallet is None:
        raise NotFound(None, "portefeuille introuvable")
    authorize(principal, action, wallet, "portefeuille")
    return wallet


async def fund_wallet(
    state: StateDep, principal: Principal, wallet_id: str, amount_minor: int, key: str
) -> tuple[WalletFunding, bool]:
    """Shared by the API and the portal: writes the funding intent (idempotent by key), then starts its
    workflow (the same key again attaches to the same workflow: one charge)."""
    async with state.sessionmaker() as session:
        await load_wallet(session, principal, wallet_id, Action.WRITE)
    request = FundingRequest(
        wallet_id=wallet_id, amount_minor=amount_minor, idempotency_key=key, requested_by=principal.label
    )
    funding, created = await create_or_get_funding(state.sessionmaker, request)
    data = funding_input(funding, charge_window_s=state.settings.topup_charge_window_s)
    await start_wallet_funding(await state.temporal(), state.settings, data)
    return funding, created


def _period(first: date | None, last: date | None) -> Period:
    return Period.of_days(first, last)


def _ledger_out(wallet: WalletOut, overview: LedgerOverview, first: date | None, last: date | None) -> WalletLedgerOut:
    return WalletLedgerOut(
        wallet=wallet,
        period_from=first,
        period_to=last,
        starting_balance_minor=overview.starting_minor,
        total_topped_up_minor=overview.topped_up_minor,
        total_spent_minor=overview.spent_minor,
        final_balance_minor=overview.final_minor,
        entries=[
            LedgerEntryOut(
                id=line.entry.id,
                at=line.entry.at,
                kind=line.entry.kind,
                label=KIND_LABELS_FR.get(line.entry.kind, line.entry.kind),
                description=line.entry.description,
                reference=line.entry.reference,
                amount_minor=line.entry.amount_minor,
                balance_after_minor=line.balance_after_minor,
            )
            for line in overview.lines
        ],
        has_more=overview.has_more,
    )


DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
FromQuery = Annotated[
    str | None,
    Query(
        alias="from",
        pattern=DAY_PATTERN,
        description="Premier jour de la période (AAAA-MM-JJ, UTC, inclus)",
        json_schema_extra={"format": "date"},
    ),
]
ToQuery = Annotated[
    str | None,
    Query(
        alias="to",
        pattern=DAY_PATTERN,
        description="Dernier jour de la période (AAAA-MM-JJ, UTC, inclus)",
        json_schema_extra={"format": "date"},
    ),
]


def _day(value: str | None, field: str) -> date | None:
    """A day as the query gives it, strictly `AAAA-MM-JJ` (lax parsing would read `0` as 1970-01-01)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed(field, "date invalide (AAAA-MM-JJ)") from exc


# --- a company's or an end user's wallet -----------------------------------------------------------------


async def _owner(
    session: SessionDep, principal: Principal, owner_type: WalletOwnerType, owner_id: str
) -> Company | EndUser:
    owner: Company | EndUser | None
    if owner_type is WalletOwnerType.COMPANY:
        owner = await session.get(Company, owner_id)
        what = "entreprise"
    else:
        owner = await session.get(EndUser, owner_id)
        what = "utilisateur final"
    if owner is None:
        raise NotFound(None, f"{what} introuvable")
    chain = (
        TenantChain(owner.org_id, owner.id)
        if isinstance(owner, Company)
        else TenantChain(owner.org_id, owner.company_id, owner.id)
    )
    authorize(principal, Action.READ, chain, what)
    return owner


async def _get_owned(
    session: SessionDep, principal: Principal, owner_type: WalletOwnerType, owner_id: str
) -> WalletOut:
    await _owner(session, principal, owner_type, owner_id)
    wallet = await wallet_of(session, owner_type, owner_id)
    if wallet is None:
        raise NotFound(None, "aucun portefeuille pour ce titulaire")
    authorize(principal, Action.READ, wallet, "portefeuille")
    return await wallet_out(session, wallet)


async def create_owned_wallet(
    session: SessionDep, principal: Principal, owner_type: WalletOwnerType, owner_id: str, body: WalletCreate
) -> WalletOut:
    require_wallet_manager(principal)
    owner = await _owner(session, principal, owner_type, owner_id)
    authorize(principal, Action.WRITE, TenantChain(owner.org_id), "organisation")
    wallet = await create_wallet(session, owner, enabled=body.enabled, min_balance_minor=body.min_balance_minor)
    audit_note(action="wallet.created", target=f"wallet:{wallet.id}", enabled=wallet.enabled)
    return await wallet_out(session, wallet)


async def _update_owned(
    session: SessionDep, principal: Principal, owner_type: WalletOwnerType, owner_id: str, body: WalletUpdate
) -> WalletOut:
    require_wallet_manager(principal)
    await _owner(session, principal, owner_type, owner_id)
    wallet = await wallet_of(session, owner_type, owner_id)
    if wallet is None:
        raise NotFound(None, "aucun portefeuille pour ce titulaire")
    authorize(principal, Action.WRITE, wallet, "portefeuille")
    update_wallet(wallet, enabled=body.enabled, min_balance_minor=body.min_balance_minor)
    audit_note(
        action="wallet.updated",
        target=f"wallet:{wallet.id}",
        enabled=wallet.enabled,
        min_balance_minor=wallet.min_balance_minor,
    )
    await session.flush()
    return await wallet_out(session, wallet)


@router.get("/companies/{company_id}/wallet", response_model=WalletOut)
async def get_company_wallet(company_id: str, principal: PrincipalDep, session: SessionDep) -> WalletOut:
    return await _get_owned(session, principal, WalletOwnerType.COMPANY, company_id)


@router.post("/companies/{company_id}/wallet", response_model=WalletOut, status_code=201)
async def create_company_wallet(
    company_id: str, body: WalletCreate, principal: PrincipalDep, session: SessionDep
) -> WalletOut:
    return await create_owned_wallet(session, principal, WalletOwnerType.COMPANY, company_id, body)


@router.patch("/companies/{company_id}/wallet", response_model=WalletOut)
async def update_company_wallet(
    company_id: str, body: WalletUpdate, principal: PrincipalDep, session: SessionDep
) -> WalletOut:
    return await _update_owned(session, principal, WalletOwnerType.COMPANY, company_id, body)


@router.get("/end-users/{end_user_id}/wallet", response_model=WalletOut)
async def get_end_user_wallet(end_user_id: str, principal: PrincipalDep, session: SessionDep) -> WalletOut:
    return await _get_owned(session, principal, WalletOwnerType.END_USER, end_user_id)


@router.post("/end-users/{end_user_id}/wallet", response_model=WalletOut, status_code=201)
async def create_end_user_wallet(
    end_user_id: str, body: WalletCreate, principal: PrincipalDep, session: SessionDep
) -> WalletOut:
    return await create_owned_wallet(session, principal, WalletOwnerType.END_USER, end_user_id, body)


@router.patch("/end-users/{end_user_id}/wallet", response_model=WalletOut)
async def update_end_user_wallet(
    end_user_id: str, body: WalletUpdate, principal: PrincipalDep, session: SessionDep
) -> WalletOut:
    return await _update_owned(session, principal, WalletOwnerType.END_USER, end_user_id, body)


# --- a wallet by id: ledger, CSV, fundings ---------------------------------------------------------------


@router.get("/wallets/{wallet_id}", response_model=WalletLedgerOut)
async def get_wallet(
    wallet_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    from_day: FromQuery = None,
    to_day: ToQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LEDGER_ENTRIES)] = 200,
) -> WalletLedgerOut:
    """The wallet, its overview over the period (starting balance, total topped up, total spent, final
    balance) and the period's entries, oldest first, each with its reference and the balance after it."""
    first, last = _day(from_day, "from"), _day(to_day, "to")
    wallet = await load_wallet(session, principal, wallet_id, Action.READ)
    overview = await ledger_overview(session, wallet.id, _period(first, last), limit)
    return _ledger_out(await wallet_out(session, wallet), overview, first, last)


@router.get("/wallets/{wallet_id}/ledger.csv", response_class=Response, responses=CSV_RESPONSE)
async def export_ledger(
    wallet_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    from_day: FromQuery = None,
    to_day: ToQuery = None,
) -> Response:
    """The period's entries as CSV (`;`, UTF-8 with BOM), amounts in euros with a decimal comma."""
    first, last = _day(from_day, "from"), _day(to_day, "to")
    wallet = await load_wallet(session, principal, wallet_id, Action.READ)
    overview = await ledger_overview(session, wallet.id, _period(first, last), MAX_EXPORT_ENTRIES)
    return Response(
        write_csv(LEDGER_CSV_HEADER, ledger_csv_rows(overview.lines, wallet.currency)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="portefeuille-{wallet.id}.csv"'},
    )


@router.post("/wallets/{wallet_id}/fundings", response_model=FundingOut, status_code=202)
async def create_funding(
    wallet_id: str,
    body: FundingCreate,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)],
) -> FundingOut:
    """Funds the wallet by charging its owner's saved card; the workflow charges, then credits the ledger
    (or refunds). The same `Idempotency-Key` again answers the same funding: one charge."""
    await session.commit()  # the request's session only served authentication: release it
    funding, _created = await fund_wallet(state, principal, wallet_id, body.amount_minor, idempotency_key)
    audit_note(
        action="wallet.funding_requested", target=f"wallet_funding:{funding.id}", workflow_id=funding.workflow_id
    )
    return funding_out(state, funding)


@router.get("/wallets/{wallet_id}/fundings", response_model=FundingList)
async def list_fundings(
    wallet_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FundingList:
    """The wallet's most recent fundings, newest first."""
    wallet = await load_wallet(session, principal, wallet_id, Action.READ)
    query = (
        select(WalletFunding)
        .where(WalletFunding.wallet_id == wallet.id)
        .order_by(WalletFunding.created_at.desc(), WalletFunding.id)
        .limit(limit)
    )
    return FundingList(items=[funding_out(state, f) for f in (await session.execute(query)).scalars()])


@router.get("/wallets/{wallet_id}/fundings/{funding_id}", response_model=FundingOut)
async def get_funding(
    wallet_id: str, funding_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> FundingOut:
    funding = await session.get(WalletFunding, funding_id)
    if funding is None or funding.wallet_id != wallet_id:
        raise NotFound(None, "approvisionnement introuvable")
    authorize(principal, Action.READ, funding, "approvisionnement")
    return funding_out(state, funding)


@router.post("/wallets/{wallet_id}/fundings/{funding_id}/resolution", response_model=FundingOut)
async def resolve_funding(
    wallet_id: str,
    funding_id: str,
    body: FundingResolutionCreate,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
) -> FundingOut:
    """Staff decision on a funding whose refund failed: retry the refund, or confirm a refund made by hand."""
    funding = await session.get(WalletFunding, funding_id)
    if funding is None or funding.wallet_id != wallet_id:
        raise NotFound(None, "approvisionnement introuvable")
    authorize(principal, Action.WRITE, funding, "approvisionnement")
    require_wallet_manager(principal)
    if funding.status != FundingStatus.NEEDS_ATTENTION:
        raise IllegalTransition("status", f"l'approvisionnement est « {funding.status} », pas « needs_attention »")
    await session.commit()  # release the connection while the workflow works
    handle = (await state.temporal()).get_workflow_handle_for(WalletFundingWorkflow.run, funding.workflow_id)
    try:
        receipt = await handle.execute_update(
            WalletFundingWorkflow.resolve,
            FundingResolution(action=body.action, note=body.note, actor=principal.label),
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise IllegalTransition("status", f"résolution refusée : {err}") from err
    audit_note(action=f"wallet_funding.resolution.{body.action}", target=f"wallet_funding:{funding.id}")
    # The workflow's answer: our row may lag by the status write that follows it.
    return funding_out(state, funding).model_copy(
        update={
            "status": receipt.status,
            "refund_reference": receipt.refund_reference,
            "failure_reason": receipt.failure_reason,
        }
    )
