"""The subscription of a line: `GET /api/v1/lines/{id}/subscription`, `PUT /api/v1/lines/{id}/auto-renew`
and `POST /api/v1/lines/{id}/renewals` (renew now, Idempotency-Key). See `api.subscriptions`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from api.deps import PrincipalDep, SessionDep, StateDep
from api.subscriptions import (
    AutoRenewUpdate,
    RenewalOut,
    SubscriptionOut,
    change_auto_renew,
    read_subscription,
    renew_line,
)

router = APIRouter(prefix="/api/v1", tags=["Abonnements"])


@router.get("/lines/{line_id}/subscription", response_model=SubscriptionOut)
async def get_subscription(
    line_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> SubscriptionOut:
    """The line's subscription: plan, period, next renewal, auto-renew mode, status, dunning stage, reminders."""
    return await read_subscription(session, state, principal, line_id)


@router.put("/lines/{line_id}/auto-renew", response_model=SubscriptionOut)
async def put_auto_renew(
    line_id: str, body: AutoRenewUpdate, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> SubscriptionOut:
    """The subscription workflow's `set_auto_renew` Update (starts the workflow if it is not running)."""
    return await change_auto_renew(session, state, principal, line_id, body.mode)


@router.post("/lines/{line_id}/renewals", response_model=RenewalOut, status_code=201)
async def create_renewal(
    line_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    response: Response,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)],
) -> RenewalOut:
    """Renews now (the `renew_now` Update): pays the next period at once. The same Idempotency-Key again
    answers the same renewal (200) and charges nothing more."""
    out, created = await renew_line(session, state, principal, line_id, idempotency_key)
    response.status_code = 201 if created else 200
    return out
