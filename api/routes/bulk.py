"""Bulk operations on selected SIMs (seed 000): start, live progress, per-SIM report (JSON and CSV),
cancellation; "Importer des détails" from a CSV; "Exporter" the selected SIMs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from api.deps import AppState, PrincipalDep, SessionDep, StateDep
from api.line_schemas import BulkCreate, BulkItemOut, BulkOut
from api.schemas import CSV_RESPONSE, ICCID, Request
from domain.authz import Action, Principal, TenantChain, authorize, scope_org_id
from domain.enums import BULK_KIND_LABELS_FR, BulkOperationKind, BulkOperationStatus
from domain.errors import NotFound, PermissionDenied, ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_iccid
from domain.lifecycle_contracts import BulkItemInput, BulkOperationInput, BulkProgress
from domain.models import BulkOperation, BulkOperationItem, SimCard
from domain.services.bulk import (
    EXPORT_COLUMNS,
    bulk_report_csv,
    check_params,
    create_bulk_operation,
    export_sims_csv,
    normalise_items,
    read_details_csv,
)
from infra.temporal import workflow_ui_url
from starters.lines import start_bulk
from workflows.bulk import BulkOperationWorkflow
from workflows.bulk import workflow_id as bulk_workflow_id

router = APIRouter(prefix="/api/v1", tags=["Opérations en masse"])

MAX_DETAILS_BYTES = 5 * 1024 * 1024


async def read_details_upload(file: UploadFile) -> list[tuple[str, dict[str, Any]]]:
    """The rows of an "Importer des détails" upload (API and portal), or a ValidationFailed on `file`."""
    content = await file.read(MAX_DETAILS_BYTES + 1)
    if len(content) > MAX_DETAILS_BYTES:
        raise ValidationFailed("file", "fichier trop volumineux (maximum 5 Mo)")
    items = read_details_csv(content)
    if not items:
        raise ValidationFailed("file", "aucune ligne")
    return items


async def _target_org(session: AsyncSession, principal: Principal, org_id: str | None, first_iccid: str) -> str:
    if principal.end_user_id is not None:
        raise PermissionDenied(None, "les opérations en masse sont réservées au personnel")
    if principal.is_platform_admin and org_id is None:
        sim = (await session.execute(select(SimCard).where(SimCard.iccid == first_iccid))).scalar_one_or_none()
        if sim is None:
            raise ValidationFailed("org_id", "champ obligatoire")
        org_id = sim.org_id
    return scope_org_id(principal, org_id)


async def launch_bulk(
    session: AsyncSession,
    state: AppState,
    principal: Principal,
    *,
    kind: BulkOperationKind,
    iccids: list[str],
    items: list[tuple[str, dict[str, Any]]],
    params: dict[str, Any],
    org_id: str | None = None,
    max_concurrency: int = 50,
) -> BulkOperation:
    """Checks the request, writes the operation and its items, starts the workflow (also for the portal)."""
    request_items = normalise_items(iccids, items)
    org = await _target_org(session, principal, org_id, request_items[0].iccid)
    company_scope = principal.company_id
    authorize(principal, Action.WRITE, TenantChain(org, company_scope), "organisation")
    clean = await check_params(session, kind=kind, org_id=org, company_scope=company_scope, params=params)
    prepared = await create_bulk_operation(
        session,
        org_id=org,
        company_scope=company_scope,
        kind=kind,
        items=request_items,
        params=clean,
        created_by=principal.label,
        workflow_id_for=bulk_workflow_id,
    )
    operation = prepared.operation
    await session.commit()
    data = BulkOperationInput(
        bulk_id=operation.id,
        org_id=org,
        company_id=company_scope,
        kind=kind.value,
        params=clean,
        items=[BulkItemInput(iccid=i.iccid, params=i.params) for i in prepared.runnable],
        requested_by=principal.label,
        max_concurrency=max_concurrency,
        snaic_sla_s=state.settings.snaic_callback_sla_s,
    )
    await start_bulk(await state.temporal(), state.settings, data, BULK_KIND_LABELS_FR[kind])
    return operation


async def bulk_out(state: AppState, operation: BulkOperation) -> BulkOut:
    """The operation with its live progress (query on the workflow), or the database's counters."""
    out = BulkOut.model_validate(operation).model_copy(
        update={
            "done": operation.succeeded + operation.failed + operation.skipped,
            "workflow_url": workflow_ui_url(state.settings, operation.workflow_id),
        }
    )
    if operation.status is not BulkOperationStatus.RUNNING:
        return out
    try:
        client = await state.temporal()
        progress = await asyncio.wait_for(
            client.get_workflow_handle(operation.workflow_id).query(BulkOperationWorkflow.progress), timeout=5
        )
    except (RPCError, TimeoutError, OSError):
        return out
    assert isinstance(progress, BulkProgress)
    skipped_before = operation.total - progress.total  # items refused at creation (not found)
    return out.model_copy(
        update={
            "succeeded": progress.succeeded,
            "failed": progress.failed,
            "skipped": progress.skipped + skipped_before,
            "running": progress.running,
            "done": progress.done + skipped_before,
        }
    )


async def load_bulk(session: AsyncSession, principal: Principal, bulk_id: str, action: Action) -> BulkOperation:
    operation = await session.get(BulkOperation, bulk_id) if len(bulk_id) <= 32 else None
    if operation is None:
        raise NotFound(None, "opération introuvable")
    authorize(principal, action, TenantChain(operation.org_id, operation.company_id), "opération")
    if principal.end_user_id is not None:
        raise NotFound(None, "opération introuvable")
    return operation


@router.post("/bulk-operations", status_code=202, response_model=BulkOut)
async def create(body: BulkCreate, principal: PrincipalDep, session: SessionDep, state: StateDep) -> BulkOut:
    operation = await launch_bulk(
        session,
        state,
        principal,
        kind=body.kind,
        iccids=body.iccids,
        items=[(i.iccid, i.params) for i in body.items],
        params=body.params,
        org_id=body.org_id,
        max_concurrency=body.max_concurrency,
    )
    return await bulk_out(state, operation)


@router.post("/bulk-operations/import-details", status_code=202, response_model=BulkOut)
async def import_details(
    file: Annotated[UploadFile, File(description="CSV iccid;note;tags;imei")],
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    org_id: Annotated[str | None, Form()] = None,
) -> BulkOut:
    items = await read_details_upload(file)
    operation = await launch_bulk(
        session,
        state,
        principal,
        kind=BulkOperationKind.IMPORT_DETAILS,
        iccids=[],
        items=items,
        params={},
        org_id=org_id,
    )
    return await bulk_out(state, operation)


@router.get("/bulk-operations/{bulk_id:bulk_id}", response_model=BulkOut)
async def get(bulk_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep) -> BulkOut:
    return await bulk_out(state, await load_bulk(session, principal, bulk_id, Action.READ))


@router.get("/bulk-operations/{bulk_id}/items", response_model=list[BulkItemOut])
async def items(
    bulk_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[BulkItemOut]:
    operation = await load_bulk(session, principal, bulk_id, Action.READ)
    query = (
        select(BulkOperationItem)
        .where(BulkOperationItem.bulk_id == operation.id)
        .order_by(BulkOperationItem.position)
        .offset(offset)
        .limit(limit)
    )
    return [BulkItemOut.model_validate(i) for i in (await session.execute(query)).scalars()]


@router.get("/bulk-operations/{bulk_id}/report.csv", response_class=Response, responses=CSV_RESPONSE)
async def report_csv(bulk_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    operation = await load_bulk(session, principal, bulk_id, Action.READ)
    query = select(BulkOperationItem).where(BulkOperationItem.bulk_id == operation.id)
    rows = list((await session.execute(query.order_by(BulkOperationItem.position))).scalars())
    return Response(
        bulk_report_csv(operation, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="operation-{operation.id}.csv"'},
    )


@router.post("/bulk-operations/{bulk_id}/cancel", status_code=202, response_model=BulkOut)
async def cancel(bulk_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep) -> BulkOut:
    operation = await load_bulk(session, principal, bulk_id, Action.WRITE)
    if operation.status is BulkOperationStatus.RUNNING:
        client = await state.temporal()
        try:
            await client.get_workflow_handle(operation.workflow_id).signal(BulkOperationWorkflow.cancel)
        except RPCError:
            pass  # finished meanwhile
    return await bulk_out(state, operation)


class SimExport(Request):
    iccids: list[Annotated[str, ICCID]] = Field(min_length=1, max_length=10_000)
    columns: list[Annotated[str, Field(json_schema_extra={"enum": list(EXPORT_COLUMNS)})]] = Field(
        default_factory=list, max_length=len(EXPORT_COLUMNS), description="Colonnes de /sims-export/columns"
    )


class ExportColumns(BaseModel):
    columns: dict[str, str]


@router.get("/sims-export/columns", response_model=ExportColumns)
async def export_columns(_: PrincipalDep) -> ExportColumns:
    return ExportColumns(columns=EXPORT_COLUMNS)


@router.post("/sims/export", response_class=Response, responses=CSV_RESPONSE)
async def export_sims(body: SimExport, principal: PrincipalDep, session: SessionDep) -> Response:
    """ "Exporter": the selected SIMs the caller can see, with the chosen columns in the chosen order."""
    unknown = [c for c in body.columns if c not in EXPORT_COLUMNS]
    if unknown:
        raise ValidationFailed("columns", f"colonne(s) inconnue(s) : {', '.join(unknown)}")
    try:
        iccids = [normalize_iccid(i) for i in body.iccids]
    except InvalidIdentifier as exc:
        raise ValidationFailed("iccids", exc.reason) from exc
    return Response(
        await sims_csv(session, principal, iccids, body.columns),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cartes-sim.csv"'},
    )


async def sims_csv(session: AsyncSession, principal: Principal, iccids: list[str], columns: list[str]) -> str:
    sims: list[SimCard] = []
    for start in range(0, len(iccids), 500):
        query = select(SimCard).where(SimCard.iccid.in_(iccids[start : start + 500]))
        sims.extend((await session.execute(query)).scalars())
    order = {iccid: n for n, iccid in enumerate(iccids)}
    visible = [s for s in sims if principal.sees(TenantChain(s.org_id, s.company_id, s.end_user_id))]
    visible.sort(key=lambda s: order[s.iccid])
    return export_sims_csv(visible, columns)
