"""SIM inventory extras: the downloadable error report of an import, and the eSIM activation QR code."""

from __future__ import annotations

import segno
from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep
from api.routes.sims import load_sim
from api.schemas import CSV_RESPONSE, SVG_RESPONSE, IccidPath
from domain.authz import Action, TenantChain, authorize
from domain.errors import NotFound
from domain.models import SimImport
from domain.services.sim_imports import errors_csv

router = APIRouter(prefix="/api/v1/sims", tags=["Cartes SIM"])


@router.get("/imports/{batch}/errors.csv", response_class=Response, responses=CSV_RESPONSE)
async def import_errors(batch: str, principal: PrincipalDep, session: SessionDep) -> Response:
    record = (await session.execute(select(SimImport).where(SimImport.batch == batch))).scalar_one_or_none()
    if record is None or principal.company_id is not None:
        raise NotFound(None, "import introuvable")
    authorize(principal, Action.READ, TenantChain(record.org_id), "import")
    return Response(
        errors_csv(record),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{record.batch}-erreurs.csv"'},
    )


@router.get("/{iccid:iccid}/esim-qr.svg", response_class=Response, responses=SVG_RESPONSE)
async def esim_qr(iccid: IccidPath, principal: PrincipalDep, session: SessionDep) -> Response:
    """The eSIM's LPA activation code as a QR code (SVG), for the customer to scan."""
    sim = await load_sim(session, principal, iccid, Action.READ)
    if not sim.is_esim or not sim.activation_code:
        raise NotFound(None, "aucun code d'activation eSIM pour cette carte")
    svg = segno.make(sim.activation_code, error="m").svg_inline(scale=4, border=2, title="QR code d'activation eSIM")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, no-store"})
