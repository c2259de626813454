"""SIM inventory: import of the operator's order file, listing with filters, detail with the change journal."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep
from api.schemas import IccidPath, ImportReportOut, SimChangeOut, SimDetail, SimOut, SimPage, page_cursor
from domain.authz import Action, TenantChain, authorize, scope_org_id
from domain.enums import SimStatus
from domain.errors import NotFound, PermissionDenied, ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_iccid
from domain.models import Organisation, SimCard
from domain.pagination import by_iccid
from domain.services.listings import current_line_id_query
from domain.services.sim_imports import record_import
from domain.services.sims import import_sims, read_import_csv, sim_journal, sims_query

router = APIRouter(prefix="/api/v1/sims", tags=["Cartes SIM"])

MAX_IMPORT_BYTES = 5 * 1024 * 1024


@router.post("/import", response_model=ImportReportOut)
async def import_file(
    file: Annotated[UploadFile, File(description="CSV iccid;imsi;puk1;puk2;carrier;esim")],
    principal: PrincipalDep,
    session: SessionDep,
    org_id: Annotated[str | None, Form()] = None,
) -> ImportReportOut:
    if principal.company_id is not None:
        raise PermissionDenied(None, "l'import de SIM est réservé au personnel de l'organisation")
    target_org = scope_org_id(principal, org_id)
    if await session.get(Organisation, target_org) is None:
        raise NotFound("org_id", "organisation introuvable")
    authorize(principal, Action.WRITE, TenantChain(target_org), "organisation")
    content = await file.read(MAX_IMPORT_BYTES + 1)
    if len(content) > MAX_IMPORT_BYTES:
        raise ValidationFailed("file", f"fichier trop volumineux (maximum {MAX_IMPORT_BYTES // (1024 * 1024)} Mo)")
    records = read_import_csv(content)
    batch = f"import-{secrets.token_hex(6)}"
    report = await import_sims(session, org_id=target_org, records=records, actor=principal.label, batch=batch)
    await record_import(  # kept with its rejected rows: GET /api/v1/sims/imports/{batch}/errors.csv
        session, org_id=target_org, batch=batch, filename=file.filename or "", report=report, actor=principal.label
    )
    return ImportReportOut.model_validate({"batch": batch, **report.__dict__}, from_attributes=True)


@router.get("", response_model=SimPage)
async def list_sims(
    principal: PrincipalDep,
    session: SessionDep,
    status: SimStatus | None = None,
    company_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(21)] = None,  # an ICCID
) -> SimPage:
    org_filter = None if principal.is_platform_admin else principal.org_id
    company_filter = principal.company_id or company_id
    if principal.company_id is not None and company_id not in (None, principal.company_id):
        return SimPage(items=[], next_cursor=None)
    query = sims_query(org_id=org_filter, company_id=company_filter, status=status)
    if principal.end_user_id is not None:
        query = query.where(SimCard.end_user_id == principal.end_user_id)
    keyset = by_iccid(SimCard.iccid)
    rows = list((await session.execute(keyset.apply(query, cursor, limit))).scalars())
    items, next_cursor = keyset.page(rows, limit, lambda sim: sim.iccid)
    return SimPage(items=[SimOut.model_validate(s) for s in items], next_cursor=next_cursor)


async def load_sim(session: SessionDep, principal: PrincipalDep, iccid: str, action: Action) -> SimCard:
    try:
        normalised = normalize_iccid(iccid)
    except InvalidIdentifier as exc:
        raise ValidationFailed("iccid", exc.reason) from exc
    sim = (await session.execute(select(SimCard).where(SimCard.iccid == normalised))).scalar_one_or_none()
    if sim is None:
        raise NotFound(None, "carte SIM introuvable")
    authorize(principal, action, TenantChain(sim.org_id, sim.company_id, sim.end_user_id), "carte SIM")
    return sim


@router.get("/{iccid:iccid}", response_model=SimDetail)
async def get_sim(iccid: IccidPath, principal: PrincipalDep, session: SessionDep) -> SimDetail:
    sim = await load_sim(session, principal, iccid, Action.READ)
    journal = await sim_journal(session, sim.id)
    line_id = (await session.execute(current_line_id_query(sim.id))).scalar_one_or_none()
    return SimDetail(
        **SimOut.model_validate(sim).model_dump(),
        line_id=line_id,
        journal=[SimChangeOut.model_validate(j) for j in journal],
    )
