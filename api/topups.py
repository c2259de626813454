"""A top-up from the API or a portal: `submit_topup` (domain) writes the intent in the request's session, then
`starters.topups.start_topup` starts the workflow and waits for the payment outcome while provisioning
goes on. The JSON route and the portals' forms all come through `recharge_line`."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.deps import AppState
from domain.authz import Principal
from domain.contracts import TopUpReceipt
from domain.enums import PaymentMethod, TopUpSource
from domain.models import TopUp
from domain.services.topups import TopUpRequest, submit_topup
from infra.temporal import workflow_ui_url
from starters.topups import start_topup


class RechargeOut(BaseModel):
    recharge_id: str
    workflow_id: str
    status: str
    payment_status: str
    amount_minor: int
    currency: str
    workflow_url: str
    failure_reason: str | None = None


def recharge_out(state: AppState, topup: TopUp, receipt: TopUpReceipt | None = None) -> RechargeOut:
    return RechargeOut(
        recharge_id=topup.id,
        workflow_id=topup.workflow_id,
        status=receipt.status if receipt else topup.status,
        payment_status=receipt.payment_status if receipt else topup.payment_status,
        amount_minor=topup.amount_minor,
        currency=topup.currency,
        workflow_url=workflow_ui_url(state.settings, topup.workflow_id),
        failure_reason=receipt.failure_reason if receipt else topup.failure_reason,
    )


async def recharge_line(
    session: AsyncSession,
    state: AppState,
    principal: Principal,
    line_id: str,
    data_gb: int,
    payment_method: PaymentMethod,
    key: str,
    source: TopUpSource,
) -> tuple[RechargeOut, bool]:
    """Returns the recharge and whether this request created it. `session` is the request's own: the intent
    is committed in it before the wait on Temporal, which holds no connection."""
    submitted = await submit_topup(
        session,
        TopUpRequest(
            line_id=line_id,
            data_gb=data_gb,
            payment_method=payment_method,
            idempotency_key=key,
            source=source,
            requested_by=principal.label,
            end_user_id=principal.end_user_id,
        ),
        principal=principal,
        sla_s=state.settings.snaic_callback_sla_s,
        charge_window_s=state.settings.topup_charge_window_s,
    )
    topup = submitted.topup
    if submitted.settled:
        return recharge_out(state, topup), False
    try:
        receipt = await start_topup(
            await state.temporal(),
            state.settings,
            submitted.workflow_input,
            msisdn=submitted.msisdn,
            iccid=submitted.iccid,
        )
    except WorkflowAlreadyStartedError:
        # The top-up already finished: its outcome is in our records.
        await session.refresh(topup)
        await session.commit()
        return recharge_out(state, topup), submitted.created
    except TimeoutError:
        return recharge_out(state, topup), submitted.created  # started; the payment outcome is not known yet
    return recharge_out(state, topup, receipt), submitted.created
