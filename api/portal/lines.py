"""Portal "Lignes": the list (filters in the URL, cursor, CSV export of the API), the line page with its tabs,
the line actions (recharge, suspend/resume, plan change, termination with grace period and its
cancellation, the subscription's "renew now" and auto-renew mode) and the activation of a SIM with its live
progress.

Every action goes through the function the JSON route uses (`api.routes.lines`, `api.routes.recharges`,
`api.subscriptions`),
which starts or updates the same workflows; nothing here talks to a workflow another way.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import pydantic
from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from activities.subscriptions import renews
from api.deps import AppState, SessionDep, StateDep
from api.line_schemas import ActivationCreate, TerminationCreate
from api.portal.recharges import METHOD_LABELS_FR, PAYMENT_LABELS_FR, STATUS_LABELS_FR
from api.portal.renewals import AUTO_RENEW_LABELS_FR, DUNNING_STAGE_LABELS_FR, SUBSCRIPTION_STATUS_LABELS_FR
from api.portal.routes import page
from api.portal.security import CsrfChecked, PortalNotFound, PortalPrincipalDep, PortalRoute
from api.routes.lines import (
    LineFilters,
    cancel_line_termination,
    load_line,
    request_activation,
    request_termination,
    start_operation,
)
from api.subscriptions import SubscriptionOut, change_auto_renew, renew_line, subscription_out
from api.topups import recharge_line
from domain.authz import Action, Principal
from domain.enums import BusinessStatus, LineStatus, PaymentMethod, SimStatus, TopUpSource
from domain.errors import DomainError, NotFound, ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_iccid, normalize_msisdn
from domain.lifecycle_contracts import AttentionState
from domain.models import Company, EndUser, Line, Plan, SimCard, TopUp, UpdateRecord
from domain.pagination import by_id
from domain.services import listings
from domain.services.lines import line_journal
from domain.services.pools import rated_account
from infra.settings import Settings
from integrations.errors import IntegrationError
from integrations.ocs import OcsClient, bytes_to_mb
from workflows._search import BUSINESS_STATUS

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

LINE_TABS = {
    "status": "Statut",
    "plan": "Forfait et options",
    "ocs": "Soldes OCS",
    "maj": "Historique MAJ",
    "journal": "Journal",
    "recharges": "Recharges",
    "workflows": "Processus",
}
PAGE_SIZE = 50
GRACE_CHOICES = (0, 7, 14, 30)

# The business statuses the line workflows publish (`LineSaga._set_status`), in French.
WORKFLOW_STATUS_FR: dict[str, str] = {
    BusinessStatus.STARTING: "Démarrage",
    BusinessStatus.RESERVING_SIM: "Réservation de la SIM",
    BusinessStatus.ALLOCATING_NUMBER: "Attribution du numéro",
    BusinessStatus.CREATING_SUPPLIER_LINE: "Création de la ligne chez SNAIC",
    BusinessStatus.CREATING_OCS_ACCOUNT: "Compte OCS et solde du forfait",
    BusinessStatus.CREATING_BILLING_LINE: "Ligne de service CFAST",
    BusinessStatus.READY_FOR_ACTIVATION: "Ligne prête",
    BusinessStatus.COMPENSATING: "Annulation des étapes réalisées",
    BusinessStatus.FAILED: "Échec",
    BusinessStatus.CANCELLED: "Annulé",
    BusinessStatus.NEEDS_ATTENTION: "Intervention requise",
    BusinessStatus.SCHEDULED: "Résiliation programmée",
    BusinessStatus.GRACE_PERIOD: "Délai de grâce",
    BusinessStatus.TERMINATING: "Résiliation en cours",
    BusinessStatus.TERMINATED: "Résiliée",
    BusinessStatus.COMPLETED: "Terminé",
    BusinessStatus.REFUSED: "Refusé",
    BusinessStatus.QUARANTINE: "Quarantaine du numéro",
    BusinessStatus.RELEASED: "Numéro libéré",
    BusinessStatus.PENDING: "En attente",
    BusinessStatus.CHARGED: "Payée, provisionnement en cours",
    BusinessStatus.REFUNDED: "Remboursée",
}
# What an action answers on the line page (a key in the URL, never free text).
NOTICES = {
    "suspend": "Suspension demandée : le processus suit dans l'onglet Processus.",
    "resume": "Réactivation demandée : le processus suit dans l'onglet Processus.",
    "change_plan": "Changement de forfait demandé : le processus suit dans l'onglet Processus.",
    "termination": "Résiliation demandée.",
    "termination_cancelled": "Résiliation annulée : la ligne reste en service.",
    "retry": "Nouvelle tentative demandée.",
    "renewed": "Renouvellement payé : la période suivante est ouverte.",
    "renewal_replayed": "Ce renouvellement avait déjà été payé : rien n'a été débité de nouveau.",
    "auto_renew": "Mode de renouvellement enregistré.",
}


def _reason(err: DomainError) -> str:
    return err.reason if err.field is None else f"{err.field} : {err.reason}"


# --- list ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineListParams:
    status: str = ""
    company_id: str = ""
    plan_id: str = ""
    q: str = ""

    def as_query(self, **extra: str | None) -> dict[str, str]:
        merged = {"status": self.status, "company_id": self.company_id, "plan_id": self.plan_id, "q": self.q, **extra}
        return {k: v for k, v in merged.items() if v}

    def url(self, **extra: str | None) -> str:
        query = self.as_query(**extra)
        return "/portal/lines" + (f"?{urlencode(query)}" if query else "")

    def filters(self) -> tuple[LineFilters, str | None]:
        """The API's filters; the search box takes a line number (any notation) or an ICCID."""
        iccid = msisdn = None
        problem = None
        search = self.q.strip()
        if search:
            try:
                msisdn = normalize_msisdn(search)
            except InvalidIdentifier:
                try:
                    iccid = normalize_iccid(search)
                except InvalidIdentifier:
                    problem = "Recherche : saisissez un numéro de ligne (06…, +33…) ou un ICCID complet."
        try:
            status = LineStatus(self.status) if self.status else None
        except ValueError:
            status = None
        filters = LineFilters(
            status=status,
            company_id=self.company_id or None,
            plan_id=self.plan_id or None,
            iccid=iccid,
            msisdn=msisdn,
        )
        return filters, problem


@router.get("/lines")
async def lines(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    status: Annotated[str, Query(max_length=32)] = "",
    company_id: Annotated[str, Query(max_length=32)] = "",
    plan_id: Annotated[str, Query(max_length=32)] = "",
    q: Annotated[str, Query(max_length=40)] = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    params = LineListParams(status=status, company_id=company_id, plan_id=plan_id, q=q.strip())
    filters, problem = params.filters()
    rows: list[Any] = []
    next_cursor = None
    if problem is None:
        keyset = by_id(Line.id)
        query = (
            filters.query(principal)
            .join(Company, Company.id == Line.company_id)
            .outerjoin(Plan, Plan.id == Line.plan_id)
            .add_columns(Company.name, Plan.name)
        )
        try:
            found = (await session.execute(keyset.apply(query, cursor or None, PAGE_SIZE))).all()
        except DomainError as err:  # a tampered cursor: the first page
            problem = _reason(err)
            found = []
        rows, next_cursor = keyset.page(found, PAGE_SIZE, lambda row: row[0].id)
    export_query = {k: v for k, v in params.as_query().items() if k != "q"}
    if filters.iccid:
        export_query["iccid"] = filters.iccid
    if filters.msisdn:
        export_query["msisdn"] = filters.msisdn
    context: dict[str, Any] = {
        "rows": rows,
        "params": params,
        "problem": problem,
        "statuses": list(LineStatus),
        "options": await _filter_options(session, principal),
        "next_url": params.url(cursor=next_cursor) if next_cursor else None,
        "first_url": params.url() if cursor else None,
        "export_url": "/api/v1/lines/export.csv" + (f"?{urlencode(export_query)}" if export_query else ""),
    }
    target = request.headers.get("HX-Target") if request.headers.get("HX-Request") else None
    name = "portal/lines/_results.html" if target == "line-results" else "portal/lines/list.html"
    return page(request, state.settings, principal, name, context, nav="lines")


async def _filter_options(session: AsyncSession, principal: Principal) -> dict[str, list[tuple[str, str]]]:
    companies = listings.companies_query(principal).order_by(Company.name).limit(500)
    plans = listings.plans_query(principal).order_by(Plan.name).limit(500)
    return {
        "companies": [(c.id, c.name) for c in (await session.execute(companies)).scalars()],
        "plans": [(p.id, p.name) for p in (await session.execute(plans)).scalars()],
    }


# --- line page -------------------------------------------------------------------------------------


async def _ocs_balances(settings: Settings, account_name: str | None) -> dict[str, Any]:
    """Read from the OCS on display (its balances are the truth for what is left). `account_name` is the
    account the line's usage draws on (`domain.services.pools.rated_account`: its pool's for a member)."""
    if not account_name:
        return {"error": "Cette ligne n'a pas de compte OCS.", "balances": [], "data_left_mb": None}
    try:
        async with OcsClient(settings.ocs_url, settings.ocs_tenant, 5.0) as ocs:
            account = await ocs.get_account(account_name)
    except IntegrationError as err:
        return {"error": f"OCS injoignable : {err}", "balances": [], "data_left_mb": None}
    if account is None:
        return {"error": "Compte OCS introuvable.", "balances": [], "data_left_mb": None}
    balances = sorted(account.balances, key=lambda b: (b.expires_at is None, b.expires_at or datetime.max))
    return {
        "error": None,
        "disabled": account.disabled,
        "balances": [
            {
                "id": b.id,
                "type": b.balance_type,
                "mb": bytes_to_mb(b.value) if b.balance_type == "*data" else None,
                "value": b.value,
                "expires_at": b.expires_at,
                "expired": b.expired(),
                "disabled": b.disabled,
            }
            for b in balances
        ],
        "data_left_mb": bytes_to_mb(account.total("*data")),
        "next_expiry": min((b.expires_at for b in account.balances if b.expires_at and not b.expired()), default=None),
    }


async def _line_workflows(state: AppState, line: Line) -> dict[str, Any]:
    """The line's workflows from Temporal's visibility, by the keyed hash of its number (or the SIM's ICCID)."""
    query = f'MsisdnHash="{state.settings.msisdn_hash(line.msisdn)}"' if line.msisdn else ""
    items: list[dict[str, Any]] = []
    error = None
    if query:
        try:
            client = await state.temporal()
            async for execution in client.list_workflows(query, limit=50):
                business = execution.typed_search_attributes.get(BUSINESS_STATUS)
                items.append(
                    {
                        "id": execution.id,
                        "type": execution.workflow_type,
                        "started": execution.start_time,
                        "closed": execution.close_time,
                        "execution": execution.status.name if execution.status else "",
                        "business": business or "",
                    }
                )
        except (RPCError, OSError, TimeoutError, RuntimeError) as err:
            error = f"Temporal injoignable : {err}"
    items.sort(key=lambda w: w["started"], reverse=True)
    return {"items": items, "error": error, "query": query}


async def _line_view(session: AsyncSession, principal: Principal, line_id: str) -> dict[str, Any]:
    try:
        line = await load_line(session, principal, line_id[:32], Action.READ)
    except DomainError as err:
        raise PortalNotFound("Cette ligne n'existe pas ou n'est pas accessible avec votre compte.") from err
    sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
    company = await session.get(Company, line.company_id)
    plan = await session.get(Plan, line.plan_id) if line.plan_id else None
    end_user = await session.get(EndUser, line.end_user_id) if line.end_user_id else None
    plans = listings.plans_query(principal, company_id=line.company_id).where(Plan.org_id == line.org_id)
    return {
        "line": line,
        "sim": sim,
        "company": company,
        "plan": plan,
        "end_user": end_user,
        "plans": list((await session.execute(plans.order_by(Plan.name).limit(200))).scalars()),
        "grace_choices": GRACE_CHOICES,
        "termination_pending": line.termination_scheduled_for is not None and line.status is not LineStatus.TERMINATED,
        "live": line.status in (LineStatus.ACTIVE, LineStatus.SUSPENDED, LineStatus.INACTIVE),
    }


async def _subscription(session: AsyncSession, state: AppState, line: Line) -> SubscriptionOut | None:
    """The line's subscription as `GET /api/v1/lines/{id}/subscription` reads it; None before it is opened."""
    try:
        return await subscription_out(session, state, line)
    except NotFound:
        return None


async def _line_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    state: AppState,
    line_id: str,
    tab: str,
    *,
    problem: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    context = await _line_view(session, principal, line_id)
    line: Line = context["line"]
    tab = tab if tab in LINE_TABS else "status"
    context.update(
        tab=tab,
        tabs=LINE_TABS,
        problem=problem,
        notice=notice,
        workflow_status_fr=WORKFLOW_STATUS_FR,
        status_fr=STATUS_LABELS_FR,
        payment_fr=PAYMENT_LABELS_FR,
        method_fr=METHOD_LABELS_FR,
        payment_methods=METHOD_LABELS_FR,
        form_batch=uuid.uuid4().hex,
        journal=[],
        updates=[],
        topups=[],
        ocs=None,
        workflows=None,
        subscription=await _subscription(session, state, line),
        renewing=context["plan"] is not None and renews(line, context["plan"]),
        mode_fr=AUTO_RENEW_LABELS_FR,
        stage_fr=DUNNING_STAGE_LABELS_FR,
        subscription_status_fr=SUBSCRIPTION_STATUS_LABELS_FR,
    )
    if tab == "journal":
        context["journal"] = await line_journal(session, line.id)
    elif tab == "maj":
        updates = select(UpdateRecord).where(UpdateRecord.line_id == line.id).order_by(UpdateRecord.id.desc())
        context["updates"] = list((await session.execute(updates)).scalars())
    elif tab == "recharges":
        topups = select(TopUp).where(TopUp.line_id == line.id).order_by(TopUp.created_at.desc()).limit(200)
        context["topups"] = list((await session.execute(topups)).scalars())
    elif tab == "ocs":
        context["ocs"] = await _ocs_balances(state.settings, await rated_account(session, line))
    elif tab == "workflows":
        context["workflows"] = await _line_workflows(state, line)
    target = request.headers.get("HX-Target") if request.headers.get("HX-Request") else None
    name = "portal/lines/_tabs.html" if target == "line-tabs" else "portal/lines/detail.html"
    return page(request, state.settings, principal, name, context, nav="lines", status_code=status_code)


@router.get("/lines/{line_id}")
async def line_detail(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    tab: Annotated[str, Query(max_length=16)] = "status",
    done: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    return await _line_page(request, principal, session, state, line_id, tab, notice=NOTICES.get(done))


def _back(line_id: str, done: str, tab: str = "workflows") -> Response:
    return RedirectResponse(f"/portal/lines/{line_id}?{urlencode({'tab': tab, 'done': done})}", status_code=303)


async def _refused(
    request: Request, principal: Principal, session: AsyncSession, state: AppState, line_id: str, err: DomainError
) -> Response:
    if isinstance(err, NotFound) and err.field is None:
        raise PortalNotFound("Cette ligne n'existe pas ou n'est pas accessible avec votre compte.") from err
    await session.rollback()
    return await _line_page(
        request, principal, session, state, line_id, "status", problem=_reason(err), status_code=422
    )


def _request_key(batch: str, line_id: str, operation: str) -> str:
    """One Idempotency-Key per rendered form: a resubmitted form joins the workflow it started."""
    return hashlib.sha256(f"{batch}:{line_id}:{operation}".encode()).hexdigest()[:32]


@router.post("/lines/{line_id}/recharges", dependencies=[CsrfChecked])
async def recharge(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    data_gb: Annotated[int, Form(ge=1, le=100)],
    payment_method: Annotated[PaymentMethod, Form()] = PaymentMethod.CARD,
    batch: Annotated[str, Form(pattern=r"^[a-f0-9]{32}$")] = "",
) -> Response:
    """The "Recharge DATA" of the line: the same top-up workflow as the API and the SIM list's form."""
    await session.commit()  # release the connection while the payment is decided
    key = "line" + _request_key(batch or uuid.uuid4().hex, line_id, "recharge")[:28]
    try:
        out, _ = await recharge_line(
            session, state, principal, line_id, data_gb, payment_method, key, TopUpSource.PORTAL
        )
    except DomainError as err:
        return await _refused(request, principal, session, state, line_id, err)
    return RedirectResponse(f"/portal/recharges/{out.recharge_id}", status_code=303)


async def _operation(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    state: AppState,
    line_id: str,
    operation: str,
    batch: str,
    plan_id: str | None = None,
) -> Response:
    key = _request_key(batch or uuid.uuid4().hex, line_id, operation)
    try:
        await start_operation(line_id, operation, principal, session, state, key, plan_id=plan_id)
    except DomainError as err:
        return await _refused(request, principal, session, state, line_id, err)
    return _back(line_id, operation)


@router.post("/lines/{line_id}/suspension", dependencies=[CsrfChecked])
async def suspend(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    batch: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    return await _operation(request, principal, session, state, line_id, "suspend", batch)


@router.post("/lines/{line_id}/resumption", dependencies=[CsrfChecked])
async def resume(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    batch: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    return await _operation(request, principal, session, state, line_id, "resume", batch)


@router.post("/lines/{line_id}/plan-change", dependencies=[CsrfChecked])
async def change_plan(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    plan_id: Annotated[str, Form(max_length=32)] = "",
    batch: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    return await _operation(request, principal, session, state, line_id, "change_plan", batch, plan_id=plan_id)


@router.post("/lines/{line_id}/termination", dependencies=[CsrfChecked])
async def terminate(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    grace_days: Annotated[int, Form(ge=0, le=30)] = 0,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        body = TerminationCreate(grace_days=grace_days, reason=reason)
    except pydantic.ValidationError as err:
        problem = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        return await _line_page(request, principal, session, state, line_id, "status", problem=problem, status_code=422)
    try:
        await request_termination(session, state, principal, line_id, body)
    except DomainError as err:
        return await _refused(request, principal, session, state, line_id, err)
    return _back(line_id, "termination", tab="status")


@router.post("/lines/{line_id}/termination/cancellation", dependencies=[CsrfChecked])
async def cancel_termination(
    line_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    try:
        await cancel_line_termination(session, state, principal, line_id)
    except DomainError as err:
        return await _refused(request, principal, session, state, line_id, err)
    return _back(line_id, "termination_cancelled", tab="status")


@router.post("/lines/{line_id}/renewals", dependencies=[CsrfChecked])
async def renew_now(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    batch: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """ "Renouveler maintenant": the API's renew now (`renew_line`), keyed by the rendered form, so a double
    click or a resubmitted form answers the first renewal and pays nothing more."""
    key = "portal-" + _request_key(batch or uuid.uuid4().hex, line_id, "renew_now")
    try:
        _, created = await renew_line(session, state, principal, line_id, key)
    except DomainError as err:
        return await _refused(request, principal, session, state, line_id, err)
    return _back(line_id, "renewed" if created else "renewal_replayed", tab="status")


@router.post("/lines/{line_id}/auto-renew", dependencies=[CsrfChecked])
async def set_auto_renew(
    line_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    mode: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """The auto-renew switch: the API's `set_auto_renew` Update (`change_auto_renew`)."""
    try:
        await load_line(session, principal, line_id[:32], Action.WRITE)
        if mode not in AUTO_RENEW_LABELS_FR:
            raise ValidationFailed("mode", "choisissez Automatique, Sur demande ou Désactivé")
        await change_auto_renew(session, state, principal, line_id, mode)
    except DomainError as err:
        return await _refused(request, principal, session, state, line_id, err)
    return _back(line_id, "auto_renew", tab="status")


# --- activation ------------------------------------------------------------------------------------


async def _activation_form_context(session: AsyncSession, principal: Principal, iccid: str) -> dict[str, Any]:
    try:
        normalised = normalize_iccid(iccid[:40])
    except InvalidIdentifier as exc:
        raise PortalNotFound("Cette carte SIM n'existe pas ou n'est pas accessible avec votre compte.") from exc
    sim = (await session.execute(select(SimCard).where(SimCard.iccid == normalised))).scalars().first()
    if sim is None:
        raise PortalNotFound("Cette carte SIM n'existe pas ou n'est pas accessible avec votre compte.")
    companies = listings.companies_query(principal).where(Company.org_id == sim.org_id).order_by(Company.name)
    plans = listings.plans_query(principal).where(Plan.org_id == sim.org_id).order_by(Plan.name)
    users = listings.end_users_query(principal).where(EndUser.org_id == sim.org_id).order_by(EndUser.email)
    return {
        "sim": sim,
        "companies": list((await session.execute(companies.limit(500))).scalars()),
        "plans": list((await session.execute(plans.limit(500))).scalars()),
        "end_users": list((await session.execute(users.limit(500))).scalars()),
        "activable": sim.status is SimStatus.BLANK,
        "errors": {},
        "form": {"number_mode": "new"},
    }


@router.get("/sims/{iccid}/activation")
async def activation_form(
    iccid: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    context = await _activation_form_context(session, principal, iccid)
    return page(request, state.settings, principal, "portal/lines/activation_form.html", context, nav="sims")


@router.post("/sims/{iccid}/activation", dependencies=[CsrfChecked])
async def activate(
    iccid: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    company_id: Annotated[str, Form(max_length=32)] = "",
    end_user_id: Annotated[str, Form(max_length=32)] = "",
    plan_id: Annotated[str, Form(max_length=32)] = "",
    number_mode: Annotated[str, Form(max_length=16)] = "new",
    msisdn: Annotated[str, Form(max_length=20)] = "",
    port_msisdn: Annotated[str, Form(max_length=20)] = "",
    rio: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """The API's activation (`request_activation`): intent in the database, then the activation workflow."""
    form = {
        "company_id": company_id,
        "end_user_id": end_user_id,
        "plan_id": plan_id,
        "number_mode": number_mode,
        "msisdn": msisdn,
        "port_msisdn": port_msisdn,
        "rio": rio,
    }
    errors: dict[str, str] = {}
    body = None
    payload: dict[str, Any] = {"company_id": company_id, "plan_id": plan_id, "end_user_id": end_user_id or None}
    if number_mode == "port_in":
        payload["port_in"] = {"msisdn": port_msisdn, "rio": rio.strip().upper()}
    elif msisdn.strip():
        payload["msisdn"] = msisdn.strip()
    try:
        body = ActivationCreate.model_validate(payload)
    except pydantic.ValidationError as err:
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "formulaire"
            errors[loc] = str(e["msg"]).removeprefix("Value error, ")
    if body is not None:
        try:
            accepted = await request_activation(session, state, principal, iccid, body)
        except DomainError as err:
            if isinstance(err, NotFound) and err.field is None:
                raise PortalNotFound("Cette carte SIM n'existe pas ou n'est pas accessible avec votre compte.") from err
            await session.rollback()
            errors[err.field or "formulaire"] = err.reason
        else:
            return RedirectResponse(f"/portal/lines/{accepted.line_id}/activation", status_code=303)
    context = await _activation_form_context(session, principal, iccid)
    context.update(errors=errors, form=form)
    return page(
        request, state.settings, principal, "portal/lines/activation_form.html", context, nav="sims", status_code=422
    )


async def _activation_view(
    session: AsyncSession, state: AppState, principal: Principal, line_id: str
) -> dict[str, Any]:
    context = await _line_view(session, principal, line_id)
    line: Line = context["line"]
    business = ""
    if line.activation_workflow_id and line.status is LineStatus.UNDER_CONSTRUCTION:
        try:
            client = await state.temporal()
            business = await client.get_workflow_handle(line.activation_workflow_id).query("business_status")
        except (RPCError, OSError, TimeoutError, RuntimeError):
            business = ""
    attention = None
    if line.activation_workflow_id and line.status is LineStatus.OBSOLETE:
        try:  # a compensation that failed for good waits for staff (home queue)
            client = await state.temporal()
            handle = client.get_workflow_handle(line.activation_workflow_id)
            attention = (await handle.query("attention_state", result_type=AttentionState)).attention
        except (RPCError, OSError, TimeoutError, RuntimeError):
            attention = None
    context.update(
        attention=attention,
        business=business,
        workflow_status_fr=WORKFLOW_STATUS_FR,
        running=line.status is LineStatus.UNDER_CONSTRUCTION,
        succeeded=line.status is LineStatus.ACTIVE,
    )
    return context


@router.get("/lines/{line_id}/activation")
async def activation_progress(
    line_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """The activation followed live: polled every second by htmx until the line is active or has failed."""
    context = await _activation_view(session, state, principal, line_id)
    partial = request.headers.get("HX-Request") == "true"
    name = "portal/lines/_activation_progress.html" if partial else "portal/lines/activation.html"
    return page(request, state.settings, principal, name, context, nav="lines")
