"""Portal "Renouvellements": the subscriptions of the caller's scope with their next renewal, the prepaid
reminders still to come (10 and 5 days before), those in dunning and their stage, each linked to its workflow
in the Temporal UI. The lines' own subscription block and its actions are on the line page (`api.portal.lines`).

The scope is the lines' (`listings.lines_query`), as for `GET /api/v1/lines/{id}/subscription`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import or_

from api.deps import SessionDep, StateDep
from api.portal.routes import page
from api.portal.security import PortalPrincipalDep, PortalRoute
from api.subscriptions import upcoming_reminders
from domain.enums import AutoRenewMode, DunningStage, SubscriptionStatus
from domain.models import Company, Line, Plan, Subscription
from domain.services import listings

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

PAGE_SIZE = 200
AUTO_RENEW_LABELS_FR: dict[str, str] = {
    AutoRenewMode.ON: "Automatique",
    AutoRenewMode.PROMPT: "Sur demande",
    AutoRenewMode.OFF: "Désactivé (expire à l'échéance)",
}
DUNNING_STAGE_LABELS_FR: dict[str, str] = {
    DunningStage.RETRY: "Nouvelles tentatives",
    DunningStage.SECOND_ATTEMPT: "Seconde tentative",
    DunningStage.SUSPENSION: "Ligne suspendue",
    DunningStage.TERMINATION: "Résiliation",
}
SUBSCRIPTION_STATUS_LABELS_FR: dict[str, str] = {
    SubscriptionStatus.ACTIVE: "Actif",
    SubscriptionStatus.DUNNING: "En relance",
    SubscriptionStatus.SUSPENDED: "Suspendu (impayé)",
    SubscriptionStatus.CANCELLED: "Annulé",
    SubscriptionStatus.ENDED: "Terminé",
}
# The filter "État": subscriptions renewing normally, or in dunning (a failed renewal, any stage).
STATES = {"renewing": "Renouvellement normal", "dunning": "En relance (impayé)"}


@dataclass(frozen=True)
class RenewalFilters:
    state: str = ""
    company_id: str = ""

    def url(self) -> str:
        query = {k: v for k, v in (("state", self.state), ("company_id", self.company_id)) if v}
        return "/portal/renewals" + (f"?{urlencode(query)}" if query else "")


@router.get("/renewals")
async def renewals(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    etat: Annotated[str, Query(alias="state", max_length=16)] = "",
    company_id: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    filters = RenewalFilters(state=etat if etat in STATES else "", company_id=company_id)
    query = (
        listings.lines_query(principal, company_id=filters.company_id or None)
        .join(Subscription, Subscription.line_id == Line.id)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Company, Company.id == Line.company_id)
        .add_columns(Subscription, Plan.name, Plan.plan_type, Company.name)
        .where(Subscription.status.not_in((SubscriptionStatus.ENDED, SubscriptionStatus.CANCELLED)))
    )
    in_dunning = or_(Subscription.dunning_stage.is_not(None), Subscription.status != SubscriptionStatus.ACTIVE)
    if filters.state == "dunning":
        query = query.where(in_dunning)
    elif filters.state == "renewing":
        query = query.where(~in_dunning)
    found = (await session.execute(query.order_by(Subscription.next_renewal_on, Line.id).limit(PAGE_SIZE + 1))).all()
    today = datetime.now(UTC).date()
    rows: list[dict[str, Any]] = [
        {
            "line": line,
            "subscription": subscription,
            "plan_name": plan_name,
            "company_name": company_name,
            "reminders": upcoming_reminders(subscription, plan_type, today),
        }
        for line, _iccid, subscription, plan_name, plan_type, company_name in found[:PAGE_SIZE]
    ]
    companies = listings.companies_query(principal).order_by(Company.name).limit(500)
    context: dict[str, Any] = {
        "rows": rows,
        "truncated": len(found) > PAGE_SIZE,
        "filters": filters,
        "states": STATES,
        "companies": [(c.id, c.name) for c in (await session.execute(companies)).scalars()],
        "mode_fr": AUTO_RENEW_LABELS_FR,
        "stage_fr": DUNNING_STAGE_LABELS_FR,
        "status_fr": SUBSCRIPTION_STATUS_LABELS_FR,
        "page_size": PAGE_SIZE,
    }
    target = request.headers.get("HX-Target") if request.headers.get("HX-Request") else None
    name = "portal/renewals/_results.html" if target == "renewal-results" else "portal/renewals/list.html"
    return page(request, state.settings, principal, name, context, nav="renewals")
