"""Portal "Importer de nouvelles cartes SIM" (seed 000 "+"): upload the operator's order file, see the
per-row report, download the error report."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.portal.routes import page
from api.portal.security import CsrfChecked, PortalForbidden, PortalNotFound, PortalPrincipalDep, PortalRoute
from domain.authz import Action, TenantChain, authorize, scope_org_id
from domain.errors import DomainError
from domain.models import Organisation, SimImport
from domain.services.sim_imports import errors_csv, import_records
from domain.services.sims import read_import_csv

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

MAX_IMPORT_BYTES = 5 * 1024 * 1024
ROWS_SHOWN = 200


async def _organisations(session: SessionDep, org_id: str | None) -> list[Organisation]:
    query = select(Organisation).order_by(Organisation.name)
    if org_id is not None:
        query = query.where(Organisation.id == org_id)
    return list((await session.execute(query.limit(500))).scalars())


@router.get("/imports")
async def import_form(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    if principal.company_id is not None:
        raise PortalForbidden("L'import de SIM est réservé au personnel de l'organisation.")
    history = select(SimImport).order_by(SimImport.created_at.desc()).limit(20)
    if not principal.is_platform_admin:
        history = history.where(SimImport.org_id == principal.org_id)
    context = {
        "organisations": await _organisations(session, None if principal.is_platform_admin else principal.org_id),
        "imports": list((await session.execute(history)).scalars()),
        "result": None,
        "rejected_rows": [],
        "problem": None,
    }
    return page(request, settings, principal, "portal/imports/form.html", context, nav="sims")


@router.post("/imports", dependencies=[CsrfChecked])
async def import_upload(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
    org_id: Annotated[str | None, Form()] = None,
) -> Response:
    if principal.company_id is not None:
        raise PortalForbidden("L'import de SIM est réservé au personnel de l'organisation.")
    problem: str | None = None
    result = None
    try:
        target = scope_org_id(principal, org_id or None)
        authorize(principal, Action.WRITE, TenantChain(target), "organisation")
        content = await file.read(MAX_IMPORT_BYTES + 1)
        if len(content) > MAX_IMPORT_BYTES:
            problem = "fichier trop volumineux (maximum 5 Mo)"
        else:
            records = read_import_csv(content)
            result = await import_records(
                session,
                org_id=target,
                records=records,
                actor=principal.label,
                batch=f"import-{secrets.token_hex(6)}",
                filename=file.filename or "",
            )
            await session.commit()
    except DomainError as err:
        problem = err.reason
    context = {
        "organisations": await _organisations(session, None if principal.is_platform_admin else principal.org_id),
        "imports": [],
        "result": result,
        "rejected_rows": [r for r in result.rows if not r.accepted][:ROWS_SHOWN] if result else [],
        "problem": problem,
    }
    status = 422 if problem else 200
    return page(request, settings, principal, "portal/imports/form.html", context, nav="sims", status_code=status)


@router.get("/imports/{batch}/errors.csv")
async def import_errors(batch: str, principal: PortalPrincipalDep, session: SessionDep) -> Response:
    record = (await session.execute(select(SimImport).where(SimImport.batch == batch))).scalar_one_or_none()
    if record is None or principal.company_id is not None:
        raise PortalNotFound()
    try:
        authorize(principal, Action.READ, TenantChain(record.org_id), "import")
    except DomainError as err:
        raise PortalNotFound() from err
    return Response(
        errors_csv(record),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{record.batch}-erreurs.csv"'},
    )
