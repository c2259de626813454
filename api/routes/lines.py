"""Lines: SIM activation (202 + workflow id), line detail with its journal and MAJ history, termination
with grace period (cancellable), suspension, resumption and plan change.

The API writes intent (the SIM reservation and the line row, in one transaction) and starts workflows;
it performs no external side effect itself.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api.deps import AppState, PrincipalDep, SessionDep, StateDep
from api.line_schemas import (
    ActivationAccepted,
    ActivationCreate,
    LineChangeOut,
    LineOut,
    LinePage,
    OperationAccepted,
    PlanChangeCreate,
    TerminationAccepted,
    TerminationCancelled,
    TerminationCreate,
    UpdateRecordOut,
)
from api.routes.sims import load_sim
from api.schemas import CSV_RESPONSE, IccidPath, iccid_query, msisdn_query, page_cursor, row_id_query
from domain.authz import Action, Principal, TenantChain, authorize
from domain.csv_files import write_csv
from domain.enums import LineStatus, SimStatus
from domain.errors import IllegalTransition, NotFound, ResourceBusy, ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_iccid, normalize_msisdn, normalize_rio
from domain.lifecycle_contracts import (
    CancelTermination,
    DeprovisioningInput,
    DeprovisioningState,
    LineOperationInput,
    ResolveAttention,
    ResolveCompensation,
    SimActivationInput,
)
from domain.line_status import LINE_STATUS_LABELS_FR
from domain.models import Company, EndUser, Line, Plan, SimCard, UpdateRecord
from domain.pagination import ID_DIGITS, AnySelect, by_id
from domain.services import lines as line_service
from domain.services import listings
from domain.subscription_contracts import subscription_workflow_id
from infra.temporal import workflow_ui_url
from starters.lines import start_activation, start_deprovisioning, start_line_operation
from workflows.deprovisioning import DeprovisioningWorkflow
from workflows.sim_activation import workflow_id as activation_workflow_id

router = APIRouter(prefix="/api/v1", tags=["Lignes"])

LIVE = (LineStatus.ACTIVE, LineStatus.SUSPENDED, LineStatus.INACTIVE)


def _chain(line: Line) -> TenantChain:
    return TenantChain(line.org_id, line.company_id, line.end_user_id)


async def load_line(session: AsyncSession, principal: Principal, line_id: str, action: Action) -> Line:
    line = await session.get(Line, line_id) if len(line_id) <= 32 else None
    if line is None:
        raise NotFound(None, "ligne introuvable")
    authorize(principal, action, _chain(line), "ligne")
    return line


async def line_out(session: AsyncSession, line: Line) -> LineOut:
    sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
    out = LineOut.model_validate(line)
    return out.model_copy(
        update={"iccid": sim.iccid if sim else None, "accepts_topup": line_service.accepts_topup(line)}
    )


# --- activation --------------------------------------------------------------------------------------


@router.post("/sims/{iccid:iccid}/activation", status_code=202, response_model=ActivationAccepted)
async def activate_sim(
    iccid: IccidPath, body: ActivationCreate, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> ActivationAccepted:
    return await request_activation(session, state, principal, iccid, body)


async def request_activation(
    session: AsyncSession, state: AppState, principal: Principal, iccid: str, body: ActivationCreate
) -> ActivationAccepted:
    """Shared by the API and the portal: checks, writes the intent, starts the activation workflow."""
    sim = await load_sim(session, principal, iccid, Action.WRITE)
    company = await session.get(Company, body.company_id)
    if company is None or company.org_id != sim.org_id:
        raise NotFound("company_id", "entreprise introuvable")
    authorize(principal, Action.WRITE, TenantChain(company.org_id, company.id, body.end_user_id), "entreprise")
    plan = await session.get(Plan, body.plan_id)
    if plan is None or plan.org_id != sim.org_id or plan.company_id not in (None, company.id):
        raise NotFound("plan_id", "forfait introuvable")
    if body.end_user_id is not None:
        user = await session.get(EndUser, body.end_user_id)
        if user is None or user.company_id != company.id:
            raise NotFound("end_user_id", "utilisateur final introuvable")
    msisdn = port_msisdn = rio = None
    try:
        if body.msisdn is not None:
            msisdn = normalize_msisdn(body.msisdn)
        if body.port_in is not None:
            port_msisdn = normalize_msisdn(body.port_in.msisdn)
            rio = normalize_rio(body.port_in.rio, port_msisdn)
    except InvalidIdentifier as exc:
        field = exc.field if body.port_in is None else f"port_in.{exc.field}"
        raise ValidationFailed(field, exc.reason) from exc

    wf_id = activation_workflow_id(sim.org_id, sim.iccid)
    existing = await _running_activation(session, sim, wf_id)
    if existing is not None:
        if existing.company_id != company.id or existing.plan_id != plan.id:
            raise ResourceBusy("iccid", "une activation de cette SIM est déjà en cours avec d'autres paramètres")
        return _accepted(state, wf_id, existing.id, "running")
    if sim.status is not SimStatus.BLANK:
        raise IllegalTransition("status", f"seule une SIM vierge peut être activée (statut : {sim.status.value})")

    # Intent, in one transaction: the SIM held by this activation, the line under construction. The
    # reservation is one conditional UPDATE: of concurrent requests, one wins, the others join its run.
    try:
        await line_service.reserve_sim(
            session,
            org_id=sim.org_id,
            iccid=sim.iccid,
            reservation_key=wf_id,
            company_id=company.id,
            actor=principal.label,
            exclusive=True,
        )
    except ResourceBusy:
        await session.refresh(sim)
        existing = await _running_activation(session, sim, wf_id)
        if existing is None or existing.company_id != company.id or existing.plan_id != plan.id:
            raise
        return _accepted(state, wf_id, existing.id, "running")
    line = Line(
        org_id=sim.org_id,
        company_id=company.id,
        sim_id=sim.id,
        end_user_id=body.end_user_id,
        plan_id=plan.id,
        msisdn=msisdn or port_msisdn or "",
        status=LineStatus.UNDER_CONSTRUCTION,
        activation_workflow_id=wf_id,
    )
    session.add(line)
    await session.commit()

    data = SimActivationInput(
        org_id=sim.org_id,
        company_id=company.id,
        line_id=line.id,
        iccid=sim.iccid,
        plan_id=plan.id,
        end_user_id=body.end_user_id,
        msisdn=msisdn,
        port_in_msisdn=port_msisdn,
        port_in_rio=rio,
        requested_by=principal.label,
        snaic_sla_s=state.settings.snaic_callback_sla_s,
    )
    try:
        await start_activation(await state.temporal(), state.settings, data, msisdn or port_msisdn)
    except (RPCError, OSError, TimeoutError, RuntimeError) as exc:
        # Nothing started: the intent is undone so the SIM can be activated again.
        await line_service.release_sim(session, iccid=sim.iccid, reservation_key=wf_id, actor=principal.label)
        line.failure_reason = "le moteur de workflows est indisponible"
        await line_service.change_line(session, line, actor=principal.label, status=LineStatus.OBSOLETE)
        await session.commit()
        raise ResourceBusy(None, "le moteur de workflows est indisponible, réessayez plus tard") from exc
    return _accepted(state, wf_id, line.id, "accepted")


async def _running_activation(session: AsyncSession, sim: SimCard, wf_id: str) -> Line | None:
    """A double click: the SIM is already held by this activation, whose line is under construction."""
    if sim.reserved_by != wf_id:
        return None
    query = select(Line).where(
        Line.sim_id == sim.id, Line.activation_workflow_id == wf_id, Line.status == LineStatus.UNDER_CONSTRUCTION
    )
    return (await session.execute(query)).scalars().first()


def _accepted(state: AppState, wf_id: str, line_id: str, status: str) -> ActivationAccepted:
    return ActivationAccepted(
        workflow_id=wf_id, line_id=line_id, status=status, workflow_url=workflow_ui_url(state.settings, wf_id)
    )


# --- lines -------------------------------------------------------------------------------------------

MAX_EXPORT_ROWS = 50_000
LINE_EXPORT_COLUMNS = {
    "id": "Identifiant",
    "msisdn": "Numéro",
    "iccid": "ICCID",
    "status": "Statut",
    "company": "Entreprise",
    "company_id": "Identifiant entreprise",
    "end_user_id": "Utilisateur final",
    "plan_id": "Forfait",
    "next_renewal_on": "Renouvellement",
    "termination_scheduled_for": "Résiliation prévue",
    "created_at": "Créée le",
}


class LineFilters:
    """The filters of the line list and of its export (query parameters)."""

    def __init__(
        self,
        status: LineStatus | None = None,
        company_id: Annotated[str | None, row_id_query("Lignes de cette entreprise")] = None,
        plan_id: Annotated[str | None, row_id_query("Lignes sur ce forfait")] = None,
        iccid: Annotated[str | None, iccid_query()] = None,
        msisdn: Annotated[str | None, msisdn_query("Numéro de la ligne (E.164 ou national)")] = None,
    ) -> None:
        self.status, self.company_id, self.plan_id, self.iccid, self.msisdn = status, company_id, plan_id, iccid, msisdn

    def query(self, principal: Principal) -> AnySelect:
        try:
            iccid = normalize_iccid(self.iccid) if self.iccid is not None else None
        except InvalidIdentifier as exc:
            raise ValidationFailed("iccid", exc.reason) from exc
        try:
            msisdn = normalize_msisdn(self.msisdn) if self.msisdn is not None else None
        except InvalidIdentifier as exc:
            raise ValidationFailed("msisdn", exc.reason) from exc
        return listings.lines_query(
            principal, status=self.status, company_id=self.company_id, plan_id=self.plan_id, iccid=iccid, msisdn=msisdn
        )


LineFiltersDep = Annotated[LineFilters, Depends()]


def _line_item(line: Line, iccid: str | None) -> LineOut:
    out = LineOut.model_validate(line)
    return out.model_copy(update={"iccid": iccid, "accepts_topup": line_service.accepts_topup(line)})


@router.get("/lines", response_model=LinePage)
async def list_lines(
    principal: PrincipalDep,
    session: SessionDep,
    filters: LineFiltersDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> LinePage:
    """The lines the caller can see, by id, `limit` per page; `next_cursor` gives the next page."""
    keyset = by_id(Line.id)
    rows = (await session.execute(keyset.apply(filters.query(principal), cursor, limit))).all()
    items, next_cursor = keyset.page(rows, limit, lambda row: row[0].id)
    return LinePage(items=[_line_item(line, iccid) for line, iccid in items], next_cursor=next_cursor)


@router.get("/lines/export.csv", response_class=Response, responses=CSV_RESPONSE)
async def export_lines(principal: PrincipalDep, session: SessionDep, filters: LineFiltersDep) -> Response:
    """The filtered lines as CSV (`;`, UTF-8 with BOM), by id, up to 50 000 rows (422 beyond: filter more)."""
    query = (
        filters.query(principal)
        .join(Company, Company.id == Line.company_id)
        .add_columns(Company.name)
        .order_by(Line.id)
        .limit(MAX_EXPORT_ROWS + 1)
    )
    rows = (await session.execute(query)).all()
    if len(rows) > MAX_EXPORT_ROWS:
        raise ValidationFailed(None, f"plus de {MAX_EXPORT_ROWS} lignes : affinez les filtres")
    return Response(
        write_csv(
            list(LINE_EXPORT_COLUMNS.values()),
            (
                [_line_export_value(line, iccid, company, c) for c in LINE_EXPORT_COLUMNS]
                for line, iccid, company in rows
            ),
        ),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="lignes.csv"'},
    )


def _line_export_value(line: Line, iccid: str | None, company_name: str, column: str) -> object:
    if column == "iccid":
        return iccid
    if column == "company":
        return company_name
    value = getattr(line, column)
    if column == "status":
        return LINE_STATUS_LABELS_FR.get(value, value.value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@router.get("/lines/{line_id}", response_model=LineOut)
async def get_line(line_id: str, principal: PrincipalDep, session: SessionDep) -> LineOut:
    line = await load_line(session, principal, line_id, Action.READ)
    return await line_out(session, line)


@router.get("/lines/{line_id}/journal", response_model=list[LineChangeOut])
async def get_line_journal(line_id: str, principal: PrincipalDep, session: SessionDep) -> list[LineChangeOut]:
    line = await load_line(session, principal, line_id, Action.READ)
    return [LineChangeOut.model_validate(c) for c in await line_service.line_journal(session, line.id)]


@router.get("/lines/{line_id}/updates", response_model=list[UpdateRecordOut])
async def get_line_updates(line_id: str, principal: PrincipalDep, session: SessionDep) -> list[UpdateRecordOut]:
    """The MAJ history of the line: every push to SNAIC, the OCS and CFAST, its answer, ids and errors."""
    line = await load_line(session, principal, line_id, Action.READ)
    query = select(UpdateRecord).where(UpdateRecord.line_id == line.id).order_by(UpdateRecord.id)
    return [UpdateRecordOut.model_validate(r) for r in (await session.execute(query)).scalars()]


# --- termination -------------------------------------------------------------------------------------


@router.post("/lines/{line_id}/termination", status_code=202, response_model=TerminationAccepted)
async def terminate_line(
    line_id: str, body: TerminationCreate, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> TerminationAccepted:
    return await request_termination(session, state, principal, line_id, body)


async def request_termination(
    session: AsyncSession, state: AppState, principal: Principal, line_id: str, body: TerminationCreate
) -> TerminationAccepted:
    """Shared by the API and the portal: starts the deprovisioning workflow (grace period or not)."""
    line = await load_line(session, principal, line_id, Action.WRITE)
    if line.status is LineStatus.TERMINATED:
        raise IllegalTransition("status", "la ligne est déjà résiliée")
    if line.status not in LIVE:
        raise IllegalTransition("status", f"ligne {line.status.value} : résiliation impossible")
    sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
    data = DeprovisioningInput(
        org_id=line.org_id,
        company_id=line.company_id,
        line_id=line.id,
        grace_days=body.grace_days,
        requested_by=principal.label,
        reason=body.reason,
        snaic_sla_s=state.settings.snaic_callback_sla_s,
        request_id=secrets.token_hex(8),
    )
    client = await state.temporal()
    wf_id = await start_deprovisioning(
        client, state.settings, data, iccid=sim.iccid if sim else None, msisdn=line.msisdn
    )
    handle = client.get_workflow_handle(wf_id)
    grace_until = None
    try:
        current = await asyncio.wait_for(handle.query(DeprovisioningWorkflow.state), timeout=5)
        grace_until = current.grace_until
        status = current.status
    except (RPCError, TimeoutError):
        status = "accepted"
    return TerminationAccepted(
        workflow_id=wf_id,
        line_id=line.id,
        status=status,
        grace_until=grace_until,
        workflow_url=workflow_ui_url(state.settings, wf_id),
    )


@router.delete("/lines/{line_id}/termination", response_model=TerminationCancelled)
async def cancel_termination(
    line_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> TerminationCancelled:
    """Cancels a termination during its grace period (409 once the termination has begun)."""
    return await cancel_line_termination(session, state, principal, line_id)


async def cancel_line_termination(
    session: AsyncSession, state: AppState, principal: Principal, line_id: str
) -> TerminationCancelled:
    """Shared by the API and the portal: the deprovisioning workflow's `cancel_termination` Update."""
    line = await load_line(session, principal, line_id, Action.WRITE)
    if line.termination_workflow_id is None or line.status is LineStatus.TERMINATED:
        raise IllegalTransition("termination", "aucune résiliation en attente sur cette ligne")
    client = await state.temporal()
    handle = client.get_workflow_handle_for(DeprovisioningWorkflow.run, line.termination_workflow_id)
    try:
        await handle.execute_update(
            DeprovisioningWorkflow.cancel_termination, CancelTermination(requested_by=principal.label)
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(err)
        raise IllegalTransition("termination", f"résiliation non annulable : {reason}") from err
    except RPCError as err:
        raise IllegalTransition("termination", "aucune résiliation en attente sur cette ligne") from err
    result = await handle.result()
    return TerminationCancelled(workflow_id=line.termination_workflow_id, line_id=line.id, status=result.status)


async def retry_termination_step(
    session: AsyncSession, state: AppState, principal: Principal, line_id: str, note: str = ""
) -> DeprovisioningState:
    """The deprovisioning workflow's `retry` Update: staff tell a termination stuck in `needs_attention`
    (a step that failed for good, a SNAIC SLA exceeded) to try its failed step again."""
    line = await load_line(session, principal, line_id, Action.WRITE)
    if line.termination_workflow_id is None:
        raise IllegalTransition("termination", "aucune résiliation sur cette ligne")
    client = await state.temporal()
    handle = client.get_workflow_handle_for(DeprovisioningWorkflow.run, line.termination_workflow_id)
    try:
        return await handle.execute_update(
            DeprovisioningWorkflow.retry, ResolveAttention(requested_by=principal.label, note=note)
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(err)
        raise IllegalTransition("termination", f"nouvelle tentative refusée : {reason}") from err
    except RPCError as err:
        raise IllegalTransition("termination", "aucune résiliation en attente sur cette ligne") from err


async def resolve_line_compensation(
    session: AsyncSession,
    state: AppState,
    principal: Principal,
    line_id: str,
    workflow_id: str,
    answer: ResolveCompensation,
) -> str:
    """The `resolve_compensation` Update of the line's activation, operation or subscription (a renewal's
    refund) whose compensation failed for good: `retry` the failed compensations, or `resolved_manually`."""
    line = await load_line(session, principal, line_id, Action.WRITE)
    if (
        workflow_id != line.activation_workflow_id
        and workflow_id != subscription_workflow_id(line.org_id, line.id)
        and not workflow_id.startswith(f"line-op/{line.org_id}/{line.id}/")
    ):
        raise NotFound("workflow_id", "processus introuvable sur cette ligne")
    return await send_compensation_answer(state, workflow_id, answer)


async def send_compensation_answer(state: AppState, workflow_id: str, answer: ResolveCompensation) -> str:
    """Staff's answer to a workflow waiting for them (`resolve_compensation`), its refusals in French."""
    handle = (await state.temporal()).get_workflow_handle(workflow_id)
    try:
        action: str = await handle.execute_update("resolve_compensation", answer, result_type=str)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(err)
        raise IllegalTransition("status", f"résolution refusée : {reason}") from err
    except RPCError as err:
        raise IllegalTransition("status", "ce processus n'attend plus d'intervention") from err
    return action


# --- suspension, resumption, plan change -------------------------------------------------------------


async def start_operation(
    line_id: str,
    operation: str,
    principal: Principal,
    session: AsyncSession,
    state: AppState,
    idempotency_key: str | None,
    plan_id: str | None = None,
) -> OperationAccepted:
    line = await load_line(session, principal, line_id, Action.WRITE)
    allowed = {"suspend": (LineStatus.ACTIVE,), "resume": (LineStatus.SUSPENDED,), "change_plan": LIVE}
    if line.status not in allowed[operation]:
        raise IllegalTransition("status", f"ligne {line.status.value} : opération impossible")
    if line.termination_scheduled_for is not None:
        raise IllegalTransition("status", "une résiliation est programmée sur cette ligne")
    if plan_id is not None:
        plan = await session.get(Plan, plan_id)
        if plan is None or plan.org_id != line.org_id or plan.company_id not in (None, line.company_id):
            raise NotFound("plan_id", "forfait introuvable")
        if plan.id == line.plan_id:
            raise IllegalTransition("plan_id", "la ligne est déjà sur ce forfait")
    request_id = _request_id(idempotency_key)
    sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
    data = LineOperationInput(
        org_id=line.org_id,
        company_id=line.company_id,
        line_id=line.id,
        operation=operation,
        plan_id=plan_id,
        requested_by=principal.label,
        snaic_sla_s=state.settings.snaic_callback_sla_s,
    )
    wf_id = await start_line_operation(
        await state.temporal(),
        state.settings,
        data,
        request_id=request_id,
        iccid=sim.iccid if sim else None,
        msisdn=line.msisdn,
    )
    return OperationAccepted(
        workflow_id=wf_id,
        line_id=line.id,
        operation=operation,
        status="accepted",
        workflow_url=workflow_ui_url(state.settings, wf_id),
    )


def _request_id(idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return secrets.token_hex(8)
    key = idempotency_key.strip()
    if not 1 <= len(key) <= 64 or not all(c.isalnum() or c in "-_." for c in key):
        raise ValidationFailed("Idempotency-Key", "1 à 64 caractères : lettres, chiffres, - _ .")
    return key


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


@router.post("/lines/{line_id}/suspension", status_code=202, response_model=OperationAccepted)
async def suspend_line(
    line_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep, idempotency_key: IdempotencyKey = None
) -> OperationAccepted:
    return await start_operation(line_id, "suspend", principal, session, state, idempotency_key)


@router.delete("/lines/{line_id}/suspension", status_code=202, response_model=OperationAccepted)
async def resume_line(
    line_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep, idempotency_key: IdempotencyKey = None
) -> OperationAccepted:
    return await start_operation(line_id, "resume", principal, session, state, idempotency_key)


@router.post("/lines/{line_id}/plan-change", status_code=202, response_model=OperationAccepted)
async def change_plan(
    line_id: str,
    body: PlanChangeCreate,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> OperationAccepted:
    return await start_operation(
        line_id, "change_plan", principal, session, state, idempotency_key, plan_id=body.plan_id
    )
