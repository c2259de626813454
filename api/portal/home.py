"""Portal home ("Accueil"): the caller's dashboard — lines by status, today's recharges and their refund
rate, activations in progress — and the needs-attention queue: every process waiting for a person, with
its reason, its age, its workflow in the Temporal UI and the action that resolves it.

Where each process records that it waits for a person:
- a top-up whose compensation (refund…) failed for good: the `top_ups` row is `needs_attention`; the
  `resolve` Update of `TopUpWorkflow` settles it (retry the refund, or confirm a manual refund);
- a termination whose step failed for good (a SNAIC SLA exceeded among them): the running
  `DeprovisioningWorkflow` publishes BusinessStatus `needs_attention`; its `retry` Update tries again;
- an activation or a line operation whose compensation failed for good: the running workflow publishes
  BusinessStatus `needs_attention` and waits; its `resolve_compensation` Update retries the failed
  compensations or records that they were undone by hand. Runs started before that wait existed ended
  `needs_attention` at once: no message can reach them, the queue shows them with their Temporal history;
- a renewal whose refund failed for good (charged, not granted): the running `SubscriptionWorkflow`
  publishes BusinessStatus `needs_attention` and waits; the same `resolve_compensation` Update retries the
  refund or records that it was made by hand (from the line, or the pool, whose subscription it is).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import pydantic
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from api.deps import AppState, SessionDep, StateDep
from api.portal.routes import page
from api.portal.security import CsrfChecked, PortalPrincipalDep, PortalRoute
from api.portal.templating import DISPLAY_TZ
from api.routes import wallets as wallets_api
from api.routes.lines import resolve_line_compensation, retry_termination_step
from api.routes.pools import resolve_pool_compensation
from api.routes.recharges import ResolutionCreate, resolve_topup
from api.routes.wallets import FundingResolutionCreate
from domain.authz import Principal
from domain.enums import BusinessStatus, FundingStatus, LineStatus, TopUpStatus
from domain.errors import DomainError
from domain.lifecycle_contracts import AttentionState, ResolveCompensation
from domain.models import Line, SimCard, TopUp, WalletFunding
from domain.pools import pool_owner_id
from domain.services.listings import readable_by
from workflows.deprovisioning import DeprovisioningWorkflow

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

CLOSED_RUNS_SHOWN_DAYS = 30
POOL_OWNER_PREFIX = pool_owner_id("")
SNAIC_TIMEOUT_MARK = "aucune réponse de SNAIC"
KIND_LABELS = {
    "topup": "Recharge : remboursement en échec",
    "termination": "Résiliation : étape en échec",
    "snaic_sla": "Délai SNAIC dépassé",
    "activation": "Activation : annulation incomplète",
    "line_operation": "Opération sur ligne : annulation incomplète",
    "funding": "Portefeuille : remboursement en échec",
    "renewal_refund": "Renouvellement : remboursement en échec",
}


@dataclass
class AttentionItem:
    kind: str
    reason: str
    since: datetime | None
    workflow_id: str
    line_id: str | None = None
    msisdn: str | None = None
    recharge_id: str | None = None
    action: Literal["topup", "retry", "compensation", "funding"] | None = None
    wallet_id: str | None = None  # a wallet funding: its wallet and funding ids, its company
    funding_id: str | None = None
    company_id: str | None = None
    pool_id: str | None = None  # a pool's subscription

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


def age_fr(since: datetime | None, now: datetime | None = None) -> str:
    if since is None:
        return "—"
    aware = since if since.tzinfo else since.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - aware).total_seconds()))
    if seconds < 3600:
        return f"{max(1, seconds // 60)} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d}"
    return f"{seconds // 86400} j {seconds % 86400 // 3600} h"


def _start_of_today() -> datetime:
    """Midnight in Paris, as the naive UTC the database stores."""
    local = datetime.now(DISPLAY_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.astimezone(UTC).replace(tzinfo=None)


async def _dashboard(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    line_scope = readable_by(principal, org=Line.org_id, company=Line.company_id, end_user=Line.end_user_id)
    counts = dict(
        (await session.execute(select(Line.status, func.count()).where(line_scope).group_by(Line.status))).all()
    )
    topup_scope = readable_by(principal, org=TopUp.org_id, company=TopUp.company_id, end_user=TopUp.end_user_id)
    today = dict(
        (
            await session.execute(
                select(TopUp.status, func.count())
                .where(topup_scope, TopUp.created_at >= _start_of_today())
                .group_by(TopUp.status)
            )
        ).all()
    )
    total = sum(today.values())
    activations = (
        await session.execute(
            select(Line, SimCard.iccid)
            .outerjoin(SimCard, SimCard.id == Line.sim_id)
            .where(line_scope, Line.status == LineStatus.UNDER_CONSTRUCTION)
            .order_by(Line.created_at.desc())
            .limit(20)
        )
    ).all()
    return {
        "line_counts": [(status, counts.get(status, 0)) for status in LineStatus],
        "lines_total": sum(counts.values()),
        "today": today,
        "today_total": total,
        "refund_rate": (100 * today.get("refunded", 0) / total) if total else None,
        "activations": activations,
    }


async def _topups_waiting(session: AsyncSession, principal: Principal) -> list[AttentionItem]:
    scope = readable_by(principal, org=TopUp.org_id, company=TopUp.company_id, end_user=TopUp.end_user_id)
    rows = (
        await session.execute(
            select(TopUp, Line.msisdn)
            .join(Line, Line.id == TopUp.line_id)
            .where(scope, TopUp.status == TopUpStatus.NEEDS_ATTENTION)
            .order_by(TopUp.updated_at)
            .limit(200)
        )
    ).all()
    return [
        AttentionItem(
            kind="topup",
            reason=topup.failure_reason or "Remboursement impossible",
            since=topup.updated_at,
            workflow_id=topup.workflow_id,
            line_id=topup.line_id,
            msisdn=msisdn,
            recharge_id=topup.id,
            action="topup",
        )
        for topup, msisdn in rows
    ]


async def _fundings_waiting(session: AsyncSession, principal: Principal) -> list[AttentionItem]:
    """Wallet fundings whose refund failed for good: the row is `needs_attention`, the workflow waits for
    its `resolve` Update (the API's `POST /wallets/{id}/fundings/{id}/resolution`)."""
    scope = readable_by(
        principal, org=WalletFunding.org_id, company=WalletFunding.company_id, end_user=WalletFunding.end_user_id
    )
    rows = (
        await session.execute(
            select(WalletFunding)
            .where(scope, WalletFunding.status == FundingStatus.NEEDS_ATTENTION)
            .order_by(WalletFunding.updated_at)
            .limit(200)
        )
    ).scalars()
    return [
        AttentionItem(
            kind="funding",
            reason=funding.failure_reason or "Remboursement impossible",
            since=funding.updated_at,
            workflow_id=funding.workflow_id,
            action="funding",
            wallet_id=funding.wallet_id,
            funding_id=funding.id,
            company_id=funding.company_id,
        )
        for funding in rows
    ]


def _visibility_scope(principal: Principal) -> str:
    if principal.is_platform_admin:
        return ""
    clauses = [f'OrgId="{principal.org_id}"']
    if principal.company_id is not None:
        clauses.append(f'CompanyId="{principal.company_id}"')
    return " AND " + " AND ".join(clauses)


def _pool_of(workflow_id: str) -> str | None:
    """`subscription/{org}/pool-{pool}` names its pool."""
    parts = workflow_id.split("/")
    owner = parts[2] if len(parts) == 3 and parts[0] == "subscription" else ""
    return owner.removeprefix(POOL_OWNER_PREFIX) if owner.startswith(POOL_OWNER_PREFIX) else None


def _line_of(workflow_id: str) -> str | None:
    """`deprovision/{org}/{line}`, `line-op/{org}/{line}/…` and `subscription/{org}/{line}` name their line
    (`subscription/{org}/pool-{pool}` names a pool)."""
    parts = workflow_id.split("/")
    if len(parts) == 3 and parts[0] == "subscription":
        return None if parts[2].startswith("pool-") else parts[2]
    return parts[2] if len(parts) >= 3 and parts[0] in ("deprovision", "line-op") else None


async def _workflows_waiting(state: AppState, principal: Principal) -> tuple[list[AttentionItem], str | None]:
    """Line workflows whose BusinessStatus is `needs_attention` (top-ups come from their rows)."""
    # Closed runs (started before compensations waited for staff) cannot be answered: the last 30 days only.
    since = (datetime.now(UTC) - timedelta(days=CLOSED_RUNS_SHOWN_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = (
        f'BusinessStatus="{BusinessStatus.NEEDS_ATTENTION}" AND WorkflowType!="TopUpWorkflow" AND '
        f'(ExecutionStatus="Running" OR (ExecutionStatus="Failed" AND CloseTime>"{since}"))'
        + _visibility_scope(principal)
    )
    items: list[AttentionItem] = []
    try:
        client = await state.temporal()
        async with asyncio.timeout(10):
            async for execution in client.list_workflows(query, limit=200):
                running = execution.close_time is None
                line_id = _line_of(execution.id)
                if execution.workflow_type == "DeprovisioningWorkflow" and running:
                    handle = client.get_workflow_handle_for(DeprovisioningWorkflow.run, execution.id)
                    current = await handle.query(DeprovisioningWorkflow.state)
                    reason = current.attention or "Étape en échec"
                    kind = "snaic_sla" if SNAIC_TIMEOUT_MARK in reason else "termination"
                    items.append(
                        AttentionItem(
                            kind=kind,
                            reason=reason,
                            since=current.attention_since or execution.start_time,
                            workflow_id=execution.id,
                            line_id=line_id,
                            action="retry" if line_id else None,
                        )
                    )
                elif execution.workflow_type == "SubscriptionWorkflow" and running:
                    current = await client.get_workflow_handle(execution.id).query(
                        "attention_state", result_type=AttentionState
                    )
                    if not current.attention:
                        continue  # already answered, visibility lags behind
                    items.append(
                        AttentionItem(
                            kind="renewal_refund",
                            reason=current.attention,
                            since=current.since,
                            workflow_id=execution.id,
                            line_id=line_id,
                            pool_id=_pool_of(execution.id),
                            action="compensation",
                        )
                    )
                elif execution.workflow_type in ("SimActivationWorkflow", "LineOperationWorkflow"):
                    kind = "activation" if execution.workflow_type == "SimActivationWorkflow" else "line_operation"
                    item = AttentionItem(
                        kind=kind,
                        reason="Compensation incomplète : à terminer à la main dans les systèmes externes",
                        since=execution.close_time,
                        workflow_id=execution.id,
                        line_id=line_id,
                    )
                    if running:
                        current = await client.get_workflow_handle(execution.id).query(
                            "attention_state", result_type=AttentionState
                        )
                        if not current.attention:
                            continue  # already answered, visibility lags behind
                        item.reason, item.since, item.action = current.attention, current.since, "compensation"
                    items.append(item)
    except (RPCError, OSError, TimeoutError, RuntimeError) as err:
        return items, f"Temporal injoignable : les processus en attente ne peuvent pas être listés ({err})."
    return items, None


async def _home(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    state: AppState,
    *,
    problem: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    context = await _dashboard(session, principal)
    attention = await _topups_waiting(session, principal)
    attention.extend(await _fundings_waiting(session, principal))
    waiting, temporal_problem = await _workflows_waiting(state, principal)
    attention.extend(waiting)
    attention.sort(key=lambda i: (i.since or datetime.max).replace(tzinfo=None))
    activations = [i for i in attention if i.kind == "activation" and not i.line_id]
    if activations:
        query = select(Line.activation_workflow_id, Line.id).where(
            Line.activation_workflow_id.in_([i.workflow_id for i in activations])
        )
        newest = dict((await session.execute(query.order_by(Line.created_at))).all())
        for item in activations:
            item.line_id = newest.get(item.workflow_id)
    line_ids = {i.line_id for i in attention if i.line_id and not i.msisdn}
    if line_ids:
        numbers = dict((await session.execute(select(Line.id, Line.msisdn).where(Line.id.in_(line_ids)))).all())
        for item in attention:
            item.msisdn = item.msisdn or numbers.get(item.line_id or "")
    context.update(
        attention=attention,
        temporal_problem=temporal_problem,
        problem=problem,
        notice=notice,
        age_fr=age_fr,
        may_resolve_topups=principal.company_id is None,
    )
    return page(
        request, state.settings, principal, "portal/home/index.html", context, nav="home", status_code=status_code
    )


@router.get("/home")
async def home(request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep) -> Response:
    notice = {
        "topup": "Recharge traitée.",
        "retry": "Nouvelle tentative lancée.",
        "compensation": "Réponse transmise au processus.",
        "funding": "Approvisionnement traité.",
    }.get(request.query_params.get("done", ""))
    return await _home(request, principal, session, state, notice=notice)


@router.post("/recharges/{recharge_id}/resolution", dependencies=[CsrfChecked])
async def resolve_recharge(
    recharge_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    action: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The queue's action on a top-up: the API's resolution (`resolve_topup`, the workflow's Update)."""
    try:
        body = ResolutionCreate.model_validate({"action": action, "note": note.strip()})
    except pydantic.ValidationError as err:
        problem = "; ".join(f"{'.'.join(map(str, e['loc']))} : {e['msg']}" for e in err.errors())
        return await _home(request, principal, session, state, problem=problem, status_code=422)
    try:
        await resolve_topup(session, state, principal, recharge_id, body)
    except DomainError as err:
        await session.rollback()
        return await _home(request, principal, session, state, problem=err.reason, status_code=422)
    return RedirectResponse("/portal/home?done=topup", status_code=303)


@router.post("/wallets/{wallet_id}/fundings/{funding_id}/resolution", dependencies=[CsrfChecked])
async def resolve_wallet_funding(
    wallet_id: str,
    funding_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    action: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The queue's action on a wallet funding whose refund failed: the API's resolution (the workflow's
    `resolve` Update)."""
    try:
        body = FundingResolutionCreate.model_validate({"action": action, "note": note.strip()})
    except pydantic.ValidationError as err:
        problem = "; ".join(f"{'.'.join(map(str, e['loc']))} : {e['msg']}" for e in err.errors())
        return await _home(request, principal, session, state, problem=problem, status_code=422)
    try:
        await wallets_api.resolve_funding(wallet_id, funding_id, body, principal, session, state)
    except DomainError as err:
        await session.rollback()
        return await _home(request, principal, session, state, problem=err.reason, status_code=422)
    return RedirectResponse("/portal/home?done=funding", status_code=303)


@router.post("/lines/{line_id}/termination/retry", dependencies=[CsrfChecked])
async def retry_termination(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The queue's action on a stuck termination: the deprovisioning workflow's `retry` Update."""
    try:
        await retry_termination_step(session, state, principal, line_id, note.strip())
    except DomainError as err:
        await session.rollback()
        return await _home(request, principal, session, state, problem=err.reason, status_code=422)
    return RedirectResponse("/portal/home?done=retry", status_code=303)


@router.post("/lines/{line_id}/compensation", dependencies=[CsrfChecked])
async def resolve_compensation(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    workflow_id: Annotated[str, Form(max_length=200)] = "",
    action: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The queue's action on an activation or line operation whose compensation failed: its
    `resolve_compensation` Update (retry, or undone by hand)."""
    if action not in ("retry", "resolved_manually"):
        return await _home(request, principal, session, state, problem="Décision inconnue.", status_code=422)
    answer = ResolveCompensation(action=action, requested_by=principal.label, note=note.strip())
    try:
        await resolve_line_compensation(session, state, principal, line_id, workflow_id, answer)
    except DomainError as err:
        await session.rollback()
        return await _home(request, principal, session, state, problem=err.reason, status_code=422)
    return RedirectResponse("/portal/home?done=compensation", status_code=303)


@router.post("/pools/{pool_id}/compensation", dependencies=[CsrfChecked])
async def resolve_pool_refund(
    pool_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    action: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The queue's action on a pool's renewal whose refund failed: its subscription's `resolve_compensation`
    Update (retry the refund, or refunded by hand)."""
    if action not in ("retry", "resolved_manually"):
        return await _home(request, principal, session, state, problem="Décision inconnue.", status_code=422)
    answer = ResolveCompensation(action=action, requested_by=principal.label, note=note.strip())
    try:
        await resolve_pool_compensation(session, state, principal, pool_id, answer)
    except DomainError as err:
        await session.rollback()
        return await _home(request, principal, session, state, problem=err.reason, status_code=422)
    return RedirectResponse("/portal/home?done=compensation", status_code=303)
