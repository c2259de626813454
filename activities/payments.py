"""Card payments of top-ups through Stripe: off-session charge on the saved card, and its refund.

Keys come from the workflow (`{workflow_id}:charge`, `{workflow_id}:refund`), so a retried or replayed
activity never charges or refunds twice. The payer (customer and card) is resolved once by the workflow,
before the first charge attempt, and sent with every attempt: a card saved in between changes nothing.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._errors import external_call
from domain.contracts import CardPayer, ChargeOutcome, ChargeRequest, RefundOutcome, RefundRequest, ResolvePayer
from domain.models import Company, EndUser, TopUp
from integrations.stripe_gateway import StripeGateway
from workflows import activity_names as names


class PaymentActivities:
    def __init__(self, gateway: StripeGateway, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._gateway = gateway
        self._sessionmaker = sessionmaker

    async def _topup(self, session: AsyncSession, topup_id: str) -> TopUp:
        topup = await session.get(TopUp, topup_id)
        if topup is None:
            raise ApplicationError(f"top-up {topup_id} not found", type="topup.not_found", non_retryable=True)
        return topup

    @staticmethod
    def _metadata(topup: TopUp) -> dict[str, str]:
        """What every PaymentIntent of the top-up carries: how it is found again, and attributed."""
        return {"topup_id": topup.id, "org_id": topup.org_id, "workflow_id": topup.workflow_id}

    async def _payer(self, topup_id: str, fixed: CardPayer | None = None) -> tuple[CardPayer, dict[str, str]]:
        """The payer fixed by the workflow, else the saved card that pays now (the end user's if they have
        one, else the company's); and the top-up's PaymentIntent metadata."""
        async with self._sessionmaker() as session:
            topup = await self._topup(session, topup_id)
            metadata = self._metadata(topup)
            if fixed is not None:
                return fixed, metadata
            candidates: list[EndUser | Company | None] = []
            if topup.end_user_id:
                candidates.append(await session.get(EndUser, topup.end_user_id))
            candidates.append(await session.get(Company, topup.company_id))
            for payer in candidates:
                if payer is not None and payer.stripe_customer_id and payer.stripe_payment_method_id:
                    return CardPayer(
                        customer_id=payer.stripe_customer_id, payment_method_id=payer.stripe_payment_method_id
                    ), metadata
        raise ApplicationError(
            "aucune carte enregistrée pour ce client", type="payment.no_saved_card", non_retryable=True
        )

    @activity.defn(name=names.PAYMENT_RESOLVE_PAYER)
    async def resolve_payer(self, data: ResolvePayer) -> CardPayer:
        payer, _metadata = await self._payer(data.topup_id)
        return payer

    @activity.defn(name=names.PAYMENT_CHARGE_CARD)
    async def charge_card(self, data: ChargeRequest) -> ChargeOutcome:
        payer, metadata = await self._payer(data.topup_id, data.payer)
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
            )
        return ChargeOutcome(
            payment_status="succeeded",
            payment_reference=result.payment_intent_id,
            sent=sent,
            answer=result.model_dump(mode="json"),
        )

    @activity.defn(name=names.PAYMENT_REFUND_CARD)
    async def refund_card(self, data: RefundRequest) -> RefundOutcome:
        payment_intent_id = data.payment_reference
        async with external_call():
            if not payment_intent_id:
                # The charge's answer was lost: find it among the payer's PaymentIntents by the top-up id
                # they carry (never by replaying the create: Stripe forgets keys after 24 h).
                payer, _metadata = await self._payer(data.topup_id, data.payer)
                found = await self._gateway.find_charge(payer.customer_id, data.topup_id)
                if found is None:
                    return RefundOutcome(refund_reference="none:not-charged", answer={"charged": False})
                payment_intent_id = found.payment_intent_id
            refund = await self._gateway.refund(payment_intent_id, data.amount_minor, data.idempotency_key)
        return RefundOutcome(
            refund_reference=refund.refund_id,
            sent={"payment_intent": payment_intent_id, "amount": data.amount_minor},
            answer=refund.model_dump(mode="json"),
        )
