"""Saved cards of a company or an end user: one service for the API routes and the portal page.

Saving a card: our API creates a SetupIntent on the owner's Stripe customer (created once, under a key
derived from the owner), the browser confirms it with Stripe.js, then our API checks with Stripe that the
SetupIntent succeeded for that very customer before recording the card. The first card saved becomes the
default; the default is the owner's `stripe_payment_method_id`, which the top-up charges.

Every Stripe call goes to the owner's organisation's Stripe account (`Organisation.stripe_account_ref`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import HTTPException
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import NotFound, ValidationFailed
from domain.models import Company, EndUser, Organisation, SavedPaymentMethod
from integrations.errors import NotFoundError, RejectedError, TransientError
from integrations.stripe_gateway import SetupIntentResult, StripeGateway


@dataclass
class CardOwner:
    """A company (end_user None) or an end user, with the organisation's Stripe account."""

    org_id: str
    company_id: str
    row: Company | EndUser
    account: str | None

    @property
    def end_user_id(self) -> str | None:
        return self.row.id if isinstance(self.row, EndUser) else None

    @property
    def kind(self) -> str:
        return "end_user" if isinstance(self.row, EndUser) else "company"


@contextmanager
def stripe_answers(field: str) -> Iterator[None]:
    """Stripe's refusals become a 422 naming `field`; Stripe unreachable becomes a 503."""
    try:
        yield
    except TransientError as exc:
        raise HTTPException(503, f"Stripe est momentanément indisponible ({exc.code}), réessayez") from exc
    except RejectedError as exc:
        raise ValidationFailed(field, f"refusé par Stripe : {exc.message}") from exc


async def owner_of(
    session: AsyncSession, *, company_id: str | None = None, end_user_id: str | None = None
) -> CardOwner:
    row: Company | EndUser | None
    if end_user_id is not None:
        row = await session.get(EndUser, end_user_id)
        if row is None:
            raise NotFound(None, "utilisateur final introuvable")
        company_id = row.company_id
    else:
        row = await session.get(Company, company_id)
        if row is None:
            raise NotFound(None, "entreprise introuvable")
    org = await session.get(Organisation, row.org_id)
    return CardOwner(
        org_id=row.org_id,
        company_id=str(company_id),
        row=row,
        account=org.stripe_account_ref if org is not None else None,
    )


async def ensure_customer(session: AsyncSession, gateway: StripeGateway, owner: CardOwner) -> str:
    """The owner's Stripe customer, created on first use. The creation key is the owner's id, so two
    concurrent first calls get one customer; the row is written only where it is still empty."""
    if owner.row.stripe_customer_id:
        return owner.row.stripe_customer_id
    email: str | None
    if isinstance(owner.row, EndUser):
        name, email = owner.row.full_name, owner.row.email
    else:
        name, email = owner.row.name, owner.row.billing_email
    metadata = {"org_id": owner.org_id, "company_id": owner.company_id}
    if owner.end_user_id:
        metadata["end_user_id"] = owner.end_user_id
    with stripe_answers("customer"):
        customer = await gateway.create_customer(
            name, email, metadata, f"simflow:customer:{owner.kind}:{owner.row.id}", account=owner.account
        )
    model = type(owner.row)
    await session.execute(
        update(model)
        .where(model.id == owner.row.id, model.stripe_customer_id.is_(None))
        .values(stripe_customer_id=customer.customer_id)
    )
    await session.refresh(owner.row, ["stripe_customer_id"])
    return str(owner.row.stripe_customer_id)


async def start_setup(session: AsyncSession, gateway: StripeGateway, owner: CardOwner) -> SetupIntentResult:
    customer_id = await ensure_customer(session, gateway, owner)
    metadata = {"org_id": owner.org_id, "company_id": owner.company_id, "end_user_id": owner.end_user_id or ""}
    with stripe_answers("setup_intent"):
        return await gateway.create_setup_intent(customer_id, metadata, account=owner.account)


def owned_query(owner: CardOwner):  # type: ignore[no-untyped-def]  # a Select of SavedPaymentMethod
    query = select(SavedPaymentMethod).where(SavedPaymentMethod.company_id == owner.company_id)
    if owner.end_user_id:
        return query.where(SavedPaymentMethod.end_user_id == owner.end_user_id)
    return query.where(SavedPaymentMethod.end_user_id.is_(None))


async def list_cards(session: AsyncSession, owner: CardOwner) -> list[SavedPaymentMethod]:
    query = owned_query(owner).order_by(SavedPaymentMethod.created_at, SavedPaymentMethod.id)
    return list((await session.execute(query)).scalars())


async def record_setup(
    session: AsyncSession, gateway: StripeGateway, owner: CardOwner, setup_intent_id: str
) -> SavedPaymentMethod:
    """Records the card of a SetupIntent the browser confirmed, after Stripe says it succeeded for this
    owner's customer. Recording the same SetupIntent again answers the same card."""
    customer_id = owner.row.stripe_customer_id
    if not customer_id:
        raise ValidationFailed("setup_intent_id", "aucune demande d'enregistrement de carte pour ce client")
    with stripe_answers("setup_intent_id"):
        intent = await gateway.retrieve_setup_intent(setup_intent_id, account=owner.account)
    if intent.customer_id != customer_id:
        raise ValidationFailed("setup_intent_id", "cette demande d'enregistrement n'appartient pas à ce client")
    if intent.status != "succeeded" or not intent.payment_method_id:
        raise ValidationFailed("setup_intent_id", f"carte non confirmée (statut Stripe : {intent.status})")
    payment_method_id = intent.payment_method_id
    existing = await _by_stripe_id(session, payment_method_id)
    if existing is not None:
        if (existing.company_id, existing.end_user_id) != (owner.company_id, owner.end_user_id):
            raise ValidationFailed("setup_intent_id", "cette carte est enregistrée pour un autre client")
        return existing
    with stripe_answers("setup_intent_id"):
        card = await gateway.retrieve_card(payment_method_id, account=owner.account)
        if card.customer_id and card.customer_id != customer_id:
            raise ValidationFailed("setup_intent_id", "cette carte appartient à un autre client Stripe")
        if not card.customer_id:
            # Stripe attaches the card when the SetupIntent succeeds; localstripe does not: attach it here.
            card = await gateway.attach_card(
                customer_id, payment_method_id, f"simflow:setup:{setup_intent_id}", account=owner.account
            )
    row = SavedPaymentMethod(
        org_id=owner.org_id,
        company_id=owner.company_id,
        end_user_id=owner.end_user_id,
        stripe_customer_id=customer_id,
        stripe_payment_method_id=payment_method_id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:  # recorded at the same time by another request
        again = await _by_stripe_id(session, payment_method_id)
        if again is None:
            raise
        return again
    if not owner.row.stripe_payment_method_id or not await _is_saved(
        session, owner, owner.row.stripe_payment_method_id
    ):
        owner.row.stripe_payment_method_id = payment_method_id  # the first card saved is the default
    await session.flush()
    return row


async def card_of(session: AsyncSession, owner: CardOwner, payment_method_id: str) -> SavedPaymentMethod:
    row = await session.get(SavedPaymentMethod, payment_method_id)
    if row is None or (row.company_id, row.end_user_id) != (owner.company_id, owner.end_user_id):
        raise NotFound(None, "moyen de paiement introuvable")
    return row


async def make_default(session: AsyncSession, owner: CardOwner, card: SavedPaymentMethod) -> None:
    owner.row.stripe_customer_id = card.stripe_customer_id
    owner.row.stripe_payment_method_id = card.stripe_payment_method_id
    await session.flush()


async def remove(session: AsyncSession, gateway: StripeGateway, owner: CardOwner, card: SavedPaymentMethod) -> None:
    """Detaches the card in Stripe (it can no longer be charged), then forgets it. When it was the default,
    the most recently saved remaining card becomes the default."""
    try:
        with stripe_answers("payment_method_id"):
            await gateway.detach_card(card.stripe_payment_method_id, account=owner.account)
    except ValidationFailed as refused:
        if not isinstance(refused.__cause__, NotFoundError):
            raise
        # already gone from Stripe: nothing left to charge
    was_default = owner.row.stripe_payment_method_id == card.stripe_payment_method_id
    await session.delete(card)
    await session.flush()
    if was_default:
        remaining = await list_cards(session, owner)
        owner.row.stripe_payment_method_id = remaining[-1].stripe_payment_method_id if remaining else None
        await session.flush()


async def _by_stripe_id(session: AsyncSession, payment_method_id: str) -> SavedPaymentMethod | None:
    query = select(SavedPaymentMethod).where(SavedPaymentMethod.stripe_payment_method_id == payment_method_id)
    return (await session.execute(query)).scalar_one_or_none()


async def _is_saved(session: AsyncSession, owner: CardOwner, payment_method_id: str) -> bool:
    query = owned_query(owner).where(SavedPaymentMethod.stripe_payment_method_id == payment_method_id)
    return (await session.execute(query)).first() is not None
