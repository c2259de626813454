"""Wallets (seed 000 "Portefeuille"): one per company and per end user, enabled or not, with a minimum
balance that may be negative; the append-only ledger and its overview over a period; funding intents by
card, idempotent by the caller's key. Services never commit: the request or the activity owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.enums import PaymentMethod, PaymentStatus, WalletOwnerType
from domain.errors import AlreadyExists, IdempotencyMismatch, IllegalTransition, NotFound, ValidationFailed
from domain.models import Company, EndUser, Payment, Transaction, Wallet, WalletEntry, WalletFunding
from domain.money import Money
from domain.services.billing import BILLED_BY_NONE, record_payment, record_refund, record_transaction
from domain.services.topups import IDEMPOTENCY_KEY
from domain.wallet_contracts import WalletFundingInput, funding_workflow_id

# Ledger entry kinds that add money to a wallet (shown as "Total rechargé"); every other kind is spending
# (a top-up debit, net of its refund).
FUNDING_ENTRY_KIND = "card_funding"
TOP_UP_KINDS = (FUNDING_ENTRY_KIND, "top_up")
KIND_LABELS_FR = {
    FUNDING_ENTRY_KIND: "Approvisionnement par carte",
    "top_up": "Crédit",
    "topup_debit": "Recharge DATA",
    "topup_refund": "Remboursement de recharge",
}

# A funding is a prepayment, not a sale: no VAT on it; the VAT is in the top-ups the wallet pays.
FUNDING_TAX_RATE_BP = 0

MIN_FUNDING_MINOR = 100  # 1,00 €
MAX_FUNDING_MINOR = 1_000_000  # 10 000,00 €
MIN_BALANCE_LIMIT_MINOR = 100_000_000  # |minimum balance| ≤ 1 000 000,00 €
LEDGER_CSV_HEADER = ("date", "type", "description", "reference", "montant", "devise", "solde")


async def wallet_of(session: AsyncSession, owner_type: WalletOwnerType, owner_id: str) -> Wallet | None:
    query = select(Wallet).where(Wallet.owner_type == owner_type, Wallet.owner_id == owner_id)
    return (await session.execute(query)).scalar_one_or_none()


async def balance_of(session: AsyncSession, wallet_id: str) -> int:
    total = select(func.coalesce(func.sum(WalletEntry.amount_minor), 0)).where(WalletEntry.wallet_id == wallet_id)
    return int((await session.execute(total)).scalar_one())


def check_min_balance(value: int) -> None:
    if abs(value) > MIN_BALANCE_LIMIT_MINOR:
        raise ValidationFailed("min_balance_minor", "au plus 1 000 000,00 € en valeur absolue")


async def create_wallet(
    session: AsyncSession,
    owner: Company | EndUser,
    *,
    enabled: bool = True,
    min_balance_minor: int = 0,
    currency: str = "EUR",
) -> Wallet:
    """The owner's wallet; one per owner (a second is refused, also under a concurrent create)."""
    check_min_balance(min_balance_minor)
    owner_type = WalletOwnerType.COMPANY if isinstance(owner, Company) else WalletOwnerType.END_USER
    if await wallet_of(session, owner_type, owner.id) is not None:
        raise AlreadyExists(None, "ce titulaire a déjà un portefeuille")
    wallet = Wallet(
        org_id=owner.org_id,
        company_id=owner.id if isinstance(owner, Company) else owner.company_id,
        owner_type=owner_type,
        owner_id=owner.id,
        enabled=enabled,
        min_balance_minor=min_balance_minor,
        currency=currency,
    )
    try:
        async with session.begin_nested():
            session.add(wallet)
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(None, "ce titulaire a déjà un portefeuille") from exc
    return wallet


def update_wallet(wallet: Wallet, *, enabled: bool | None, min_balance_minor: int | None) -> Wallet:
    """Enable or disable, set the minimum balance. The balance itself only moves through the ledger."""
    if min_balance_minor is not None:
        check_min_balance(min_balance_minor)
        wallet.min_balance_minor = min_balance_minor
    if enabled is not None:
        wallet.enabled = enabled
    return wallet


# --- the ledger over a period ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; None on either side means unbounded."""

    start: datetime | None
    end: datetime | None

    @classmethod
    def of_days(cls, first: date | None, last: date | None) -> Period:
        """From the first day's start to the end of the last day, both included."""
        if first and last and last < first:
            raise ValidationFailed("to", "la date de fin précède la date de début")
        start = datetime.combine(first, time.min, tzinfo=UTC) if first else None
        end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC) if last else None
        return cls(start, end)


@dataclass(frozen=True)
class LedgerLine:
    entry: WalletEntry
    balance_after_minor: int


@dataclass(frozen=True)
class LedgerOverview:
    """Seed 000 "Aperçu des transactions": starting balance + topped up − spent = final balance."""

    starting_minor: int
    topped_up_minor: int
    spent_minor: int
    final_minor: int
    lines: list[LedgerLine]
    has_more: bool


async def ledger_overview(session: AsyncSession, wallet_id: str, period: Period, limit: int) -> LedgerOverview:
    """Totals over the period and its entries, oldest first, each with the balance after it; `limit` caps
    the entries returned (the totals always cover the whole period)."""
    starting = 0
    if period.start is not None:
        before = select(func.coalesce(func.sum(WalletEntry.amount_minor), 0)).where(
            WalletEntry.wallet_id == wallet_id, WalletEntry.at < period.start
        )
        starting = int((await session.execute(before)).scalar_one())
    conditions = [WalletEntry.wallet_id == wallet_id]
    if period.start is not None:
        conditions.append(WalletEntry.at >= period.start)
    if period.end is not None:
        conditions.append(WalletEntry.at < period.end)
    is_top_up = WalletEntry.kind.in_(TOP_UP_KINDS)
    totals = select(
        func.coalesce(func.sum(case((is_top_up, WalletEntry.amount_minor), else_=0)), 0),
        func.coalesce(func.sum(case((is_top_up, 0), else_=WalletEntry.amount_minor)), 0),
    ).where(*conditions)
    topped_up, other = (await session.execute(totals)).one()
    entries = list(
        (
            await session.execute(
                select(WalletEntry).where(*conditions).order_by(WalletEntry.at, WalletEntry.id).limit(limit + 1)
            )
        ).scalars()
    )
    has_more = len(entries) > limit
    running = starting
    lines: list[LedgerLine] = []
    for entry in entries[:limit]:
        running += entry.amount_minor
        lines.append(LedgerLine(entry, running))
    final = starting + int(topped_up) + int(other)
    return LedgerOverview(starting, int(topped_up), -int(other), final, lines, has_more)


def ledger_csv_rows(lines: Sequence[LedgerLine], currency: str) -> list[list[object]]:
    """Rows for `write_csv`: amounts in euros with a decimal comma, as French spreadsheets read them."""

    def euros(minor: int) -> str:
        sign = "-" if minor < 0 else ""
        return f"{sign}{abs(minor) // 100},{abs(minor) % 100:02d}"

    return [
        [
            line.entry.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            KIND_LABELS_FR.get(line.entry.kind, line.entry.kind),
            line.entry.description,
            line.entry.reference,
            euros(line.entry.amount_minor),
            currency,
            euros(line.balance_after_minor),
        ]
        for line in lines
    ]


# --- funding by card ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FundingRequest:
    wallet_id: str
    amount_minor: int
    idempotency_key: str
    requested_by: str

    def fingerprint(self) -> str:
        payload = {"wallet_id": self.wallet_id, "amount_minor": self.amount_minor}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def check_funding(request: FundingRequest) -> None:
    if not IDEMPOTENCY_KEY.match(request.idempotency_key):
        raise ValidationFailed("Idempotency-Key", "8 à 64 caractères parmi lettres, chiffres, « - » et « _ »")
    if not MIN_FUNDING_MINOR <= request.amount_minor <= MAX_FUNDING_MINOR:
        raise ValidationFailed("amount_minor", "entre 1,00 € et 10 000,00 €")


async def find_funding_by_key(session: AsyncSession, org_id: str, key: str) -> WalletFunding | None:
    query = select(WalletFunding).where(WalletFunding.org_id == org_id, WalletFunding.idempotency_key == key)
    return (await session.execute(query)).scalar_one_or_none()


def _same_request(existing: WalletFunding, request: FundingRequest) -> WalletFunding:
    if existing.request_fingerprint != request.fingerprint():
        raise IdempotencyMismatch("Idempotency-Key", "clé déjà utilisée pour un autre approvisionnement")
    return existing


async def create_or_get_funding(
    sessionmaker: async_sessionmaker[AsyncSession], request: FundingRequest
) -> tuple[WalletFunding, bool]:
    """Writes the funding intent in its own transaction; the same key again gets the first funding (a
    different body under that key is refused). A disabled wallet accepts no new funding."""
    check_funding(request)
    async with sessionmaker() as session:
        wallet = await session.get(Wallet, request.wallet_id)
        if wallet is None:
            raise NotFound(None, "portefeuille introuvable")
        existing = await find_funding_by_key(session, wallet.org_id, request.idempotency_key)
    if existing is not None:
        return _same_request(existing, request), False
    if not wallet.enabled:
        raise IllegalTransition("wallet_id", "le portefeuille est désactivé")
    try:
        async with sessionmaker.begin() as session:
            funding = WalletFunding(
                org_id=wallet.org_id,
                company_id=wallet.company_id,
                end_user_id=wallet.end_user_id,
                wallet_id=wallet.id,
                idempotency_key=request.idempotency_key,
                request_fingerprint=request.fingerprint(),
                requested_by=request.requested_by,
                amount_minor=request.amount_minor,
                currency=wallet.currency,
                workflow_id="",
            )
            session.add(funding)
            await session.flush()
            funding.workflow_id = funding_workflow_id(wallet.org_id, funding.id)
    except IntegrityError:
        # A concurrent request with the same key won the insert: answer with its funding.
        async with sessionmaker() as session:
            existing = await find_funding_by_key(session, wallet.org_id, request.idempotency_key)
        if existing is None:
            raise
        return _same_request(existing, request), False
    return funding, True


def funding_input(funding: WalletFunding, *, charge_window_s: int = 600) -> WalletFundingInput:
    return WalletFundingInput(
        funding_id=funding.id,
        org_id=funding.org_id,
        company_id=funding.company_id,
        wallet_id=funding.wallet_id,
        amount_minor=funding.amount_minor,
        currency=funding.currency,
        charge_window_s=charge_window_s,
    )


# --- a funding's money as transactions ------------------------------------------------------------------


async def ensure_funding_charge(session: AsyncSession, funding: WalletFunding) -> tuple[Payment, Transaction]:
    """The card payment and the transaction of a charged funding, written once (references from its
    workflow), in the caller's database transaction (the ledger credit's, or the refund's). `billed_by=none`:
    money put into a wallet is no sale, the receipt of each top-up it pays documents the sale."""
    prefix = funding.workflow_id
    amount = Money(funding.amount_minor, funding.currency)
    transaction = await record_transaction(
        session,
        org_id=funding.org_id,
        company_id=funding.company_id,
        reference=f"{prefix}:transaction",
        description="Approvisionnement du portefeuille par carte",
        retail=amount,
        tax_rate_bp=FUNDING_TAX_RATE_BP,
        billed_by=BILLED_BY_NONE,
    )
    payment = await record_payment(
        session,
        org_id=funding.org_id,
        company_id=funding.company_id,
        reference=f"{prefix}:payment",
        method=PaymentMethod.CARD,
        amount=amount,
        status=PaymentStatus.SUCCEEDED,
        stripe_payment_intent_id=funding.payment_reference,
    )
    return payment, transaction


async def record_funding_refund(session: AsyncSession, funding: WalletFunding) -> None:
    """A refunded funding (charged, its credit refused or its outcome unknown): the charge, its reversal and
    the `Refund` row, once each, like a refunded top-up. A refund that found nothing charged writes nothing."""
    if (funding.refund_reference or "").startswith("none:"):
        return
    payment, charge = await ensure_funding_charge(session, funding)
    await record_refund(
        session,
        charge=charge,
        payment=payment,
        reversal_reference=f"{funding.workflow_id}:transaction-reversal",
        refund_reference=f"{funding.workflow_id}:refund",
        description="Remboursement de l'approvisionnement du portefeuille",
        provider_reference=funding.refund_reference,
    )
