"""Stripe webhooks: signature verified on the raw body, deduplicated by event id, routed to the top-up.

Stripe per organisation: an event from a connected account carries `account` (`acct_…`); one from the
platform's own account carries none. An event is routed only to a top-up of the organisation whose
`stripe_account_ref` is that account, so one organisation's Stripe events never act on another's money.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import StateDep
from api.problems import problem
from domain.contracts import STRIPE_EVENT_SIGNAL, StripeEventNotice
from domain.errors import ErrorCode
from domain.models import Organisation, StripeEvent, TopUp
from integrations.stripe_gateway import StripeGateway, WebhookSignatureError

router = APIRouter(prefix="/api/v1/stripe", tags=["Paiements"])

ROUTED_TYPES = ("payment_intent.", "charge.refunded", "charge.dispute.created")


def _payment_intent_of(obj: dict[str, Any]) -> str | None:
    if obj.get("object") == "payment_intent":
        return str(obj.get("id"))
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        return str(intent.get("id"))
    return str(intent) if intent else None


@router.post("/webhook")
async def stripe_webhook(request: Request, state: StateDep) -> JSONResponse:
    payload = await request.body()
    secret = state.settings.stripe_webhook_secret.get_secret_value()
    try:
        StripeGateway.verify_webhook(payload, request.headers.get("Stripe-Signature"), secret)
    except WebhookSignatureError as err:
        return problem(400, f"signature Stripe invalide : {err.message}", code=ErrorCode.STRIPE_INVALID_SIGNATURE)
    event = json.loads(payload)
    event_id, event_type = str(event.get("id", "")), str(event.get("type", ""))
    if not event_id or not event_type:
        return problem(400, "événement Stripe sans id ou type", code=ErrorCode.STRIPE_INVALID_EVENT)
    obj: dict[str, Any] = (event.get("data") or {}).get("object") or {}
    payment_intent_id = _payment_intent_of(obj)
    account = str(event["account"]) if event.get("account") else None
    async with state.sessionmaker() as session:
        topup = None
        if payment_intent_id:
            topup = (
                await session.execute(select(TopUp).where(TopUp.payment_reference == payment_intent_id))
            ).scalar_one_or_none()
        if topup is not None:
            org = await session.get(Organisation, topup.org_id)
            if (org.stripe_account_ref if org is not None else None) != account:
                topup = None  # another Stripe account's PaymentIntent: not this top-up's
        session.add(
            StripeEvent(
                id=event_id, type=event_type, payment_intent_id=payment_intent_id, topup_id=topup.id if topup else None
            )
        )
        try:
            await session.commit()
        except IntegrityError:
            return JSONResponse({"received": True, "duplicate": True})
    if topup is None or not event_type.startswith(ROUTED_TYPES):
        return JSONResponse({"received": True, "routed": False})
    notice = StripeEventNotice(
        event_id=event_id, type=event_type, payment_intent_id=payment_intent_id, status=obj.get("status")
    )
    try:
        await (await state.temporal()).get_workflow_handle(topup.workflow_id).signal(STRIPE_EVENT_SIGNAL, notice)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return JSONResponse({"received": True, "routed": False})
    async with state.sessionmaker.begin() as session:
        stored = await session.get(StripeEvent, event_id)
        if stored is not None:
            stored.routed = True
    return JSONResponse({"received": True, "routed": True})
