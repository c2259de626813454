"""Saved cards of a company and of an end user (issue 11 §1): SetupIntent, record, list, default, remove.

The same five routes under `/api/v1/companies/{company_id}/payment-methods` and
`/api/v1/end-users/{end_user_id}/payment-methods`; end users manage their own cards (self-service rule in
api/guard.py), staff need the « Paiement » area. The portal's card page calls these very routes.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import Field
from starlette.convertors import register_url_convertor

from api import cards
from api.deps import PrincipalDep, SessionDep, StateDep
from api.guard import audit_note
from api.schemas import Request, segment_except
from api.schemas import Response as ResponseModel
from domain.authz import Action, TenantChain, authorize, require_staff
from domain.errors import NotFound
from domain.models import Organisation, SavedPaymentMethod

router = APIRouter(tags=["Moyens de paiement"])

# `…/payment-methods/setup-intent` is no `…/payment-methods/{payment_method_id}` (405 with `Allow: POST`).
register_url_convertor("payment_method_id", segment_except("setup-intent"))

COMPANY = "/api/v1/companies/{company_id}/payment-methods"
END_USER = "/api/v1/end-users/{end_user_id}/payment-methods"


class SetupIntentOut(ResponseModel):
    setup_intent_id: str
    client_secret: str = Field(description="À passer à `stripe.confirmCardSetup` dans le navigateur")
    publishable_key: str
    stripe_js_url: str = Field(description="Stripe.js à charger (localstripe en développement)")
    stripe_account: str | None = Field(description="Compte Stripe connecté de l'organisation, s'il y en a un")


class RecordCard(Request):
    setup_intent_id: str = Field(
        min_length=6, max_length=100, pattern=r"^seti_[A-Za-z0-9]+$", description="SetupIntent confirmé par Stripe.js"
    )


class PaymentMethodOut(ResponseModel):
    id: str
    company_id: str
    end_user_id: str | None
    stripe_payment_method_id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool
    created_at: datetime


class PaymentMethodList(ResponseModel):
    items: list[PaymentMethodOut]
    default_payment_method_id: str | None = Field(description="Id (chez nous) de la carte débitée par défaut")


def _out(card: SavedPaymentMethod, owner: cards.CardOwner) -> PaymentMethodOut:
    return PaymentMethodOut(
        id=card.id,
        company_id=card.company_id,
        end_user_id=card.end_user_id,
        stripe_payment_method_id=card.stripe_payment_method_id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        is_default=card.stripe_payment_method_id == owner.row.stripe_payment_method_id,
        created_at=card.created_at,
    )


async def _owner(
    session: SessionDep, principal: PrincipalDep, action: Action, company_id: str | None, end_user_id: str | None
) -> cards.CardOwner:
    owner = await cards.owner_of(session, company_id=company_id, end_user_id=end_user_id)
    authorize(principal, action, TenantChain(owner.org_id, owner.company_id, owner.end_user_id), "moyen de paiement")
    return owner


async def _setup(state: StateDep, session: SessionDep, owner: cards.CardOwner) -> SetupIntentOut:
    intent = await cards.start_setup(session, state.stripe(), owner)
    audit_note(action="payment_method.setup", target=intent.setup_intent_id)
    return SetupIntentOut(
        setup_intent_id=intent.setup_intent_id,
        client_secret=str(intent.client_secret),
        publishable_key=state.settings.stripe_publishable_key,
        stripe_js_url=state.settings.stripe_js_url,
        stripe_account=owner.account,
    )


async def _record(state: StateDep, session: SessionDep, owner: cards.CardOwner, body: RecordCard) -> PaymentMethodOut:
    card = await cards.record_setup(session, state.stripe(), owner, body.setup_intent_id)
    audit_note(action="payment_method.saved", target=card.id)
    return _out(card, owner)


async def _list(session: SessionDep, owner: cards.CardOwner) -> PaymentMethodList:
    items = [_out(card, owner) for card in await cards.list_cards(session, owner)]
    default = next((item.id for item in items if item.is_default), None)
    return PaymentMethodList(items=items, default_payment_method_id=default)


async def _default(session: SessionDep, owner: cards.CardOwner, payment_method_id: str) -> PaymentMethodOut:
    card = await cards.card_of(session, owner, payment_method_id)
    await cards.make_default(session, owner, card)
    audit_note(action="payment_method.default", target=card.id)
    return _out(card, owner)


async def _remove(state: StateDep, session: SessionDep, owner: cards.CardOwner, payment_method_id: str) -> Response:
    card = await cards.card_of(session, owner, payment_method_id)
    await cards.remove(session, state.stripe(), owner, card)
    audit_note(action="payment_method.removed", target=payment_method_id)
    return Response(status_code=204)


# --- company -------------------------------------------------------------------------------------


@router.post(f"{COMPANY}/setup-intent", status_code=201, response_model=SetupIntentOut)
async def company_setup_intent(
    company_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> SetupIntentOut:
    """Starts saving a card: a SetupIntent on the company's Stripe customer (created if needed)."""
    return await _setup(state, session, await _owner(session, principal, Action.WRITE, company_id, None))


@router.post(COMPANY, status_code=201, response_model=PaymentMethodOut)
async def company_record(
    company_id: str, body: RecordCard, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> PaymentMethodOut:
    """Records the card of a SetupIntent confirmed in the browser (checked with Stripe)."""
    return await _record(state, session, await _owner(session, principal, Action.WRITE, company_id, None), body)


@router.get(COMPANY, response_model=PaymentMethodList)
async def company_list(company_id: str, principal: PrincipalDep, session: SessionDep) -> PaymentMethodList:
    """The company's saved cards, oldest first, with the default one."""
    return await _list(session, await _owner(session, principal, Action.READ, company_id, None))


@router.post(f"{COMPANY}/{{payment_method_id:payment_method_id}}/default", response_model=PaymentMethodOut)
async def company_make_default(
    company_id: str, payment_method_id: str, principal: PrincipalDep, session: SessionDep
) -> PaymentMethodOut:
    """Makes this card the one card recharges charge."""
    return await _default(session, await _owner(session, principal, Action.WRITE, company_id, None), payment_method_id)


@router.delete(f"{COMPANY}/{{payment_method_id:payment_method_id}}", status_code=204, response_class=Response)
async def company_remove(
    company_id: str, payment_method_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """Removes the card (detached in Stripe)."""
    owner = await _owner(session, principal, Action.WRITE, company_id, None)
    return await _remove(state, session, owner, payment_method_id)


# --- end user ------------------------------------------------------------------------------------


@router.post(f"{END_USER}/setup-intent", status_code=201, response_model=SetupIntentOut)
async def end_user_setup_intent(
    end_user_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> SetupIntentOut:
    """Starts saving a card: a SetupIntent on the end user's Stripe customer (created if needed)."""
    return await _setup(state, session, await _owner(session, principal, Action.WRITE, None, end_user_id))


@router.post(END_USER, status_code=201, response_model=PaymentMethodOut)
async def end_user_record(
    end_user_id: str, body: RecordCard, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> PaymentMethodOut:
    """Records the card of a SetupIntent confirmed in the browser (checked with Stripe)."""
    return await _record(state, session, await _owner(session, principal, Action.WRITE, None, end_user_id), body)


@router.get(END_USER, response_model=PaymentMethodList)
async def end_user_list(end_user_id: str, principal: PrincipalDep, session: SessionDep) -> PaymentMethodList:
    """The end user's saved cards, oldest first, with the default one."""
    return await _list(session, await _owner(session, principal, Action.READ, None, end_user_id))


@router.post(f"{END_USER}/{{payment_method_id:payment_method_id}}/default", response_model=PaymentMethodOut)
async def end_user_make_default(
    end_user_id: str, payment_method_id: str, principal: PrincipalDep, session: SessionDep
) -> PaymentMethodOut:
    """Makes this card the one the end user's recharges charge."""
    owner = await _owner(session, principal, Action.WRITE, None, end_user_id)
    return await _default(session, owner, payment_method_id)


@router.delete(f"{END_USER}/{{payment_method_id:payment_method_id}}", status_code=204, response_class=Response)
async def end_user_remove(
    end_user_id: str, payment_method_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """Removes the card (detached in Stripe)."""
    owner = await _owner(session, principal, Action.WRITE, None, end_user_id)
    return await _remove(state, session, owner, payment_method_id)


# --- the organisation's Stripe account -----------------------------------------------------------


class StripeAccountIn(Request):
    stripe_account_ref: str | None = Field(
        min_length=6,
        max_length=100,
        pattern=r"^acct_[A-Za-z0-9]+$",
        description="Compte Stripe connecté (acct_…) ; null : le compte de la plateforme",
    )


class StripeAccountOut(ResponseModel):
    org_id: str
    stripe_account_ref: str | None


@router.put("/api/v1/organisations/{org_id}/stripe-account", response_model=StripeAccountOut)
async def set_stripe_account(
    org_id: str, body: StripeAccountIn, principal: PrincipalDep, session: SessionDep
) -> StripeAccountOut:
    """The Stripe account of the organisation's customers, cards, charges and refunds from now on. Cards saved
    in another account stay there: save them again after a change."""
    require_staff(principal)
    org = await session.get(Organisation, org_id)
    if org is None:
        raise NotFound(None, "organisation introuvable")
    authorize(principal, Action.WRITE, TenantChain(org_id=org.id), "organisation")
    org.stripe_account_ref = body.stripe_account_ref
    await session.flush()
    audit_note(action="organisation.stripe_account", target=org.id, stripe_account_ref=body.stripe_account_ref)
    return StripeAccountOut(org_id=org.id, stripe_account_ref=org.stripe_account_ref)
