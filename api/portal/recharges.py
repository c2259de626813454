"""Portal "Recharge DATA" (seed 003): on the selected SIMs' lines, a value in Go; each recharge is a
deployment with its one-off options and its MAJ history, followed live until it ends."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import SessionDep, SettingsDep, StateDep
from api.portal.routes import page, scope_of
from api.portal.security import CsrfChecked, PortalNotFound, PortalPrincipalDep, PortalRoute
from api.topups import recharge_line
from domain.authz import Action, Principal, TenantChain, authorize
from domain.enums import TOPUP_TERMINAL_STATUSES as TERMINAL
from domain.enums import LineStatus, PaymentMethod, TopUpPaymentStatus, TopUpSource, TopUpStatus
from domain.errors import DomainError
from domain.models import CatalogueArticle, Deployment, Line, SimCard, TopUp, UpdateRecord
from domain.services.portal_queries import selected_iccids
from infra.settings import Settings

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

STATUS_LABELS_FR = {
    TopUpStatus.PENDING: "En attente",
    TopUpStatus.CHARGED: "Payée, provisionnement en cours",
    TopUpStatus.COMPLETED: "Terminée",
    TopUpStatus.REFUNDED: "Remboursée",
    TopUpStatus.FAILED: "Échouée",
    TopUpStatus.NEEDS_ATTENTION: "Intervention requise",
}
PAYMENT_LABELS_FR = {
    TopUpPaymentStatus.PENDING: "En attente",
    TopUpPaymentStatus.SUCCEEDED: "Payée",
    TopUpPaymentStatus.ON_ACCOUNT: "Sur compte",
    TopUpPaymentStatus.DECLINED: "Refusée",
    TopUpPaymentStatus.REFUSED: "Refusée",
    TopUpPaymentStatus.REFUNDED: "Remboursée",
    TopUpPaymentStatus.REFUND_FAILED: "Remboursement en échec",
    TopUpPaymentStatus.LINE_UNRESOLVED: "Non débitée",
}
METHOD_LABELS_FR = {
    PaymentMethod.CARD: "Carte enregistrée",
    PaymentMethod.WALLET: "Portefeuille",
    PaymentMethod.ACCOUNT: "Sur compte (CFAST)",
}


def _key(batch: str, line_id: str) -> str:
    """One idempotency key per line of a submitted form (a resubmitted form recharges nothing twice),
    prefixed by the form's batch so the batch's recharges can be listed together."""
    return batch[:16] + hashlib.sha256(f"{batch}:{line_id}".encode()).hexdigest()[:24]


@router.post("/recharges", dependencies=[CsrfChecked])
async def recharge_selection(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    data_gb: Annotated[int, Form(ge=1, le=100)],
    payment_method: Annotated[PaymentMethod, Form()] = PaymentMethod.CARD,
    batch: Annotated[str, Form(pattern=r"^[a-f0-9]{32}$")] = "",
) -> Response:
    form = await request.form()
    iccids = selected_iccids([str(v) for v in form.getlist("iccid")])
    batch = batch or uuid.uuid4().hex
    scope = scope_of(principal)
    rows = await session.execute(
        select(Line, SimCard.iccid)
        .join(SimCard, SimCard.id == Line.sim_id)
        .where(SimCard.iccid.in_(iccids), Line.status != LineStatus.TERMINATED)
    )
    lines = [(line, iccid) for line, iccid in rows.all() if scope.org_id in (None, line.org_id)]
    await session.commit()  # release the connection while the recharges are submitted
    problems: list[str] = [f"{i} : aucune ligne active" for i in iccids if i not in {x for _, x in lines}]
    for line, iccid in lines:
        try:
            await recharge_line(
                session, state, principal, line.id, data_gb, payment_method, _key(batch, line.id), TopUpSource.PORTAL
            )
        except DomainError as err:
            problems.append(f"{iccid} : {err.reason}")
    if problems:
        return await _batch_page(request, principal, session, state.settings, batch, problems)
    return RedirectResponse(f"/portal/recharges?batch={batch}", status_code=303)


@router.get("/recharges")
async def recharge_batch(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep, batch: str = ""
) -> Response:
    return await _batch_page(request, principal, session, settings, batch, [])


async def _batch_page(
    request: Request, principal: Principal, session: AsyncSession, settings: Settings, batch: str, problems: list[str]
) -> Response:
    scope = scope_of(principal)
    query = select(TopUp, Line.msisdn).join(Line, Line.id == TopUp.line_id).order_by(TopUp.created_at.desc())
    if scope.org_id is not None:
        query = query.where(TopUp.org_id == scope.org_id)
    if scope.company_id is not None:
        query = query.where(TopUp.company_id == scope.company_id)
    if batch:
        query = query.where(TopUp.source == TopUpSource.PORTAL, TopUp.idempotency_key.startswith(batch[:16]))
    rows = (await session.execute(query.limit(200))).all()
    context = {
        "rows": rows,
        "batch": batch,
        "problems": problems,
        "live": any(t.status not in TERMINAL for t, _ in rows),
        "status_fr": STATUS_LABELS_FR,
        "payment_fr": PAYMENT_LABELS_FR,
        "method_fr": METHOD_LABELS_FR,
    }
    name = "portal/recharges/_rows.html" if request.headers.get("HX-Request") else "portal/recharges/list.html"
    return page(request, settings, principal, name, context, nav="recharges")


@router.get("/recharges/{recharge_id}")
async def recharge_detail(
    request: Request, recharge_id: str, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    topup = await session.get(TopUp, recharge_id)
    if topup is None:
        raise PortalNotFound()
    try:
        authorize(principal, Action.READ, TenantChain(topup.org_id, topup.company_id, topup.end_user_id))
    except DomainError as err:
        raise PortalNotFound() from err
    line = await session.get(Line, topup.line_id)
    article = await session.get(CatalogueArticle, topup.article_id)
    deployment = await session.get(Deployment, topup.deployment_id) if topup.deployment_id else None
    updates = list(
        (
            await session.execute(
                select(UpdateRecord).where(UpdateRecord.workflow_id == topup.workflow_id).order_by(UpdateRecord.id)
            )
        ).scalars()
    )
    context = {
        "topup": topup,
        "line": line,
        "article": article,
        "deployment": deployment,
        "updates": updates,
        "live": topup.status not in TERMINAL,
        "status_fr": STATUS_LABELS_FR,
        "payment_fr": PAYMENT_LABELS_FR,
        "method_fr": METHOD_LABELS_FR,
    }
    name = "portal/recharges/_detail_body.html" if request.headers.get("HX-Request") else "portal/recharges/detail.html"
    return page(request, settings, principal, name, context, nav="recharges")


@router.get("/lines/{line_id}/updates")
async def line_updates(
    request: Request, line_id: str, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """The MAJ history of one line: every push to SNAIC, CFAST, OCS and Stripe, all deployments together."""
    line = await session.get(Line, line_id)
    if line is None:
        raise PortalNotFound()
    try:
        authorize(principal, Action.READ, TenantChain(line.org_id, line.company_id, line.end_user_id))
    except DomainError as err:
        raise PortalNotFound() from err
    updates = list(
        (
            await session.execute(
                select(UpdateRecord).where(UpdateRecord.line_id == line.id).order_by(UpdateRecord.id.desc())
            )
        ).scalars()
    )
    return page(request, settings, principal, "portal/recharges/line_updates.html", {"line": line, "updates": updates})
