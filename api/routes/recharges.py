"""Recharge DATA: `POST /api/v1/lines/{line_id}/recharges` (Idempotency-Key), `GET /api/v1/recharges/{id}`,
and the staff resolution of a top-up that needs attention."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.authz import Action, Principal, PrincipalKind, TenantChain, authorize
from api.deps import PrincipalDep, SessionDep, StateDep
from api.schemas import Request
from api.workflows import submit_topup
from domain.contracts import TopUpReceipt, TopUpResolution
from domain.enums import TOPUP_TERMINAL_STATUSES, PaymentMethod
from domain.errors import IllegalTransition, NotFound, PermissionDenied
from domain.models import CatalogueArticle, Line, SimCard, TopUp, UpdateRecord
from domain.services.topups import TopUpRequest, create_or_get_topup, topup_input
from infra.temporal import workflow_ui_url
from workflows.topup import TopUpWorkflow

router = APIRouter(prefix="/api/v1", tags=["Recharges"])


class RechargeCreate(Request):
    data_gb: int = Field(ge=1, le=100, description="Valeur de la recharge en Go (option « Recharge DATA 1Go » × n)")
    payment_method: Literal["card", "wallet", "account"]


class RechargeOut(BaseModel):
    recharge_id: str
    workflow_id: str
    status: str
    payment_status: str
    amount_minor: int
    currency: str
    workflow_url: str
    failure_reason: str | None = None


class UpdateRecordOut(BaseModel):
    at: datetime
    system: str
    operation: str
    status: str
    sent: dict[str, object]
    answer: dict[str, object]
    ids_obtained: dict[str, object]
    error: str | None


class RechargeDetail(RechargeOut):
    line_id: str
    deployment_id: str | None
    quantity: int
    data_bytes: int
    payment_method: str
    payment_reference: str | None
    refund_reference: str | None
    resolution_note: str | None
    created_at: datetime
    updates: list[UpdateRecordOut]


class ResolutionCreate(Request):
    action: Literal["retry_refund", "refunded_manually"]
    note: str = Field(min_length=3, max_length=1000)


def _out(state: StateDep, topup: TopUp, receipt: TopUpReceipt | None = None) -> RechargeOut:
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
    state: StateDep,
    principal: Principal,
    line_id: str,
    data_gb: int,
    payment_method: PaymentMethod,
    key: str,
    source: str,
) -> tuple[RechargeOut, bool]:
    """Shared by the API and the portal: writes the intent, then starts the workflow (update-with-start)
    and waits for the payment outcome while provisioning goes on."""
    async with state.sessionmaker() as session:
        line = await session.get(Line, line_id)
        if line is None:
            raise NotFound(None, "ligne introuvable")
        authorize(principal, Action.WRITE, TenantChain(line.org_id, line.company_id, line.end_user_id), "ligne")
    request = TopUpRequest(
        line_id=line_id,
        data_gb=data_gb,
        payment_method=payment_method,
        idempotency_key=key,
        source=source,
        requested_by=principal.label,
        end_user_id=principal.end_user_id,
    )
    topup, line, created = await create_or_get_topup(state.sessionmaker, request)
    if not created and topup.status in TOPUP_TERMINAL_STATUSES:
        return _out(state, topup), created  # settled: the same key answers the recorded outcome
    async with state.sessionmaker() as session:
        article = await session.get(CatalogueArticle, topup.article_id)
        sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
    assert article is not None
    data = topup_input(
        topup,
        line,
        article,
        sim.iccid if sim else None,
        state.settings.snaic_callback_sla_s,
        charge_window_s=state.settings.topup_charge_window_s,
    )
    try:
        receipt = await submit_topup(
            await state.temporal(), state.settings, data, msisdn=line.msisdn, iccid=sim.iccid if sim else None
        )
    except WorkflowAlreadyStartedError:
        # The top-up already finished: its outcome is in our records.
        async with state.sessionmaker() as session:
            finished = await session.get(TopUp, topup.id)
        assert finished is not None
        return _out(state, finished), created
    except TimeoutError:
        return _out(state, topup), created  # started; the payment outcome is not known yet
    return _out(state, topup, receipt), created


@router.post("/lines/{line_id}/recharges", response_model=RechargeOut, status_code=201)
async def create_recharge(
    line_id: str,
    body: RechargeCreate,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    response: Response,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)],
) -> RechargeOut:
    # The request's session only served authentication: release its connection before waiting on Temporal.
    await session.commit()
    out, created = await recharge_line(
        state, principal, line_id, body.data_gb, PaymentMethod(body.payment_method), idempotency_key, "api"
    )
    response.status_code = 201 if created else 200
    return out


async def _load_topup(session: SessionDep, principal: Principal, recharge_id: str, action: Action) -> TopUp:
    topup = await session.get(TopUp, recharge_id)
    if topup is None:
        raise NotFound(None, "recharge introuvable")
    authorize(principal, action, TenantChain(topup.org_id, topup.company_id, topup.end_user_id), "recharge")
    return topup


@router.get("/recharges/{recharge_id}", response_model=RechargeDetail)
async def get_recharge(
    recharge_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> RechargeDetail:
    topup = await _load_topup(session, principal, recharge_id, Action.READ)
    records = await session.execute(
        select(UpdateRecord).where(UpdateRecord.workflow_id == topup.workflow_id).order_by(UpdateRecord.id)
    )
    return RechargeDetail(
        **_out(state, topup).model_dump(),
        line_id=topup.line_id,
        deployment_id=topup.deployment_id,
        quantity=topup.quantity,
        data_bytes=topup.data_bytes,
        payment_method=topup.payment_method.value,
        payment_reference=topup.payment_reference,
        refund_reference=topup.refund_reference,
        resolution_note=topup.resolution_note,
        created_at=topup.created_at,
        updates=[
            UpdateRecordOut(
                at=r.at,
                system=r.system.value,
                operation=r.operation,
                status=r.status.value,
                sent=r.sent,
                answer=r.answer,
                ids_obtained=r.ids_obtained,
                error=r.error,
            )
            for r in records.scalars()
        ],
    )


@router.post("/recharges/{recharge_id}/resolution", response_model=RechargeOut)
async def resolve_recharge(
    recharge_id: str, body: ResolutionCreate, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> RechargeOut:
    """Staff decision on a top-up whose refund failed: retry the refund, or confirm a manual refund."""
    topup = await _load_topup(session, principal, recharge_id, Action.WRITE)
    if principal.kind is not PrincipalKind.STAFF or principal.company_id is not None:
        raise PermissionDenied(None, "réservé au personnel de l'organisation")
    if topup.status != "needs_attention":
        raise IllegalTransition("status", f"la recharge est « {topup.status} », pas « needs_attention »")
    handle = (await state.temporal()).get_workflow_handle_for(TopUpWorkflow.run, topup.workflow_id)
    try:
        receipt = await handle.execute_update(
            TopUpWorkflow.resolve, TopUpResolution(action=body.action, note=body.note, actor=principal.label)
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise IllegalTransition("status", f"résolution refusée : {err}") from err
    return _out(state, topup, receipt)
