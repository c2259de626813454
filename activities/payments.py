"""Card payments of top-ups and wallet fundings through Stripe: off-session charge on the saved card, and
its refund.

Keys come from the workflow (`{workflow_id}:charge`, `{workflow_id}:refund`), so a retried or replayed
activity never charges or refunds twice. The payer (customer and card) is resolved once by the workflow,
before the first charge attempt, and sent with every attempt: a card saved in between changes nothing.
The payer is the owner's default card (`stripe_payment_method_id`, set when a card is saved or made the
default). Every Stripe call goes to the top-up organisation's own Stripe account (`stripe_account_ref`).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import external_call, translates_errors
from domain.contracts import CardPayer, ChargeOutcome, ChargeRequest, RefundOutcome, RefundRequest, ResolvePayer
from domain.enums import TopUpPaymentStatus
from domain.models import Company, EndUser, Organisation, TopUp, WalletFunding
from domain.wallet_contracts import FundingCharge, FundingMoneyOutcome, FundingRef, FundingRefund
from integrations.stripe_gateway import StripeGateway
from workflows import activity_names as names


def no_saved_card() -> ApplicationError:
    return ApplicationError("aucune carte enregistrée pour ce client", type="payment.no_saved_card", non_retryable=True)


async def saved_card(session: AsyncSession, end_user_id: str | None, company_id: str) -> CardPayer | None:
    """The saved card that pays for an end user (theirs if they have one, else their company's) or a company."""
    candidates: list[EndUser | Company | None] = []
    if end_user_id:
        candidates.append(await session.get(EndUser, end_user_id))
    candidates.append(await session.get(Company, company_id))
    for payer in candidates:
        if payer is not None and payer.stripe_customer_id and payer.stripe_payment_method_id:
            return CardPayer(customer_id=payer.stripe_customer_id, payment_method_id=payer.stripe_payment_method_id)
    return None


@translates_errors
class PaymentActivities:
    def __init__(self, gateway: StripeGateway, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._gateway = gateway
        self._sessionmaker = sessionmaker

    async def _topup(self, session: AsyncSession, topup_id: str) -> TopUp:
        topup = await session.get(TopUp, topup_id)
        if topup is None:
            raise ApplicationError(f"top-up {topup_id} not found", type="topup.not_found", non_retryable=True)
        return topup

    async def _account(self, topup_id: str) -> str | None:
        """The Stripe account of the top-up's organisation (None: the platform's own)."""
        async with self._sessionmaker() as session:
            topup = await self._topup(session, topup_id)
            org = await session.get(Organisation, topup.org_id)
            return org.stripe_account_ref if org is not None else None

    @staticmethod
    def _metadata(topup: TopUp) -> dict[str, str]:
        """What every PaymentIntent of the top-up carries: how it is found again, and attributed."""
        return {"topup_id": topup.id, "org_id": topup.org_id, "workflow_id": topup.workflow_id}

    async def _payer(
        self, topup_id: str, fixed: CardPayer | None = None
    ) -> tuple[CardPayer, dict[str, str], str | None]:
        """The payer fixed by the workflow, else the default card that pays now (the end user's if they have
        one, else the company's); the top-up's PaymentIntent metadata; the organisation's Stripe account."""
        async with self._sessionmaker() as session:
            topup = await self._topup(session, topup_id)
            metadata = self._metadata(topup)
            org = await session.get(Organisation, topup.org_id)
            account = org.stripe_account_ref if org is not None else None
            if fixed is not None:
                return fixed, metadata, account
            payer = await saved_card(session, topup.end_user_id, topup.company_id)
            if payer is not None:
                return payer, metadata, account
        raise no_saved_card()

    @activity.defn(name=names.PAYMENT_RESOLVE_PAYER)
    async def resolve_payer(self, data: ResolvePayer) -> CardPayer:
        payer, _metadata, _account = await self._payer(data.topup_id)
        return payer

    @activity.defn(name=names.PAYMENT_CHARGE_CARD)
    async def charge_card(self, data: ChargeRequest) -> ChargeOutcome:
        payer, metadata, account = await self._payer(data.topup_id, data.payer)
        sent = {
            "customer": payer.customer_id,
            "payment_method": payer.payment_method_id,
            "amount": data.amount_minor,
            "currency": data.currency,
            "metadata": metadata,
            "off_session": True,
        }
        async with external_call():
            result = await self._gateway.charge_off_session(
                payer.customer_id,
                payer.payment_method_id,
                data.amount_minor,
                data.currency,
                data.idempotency_key,
                metadata,
                account=account,
            )
        return ChargeOutcome(
            payment_status=TopUpPaymentStatus.SUCCEEDED,
            payment_reference=result.payment_intent_id,
            sent=sent,
            answer=result.model_dump(mode="json"),
        )

    @activity.defn(name=names.PAYMENT_REFUND_CARD)
    async def refund_card(self, data: RefundRequest) -> RefundOutcome:
        payment_intent_id = data.payment_reference
        account = await self._account(data.topup_id)
        async with external_call():
            if not payment_intent_id:
                payer, _metadata, account = await self._payer(data.topup_id, data.payer)
                # The charge's answer was lost: find it among the payer's PaymentIntents by the top-up id
                # they carry (never by replaying the create: Stripe forgets keys after 24 h).
                found = await self._gateway.find_charge(payer.customer_id, data.topup_id, account=account)
                if found is None:
                    return RefundOutcome(refund_reference="none:not-charged", answer={"charged": False})
                payment_intent_id = found.payment_intent_id
            refund = await self._gateway.refund(
                payment_intent_id, data.amount_minor, data.idempotency_key, account=account
            )
        return RefundOutcome(
            refund_reference=refund.refund_id,
            sent={"payment_intent": payment_intent_id, "amount": data.amount_minor},
            answer=refund.model_dump(mode="json"),
        )

    # --- wallet fundings (`wallet-funding/{org}/{id}`) ---------------------------------------------

    async def _org_account(self, org_id: str) -> str | None:
        """The organisation's own Stripe account (None: the platform's)."""
        async with self._sessionmaker() as session:
            org = await session.get(Organisation, org_id)
            return org.stripe_account_ref if org is not None else None

    async def _funding(self, session: AsyncSession, funding_id: str, org_id: str) -> WalletFunding:
        funding = await session.get(WalletFunding, funding_id)
        if funding is None or funding.org_id != org_id:
            raise ApplicationError(f"funding {funding_id} not found", type="funding.not_found", non_retryable=True)
        return funding

    @staticmethod
    def _funding_metadata(funding: WalletFunding) -> dict[str, str]:
        """How the funding's PaymentIntent is found again (refund after a lost answer) and attributed."""
        return {"wallet_funding_id": funding.id, "org_id": funding.org_id, "workflow_id": funding.workflow_id}

    @activity.defn(name=names.PAYMENT_RESOLVE_FUNDING_PAYER)
    async def resolve_funding_payer(self, data: FundingRef) -> CardPayer:
        """The saved card of the wallet's owner (an end user's wallet: theirs, else their company's)."""
        async with self._sessionmaker() as session:
            funding = await self._funding(session, data.funding_id, data.org_id)
            payer = await saved_card(session, funding.end_user_id, funding.company_id)
        if payer is None:
            raise no_saved_card()
        return payer

    @activity.defn(name=names.PAYMENT_CHARGE_FUNDING)
    async def charge_funding(self, data: FundingCharge) -> FundingMoneyOutcome:
        async with self._sessionmaker() as session:
            metadata = self._funding_metadata(await self._funding(session, data.funding_id, data.org_id))
        account = await self._org_account(data.org_id)
        async with external_call():
            result = await self._gateway.charge_off_session(
                data.payer.customer_id,
                data.payer.payment_method_id,
                data.amount_minor,
                data.currency,
                data.idempotency_key,
                metadata,
                account=account,
            )
        return FundingMoneyOutcome(
            reference=result.payment_intent_id,
            sent={"customer": data.payer.customer_id, "amount": data.amount_minor, "metadata": metadata},
            answer=result.model_dump(mode="json"),
        )

    @activity.defn(name=names.PAYMENT_REFUND_FUNDING)
    async def refund_funding(self, data: FundingRefund) -> FundingMoneyOutcome:
        payment_intent_id = data.payment_reference
        account = await self._org_account(data.org_id)
        async with external_call():
            if not payment_intent_id:
                # The charge's answer was lost: find it by the funding id it carries, never by replaying it.
                found = await self._gateway.find_charge(
                    data.payer.customer_id, data.funding_id, account=account, metadata_key="wallet_funding_id"
                )
                if found is None:
                    return FundingMoneyOutcome(reference="none:not-charged", answer={"charged": False})
                payment_intent_id = found.payment_intent_id
            refund = await self._gateway.refund(
                payment_intent_id, data.amount_minor, data.idempotency_key, account=account
            )
        return FundingMoneyOutcome(
            reference=refund.refund_id,
            sent={"payment_intent": payment_intent_id, "amount": data.amount_minor},
            answer=refund.model_dump(mode="json"),
        )
