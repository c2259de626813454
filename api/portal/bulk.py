"""Portal "Opérations en masse" (seed 000) on the SIMs selected in the table (form `sim-selection`): choose
the operation, fill its parameters, follow its progress live (htmx polling of the workflow's progress
query), export the per-SIM report; "Exporter" the selection with the table's chosen columns and order."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Request, Response, UploadFile
from fastapi.responses import RedirectResponse
from sqlalchemy import or_, select
from temporalio.service import RPCError

from api.deps import SessionDep, SettingsDep, StateDep
from api.portal.columns import COLUMNS_COOKIE, ColumnLayout
from api.portal.routes import page, scope_of
from api.portal.security import CsrfChecked, PortalNotFound, PortalPrincipalDep, PortalRoute
from api.routes.bulk import bulk_out, launch_bulk, load_bulk, read_details_upload, sims_csv
from domain.authz import Action
from domain.enums import BULK_KIND_LABELS_FR, BulkOperationKind, BulkOperationStatus
from domain.errors import DomainError
from domain.models import BulkOperation, BulkOperationItem, Company, EndUser, Plan, Rule
from domain.services import listings
from domain.services.bulk import STATUS_LABELS, bulk_report_csv
from domain.services.portal_queries import selected_iccids
from workflows.bulk import BulkOperationWorkflow

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

# The table's columns (portal) → the export's columns (same meaning, raw values).
EXPORT_OF_TABLE = {
    "in_session": "in_session",
    "carrier": "carrier",
    "plan": "plan_id",
    "company": "company_id",
    "end_user": "end_user_id",
    "remaining_data": "remaining_bytes",
    "remaining_days": "remaining_days",
    "month_usage": "month_usage_bytes",
    "note": "note",
    "tags": "tags",
    "sim_type": "sim_type",
    "status": "status",
    "imsi": "imsi",
    "imei": "imei",
}
ITEMS_SHOWN = 200


async def _selection(request: Request) -> tuple[list[str], Any]:
    form = await request.form()
    return selected_iccids([str(v) for v in form.getlist("iccid")]), form


@router.post("/bulk/new", dependencies=[CsrfChecked])
async def prepare(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Second step: the parameters of the chosen operation for the selected SIMs."""
    iccids, form = await _selection(request)
    try:
        kind = BulkOperationKind(str(form.get("kind") or ""))
    except ValueError:
        kind = BulkOperationKind.EDIT_NOTE
    scope = scope_of(principal)
    companies = select(Company).order_by(Company.name)
    plans = select(Plan).order_by(Plan.name)
    rules = select(Rule).order_by(Rule.name)
    end_users = listings.end_users_query(principal).order_by(EndUser.email)
    if scope.org_id is not None:
        companies = companies.where(Company.org_id == scope.org_id)
        plans = plans.where(Plan.org_id == scope.org_id)
        rules = rules.where(Rule.org_id == scope.org_id)
    if scope.company_id is not None:
        companies = companies.where(Company.id == scope.company_id)
        plans = plans.where(or_(Plan.company_id.is_(None), Plan.company_id == scope.company_id))
    context = {
        "kind": kind,
        "kind_label": BULK_KIND_LABELS_FR[kind],
        "kinds": BULK_KIND_LABELS_FR,
        "iccids": iccids,
        "companies": list((await session.execute(companies.limit(500))).scalars()),
        "plans": list((await session.execute(plans.limit(500))).scalars()),
        "rules": list((await session.execute(rules.limit(500))).scalars()),
        "end_users": list((await session.execute(end_users.limit(500))).scalars()),
    }
    return page(request, settings, principal, "portal/bulk/new.html", context, nav="sims")


def _params(kind: BulkOperationKind, form: Any) -> dict[str, Any]:
    def value(name: str) -> str:
        return str(form.get(name) or "").strip()

    if kind in (BulkOperationKind.ACTIVATE,):
        chosen = {"company_id": value("company_id"), "plan_id": value("plan_id")}
        return chosen | ({"end_user_id": value("end_user_id")} if value("end_user_id") else {})
    if kind is BulkOperationKind.CHANGE_PLAN:
        return {"plan_id": value("plan_id")}
    if kind is BulkOperationKind.ASSIGN_COMPANY:
        return {"company_id": value("company_id")}
    if kind is BulkOperationKind.EDIT_NOTE:
        return {"note": value("note")}
    if kind is BulkOperationKind.SEND_SMS:
        return {"text": value("text")}
    if kind is BulkOperationKind.SET_TAGS:
        tags = [t.strip() for t in value("tags").replace(";", ",").split(",") if t.strip()]
        return {"tags": tags, "mode": value("mode") or "add"}
    if kind is BulkOperationKind.SET_RULES:
        return {"rule_ids": [str(v) for v in form.getlist("rule_ids") if str(v)], "mode": value("mode") or "add"}
    if kind is BulkOperationKind.CANCEL_SIM:
        grace = value("grace_days")
        return {"grace_days": int(grace) if grace.isdigit() else 0}
    return {}


@router.post("/bulk", dependencies=[CsrfChecked])
async def start(request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep) -> Response:
    iccids, form = await _selection(request)
    try:
        kind = BulkOperationKind(str(form.get("kind") or ""))
    except ValueError as exc:
        raise PortalNotFound("Opération inconnue.") from exc
    try:
        operation = await launch_bulk(
            session, state, principal, kind=kind, iccids=iccids, items=[], params=_params(kind, form)
        )
    except DomainError as err:
        context = {"problem": err.reason if err.field is None else f"{err.field} : {err.reason}", "kind": kind}
        return page(request, state.settings, principal, "portal/bulk/refused.html", context, status_code=422)
    return RedirectResponse(f"/portal/bulk/{operation.id}", status_code=303)


@router.get("/bulk/import-details")
async def import_details_form(request: Request, principal: PortalPrincipalDep, settings: SettingsDep) -> Response:
    """ "Importer des détails" (seed 000): note, tags and IMEI per SIM from a CSV, run as a bulk operation."""
    return page(request, settings, principal, "portal/bulk/import_details.html", {"problem": None}, nav="sims")


@router.post("/bulk/import-details", dependencies=[CsrfChecked])
async def import_details_upload(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    file: Annotated[UploadFile, File()],
) -> Response:
    try:
        items = await read_details_upload(file)
        operation = await launch_bulk(
            session, state, principal, kind=BulkOperationKind.IMPORT_DETAILS, iccids=[], items=items, params={}
        )
    except DomainError as err:
        problem = err.reason if err.field is None else f"{err.field} : {err.reason}"
        context = {"problem": problem}
        return page(
            request, state.settings, principal, "portal/bulk/import_details.html", context, status_code=422, nav="sims"
        )
    return RedirectResponse(f"/portal/bulk/{operation.id}", status_code=303)


@router.get("/bulk")
async def operations(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    scope = scope_of(principal)
    query = select(BulkOperation).order_by(BulkOperation.created_at.desc()).limit(100)
    if scope.org_id is not None:
        query = query.where(BulkOperation.org_id == scope.org_id)
    if scope.company_id is not None:
        query = query.where(BulkOperation.company_id == scope.company_id)
    context = {"operations": list((await session.execute(query)).scalars()), "kinds": BULK_KIND_LABELS_FR}
    return page(request, settings, principal, "portal/bulk/list.html", context, nav="sims")


async def _view(request: Request, bulk_id: str, principal: Any, session: Any, state: Any) -> dict[str, Any]:
    try:
        operation = await load_bulk(session, principal, bulk_id, Action.READ)
    except DomainError as err:
        raise PortalNotFound() from err
    progress = await bulk_out(state, operation)
    items = (
        await session.execute(
            select(BulkOperationItem)
            .where(BulkOperationItem.bulk_id == operation.id)
            .order_by(BulkOperationItem.position)
            .limit(ITEMS_SHOWN)
        )
    ).scalars()
    live = operation.status is BulkOperationStatus.RUNNING
    return {
        "operation": operation,
        "progress": progress,
        "percent": int(100 * progress.done / progress.total) if progress.total else 100,
        "items": list(items),
        "items_shown": ITEMS_SHOWN,
        "live": live,
        "kind_label": BULK_KIND_LABELS_FR.get(operation.kind, operation.kind.value),
        "item_labels": STATUS_LABELS,
    }


@router.get("/bulk/{bulk_id}")
async def detail(
    request: Request, bulk_id: str, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    context = await _view(request, bulk_id, principal, session, state)
    return page(request, state.settings, principal, "portal/bulk/detail.html", context, nav="sims")


@router.get("/bulk/{bulk_id}/progress")
async def progress(
    request: Request, bulk_id: str, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """The live part of the page, polled every second by htmx while the operation runs."""
    context = await _view(request, bulk_id, principal, session, state)
    return page(request, state.settings, principal, "portal/bulk/_progress.html", context)


@router.post("/bulk/{bulk_id}/cancel", dependencies=[CsrfChecked])
async def cancel(bulk_id: str, principal: PortalPrincipalDep, session: SessionDep, state: StateDep) -> Response:
    try:
        operation = await load_bulk(session, principal, bulk_id, Action.WRITE)
    except DomainError as err:
        raise PortalNotFound() from err
    if operation.status is BulkOperationStatus.RUNNING:
        client = await state.temporal()
        try:
            await client.get_workflow_handle(operation.workflow_id).signal(BulkOperationWorkflow.cancel)
        except RPCError:
            pass
    return RedirectResponse(f"/portal/bulk/{operation.id}", status_code=303)


@router.get("/bulk/{bulk_id}/report.csv")
async def report(bulk_id: str, principal: PortalPrincipalDep, session: SessionDep) -> Response:
    try:
        operation = await load_bulk(session, principal, bulk_id, Action.READ)
    except DomainError as err:
        raise PortalNotFound() from err
    rows = (
        await session.execute(
            select(BulkOperationItem)
            .where(BulkOperationItem.bulk_id == operation.id)
            .order_by(BulkOperationItem.position)
        )
    ).scalars()
    return Response(
        bulk_report_csv(operation, list(rows)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="operation-{operation.id}.csv"'},
    )


@router.post("/bulk/export", dependencies=[CsrfChecked])
async def export(request: Request, principal: PortalPrincipalDep, session: SessionDep) -> Response:
    """ "Exporter": the selected SIMs, ICCID first, then the table's visible columns in their order."""
    iccids, _ = await _selection(request)
    layout = ColumnLayout.from_cookie(request.cookies.get(COLUMNS_COOKIE))
    columns = ["iccid"] + [EXPORT_OF_TABLE[c.key] for c in layout.visible_columns if c.key in EXPORT_OF_TABLE]
    return Response(
        await sims_csv(session, principal, iccids, columns),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cartes-sim.csv"'},
    )
