"""Recharge DATA: `POST /api/v1/lines/{line_id}/recharges` (Idempotency-Key), `GET /api/v1/recharges/{id}`,
and the staff resolution of a top-up that needs attention."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.deps import AppState, PrincipalDep, SessionDep, StateDep
from api.schemas import Request, TopUpPaymentMethod
from api.topups import RechargeOut, recharge_line, recharge_out
from domain.authz import Action, Principal, PrincipalKind, TenantChain, authorize
from domain.contracts import TopUpResolution
from domain.enums import TopUpSource, TopUpStatus
from domain.errors import IllegalTransition, NotFound, PermissionDenied
from domain.models import TopUp, UpdateRecord
from workflows.topup import TopUpWorkflow

router = APIRouter(prefix="/api/v1", tags=["Recharges"])


class RechargeCreate(Request):
    data_gb: int = Field(ge=1, le=100, description="Valeur de la recharge en Go (option « Recharge DATA 1Go » × n)")
    payment_method: TopUpPaymentMethod


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
    out, created = await recharge_line(
        session, state, principal, line_id, body.data_gb, body.payment_method, idempotency_key, TopUpSource.API
    )
    response.status_code = 201 if created else 200
    return out


async def _load_topup(session: AsyncSession, principal: Principal, recharge_id: str, action: Action) -> TopUp:
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
        **recharge_out(state, topup).model_dump(),
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
    return await resolve_topup(session, state, principal, recharge_id, body)


async def resolve_topup(
    session: AsyncSession, state: AppState, principal: Principal, recharge_id: str, body: ResolutionCreate
) -> RechargeOut:
    """Shared by the API and the portal's needs-attention queue: the top-up workflow's `resolve` Update."""
    topup = await _load_topup(session, principal, recharge_id, Action.WRITE)
    if principal.kind is not PrincipalKind.STAFF or principal.company_id is not None:
        raise PermissionDenied(None, "réservé au personnel de l'organisation")
    if topup.status != TopUpStatus.NEEDS_ATTENTION:
        raise IllegalTransition("status", f"la recharge est « {topup.status} », pas « needs_attention »")
    handle = (await state.temporal()).get_workflow_handle_for(TopUpWorkflow.run, topup.workflow_id)
    try:
        receipt = await handle.execute_update(
            TopUpWorkflow.resolve, TopUpResolution(action=body.action, note=body.note, actor=principal.label)
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise IllegalTransition("status", f"résolution refusée : {err}") from err
    return recharge_out(state, topup, receipt)
