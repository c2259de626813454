"""Wallet payments of top-ups (a debit respecting the minimum balance, and its re-credit) and the credit of
a wallet funded by card.

The ledger is append-only; each movement's `reference` is unique, so a retried activity finds the
movement it already made instead of making another.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import translates_errors
from domain.contracts import ChargeOutcome, ChargeRequest, RefundOutcome, RefundRequest
from domain.enums import FundingStatus, TopUpPaymentStatus, WalletOwnerType
from domain.errors import ErrorCode
from domain.models import TopUp, Wallet, WalletEntry, WalletFunding
from domain.services.wallets import FUNDING_ENTRY_KIND, balance_of, ensure_funding_charge, record_funding_refund
from domain.wallet_contracts import FundingCredit, FundingCredited, FundingStatusUpdate
from workflows import activity_names as names


async def paying_wallet(session: AsyncSession, topup: TopUp, *, lock: bool) -> Wallet:
    """The end user's enabled wallet if any, else the company's."""
    owners: list[tuple[WalletOwnerType, str]] = []
    if topup.end_user_id:
        owners.append((WalletOwnerType.END_USER, topup.end_user_id))
    owners.append((WalletOwnerType.COMPANY, topup.company_id))
    for owner_type, owner_id in owners:
        query = select(Wallet).where(Wallet.owner_type == owner_type, Wallet.owner_id == owner_id)
        if lock:
            query = query.with_for_update()
        wallet = (await session.execute(query)).scalar_one_or_none()
        if wallet is not None and wallet.enabled:
            return wallet
    raise ApplicationError("aucun portefeuille actif pour ce client", type="wallet.not_found", non_retryable=True)


@translates_errors
class LedgerActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def _existing(self, session: AsyncSession, reference: str) -> WalletEntry | None:
        return (
            await session.execute(select(WalletEntry).where(WalletEntry.reference == reference))
        ).scalar_one_or_none()

    @activity.defn(name=names.LEDGER_DEBIT_WALLET)
    async def debit_wallet(self, data: ChargeRequest) -> ChargeOutcome:
        async with self._sessionmaker.begin() as session:
            topup = await session.get(TopUp, data.topup_id)
            if topup is None:
                raise ApplicationError(f"top-up {data.topup_id} not found", type="topup.not_found", non_retryable=True)
            wallet = await paying_wallet(session, topup, lock=True)
            done = await self._existing(session, data.idempotency_key)
            if done is None:
                if wallet.currency != data.currency:
                    raise ApplicationError(
                        "devise du portefeuille différente", type=ErrorCode.WALLET_CURRENCY_MISMATCH, non_retryable=True
                    )
                balance = await balance_of(session, wallet.id)
                if balance - data.amount_minor < wallet.min_balance_minor:
                    raise ApplicationError(
                        f"solde insuffisant : {balance} disponible, minimum {wallet.min_balance_minor}",
                        type="wallet.insufficient_funds",
                        non_retryable=True,
                    )
                done = WalletEntry(
                    wallet_id=wallet.id,
                    amount_minor=-data.amount_minor,
                    kind="topup_debit",
                    reference=data.idempotency_key,
                    description=data.description,
                )
                session.add(done)
                await session.flush()
        return ChargeOutcome(payment_status=TopUpPaymentStatus.SUCCEEDED, payment_reference=f"wallet-entry:{done.id}")

    @activity.defn(name=names.LEDGER_REFUND_WALLET)
    async def refund_wallet(self, data: RefundRequest) -> RefundOutcome:
        charge_reference = data.idempotency_key.rsplit(":", 1)[0] + ":charge"
        async with self._sessionmaker.begin() as session:
            debit = await self._existing(session, charge_reference)
            if debit is None:  # never debited: nothing to give back
                return RefundOutcome(refund_reference="none:not-charged", answer={"charged": False})
            refund = await self._existing(session, data.idempotency_key)
            if refund is None:
                refund = WalletEntry(
                    wallet_id=debit.wallet_id,
                    amount_minor=-debit.amount_minor,
                    kind="topup_refund",
                    reference=data.idempotency_key,
                    description=f"Remboursement recharge {data.topup_id}",
                )
                session.add(refund)
                await session.flush()
        return RefundOutcome(refund_reference=f"wallet-entry:{refund.id}")

    # --- wallet fundings ---------------------------------------------------------------------------

    @activity.defn(name=names.LEDGER_CREDIT_FUNDING)
    async def credit_funding(self, data: FundingCredit) -> FundingCredited:
        """The ledger credit of a charged funding, once (unique reference). A disabled wallet refuses it,
        finally: the workflow then refunds the charge."""
        async with self._sessionmaker.begin() as session:
            funding = await session.get(WalletFunding, data.funding_id)
            if funding is None or funding.org_id != data.org_id:
                raise ApplicationError(
                    f"funding {data.funding_id} not found", type="funding.not_found", non_retryable=True
                )
            done = await self._existing(session, data.reference)
            if done is None:
                query = select(Wallet).where(Wallet.id == funding.wallet_id).with_for_update()
                wallet = (await session.execute(query)).scalar_one()
                if not wallet.enabled:
                    raise ApplicationError("portefeuille désactivé", type="wallet.disabled", non_retryable=True)
                if wallet.currency != funding.currency:
                    raise ApplicationError(
                        "devise du portefeuille différente", type=ErrorCode.WALLET_CURRENCY_MISMATCH, non_retryable=True
                    )
                done = WalletEntry(
                    wallet_id=wallet.id,
                    amount_minor=funding.amount_minor,
                    kind=FUNDING_ENTRY_KIND,
                    reference=data.reference,
                    description=f"Approvisionnement par carte {funding.id}",
                )
                session.add(done)
                await session.flush()
            # Every money movement is a transaction: written with the credit, in its database transaction.
            await ensure_funding_charge(session, funding)
            balance = await balance_of(session, done.wallet_id)
        return FundingCredited(ledger_reference=done.reference, entry_id=done.id, balance_minor=balance)

    @activity.defn(name=names.LEDGER_SET_FUNDING_STATUS)
    async def set_funding_status(self, data: FundingStatusUpdate) -> None:
        values = {k: v for k, v in data.model_dump(exclude={"funding_id", "org_id"}).items() if v is not None}
        async with self._sessionmaker.begin() as session:
            funding = await session.get(WalletFunding, data.funding_id)
            if funding is None or funding.org_id != data.org_id:
                raise ApplicationError(
                    f"funding {data.funding_id} not found", type="funding.not_found", non_retryable=True
                )
            for key, value in values.items():
                setattr(funding, key, value)
            if data.status == FundingStatus.REFUNDED:  # the card was charged and refunded: its reversal and Refund row
                await record_funding_refund(session, funding)
