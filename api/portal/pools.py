"""Portal "Pools" of a company (seed 000): the company's pools, a new pool on a pool plan (its subscription
workflow starts and pays the first period), and a pool's page: members, what the next renewal charges and
grants, its subscription and its workflow in the Temporal UI; lines join and leave from there.

Every write calls the API's handler (`api.routes.pools`), so the checks, the scoping, the messages and the
audit row are the API's; the paths carry the `pools` segment, so the guard asks for the same area (Pools)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy import func, select

from api.deps import SessionDep, StateDep
from api.portal.renewals import DUNNING_STAGE_LABELS_FR, SUBSCRIPTION_STATUS_LABELS_FR
from api.portal.routes import page
from api.portal.security import CsrfChecked, PortalNotFound, PortalPrincipalDep, PortalRoute
from api.routes import pools as pools_api
from domain.authz import Action, Area, Principal, TenantChain, authorize
from domain.enums import LineStatus, SubscriptionKind
from domain.errors import DomainError, NotFound
from domain.models import Company, Line, Plan, Pool

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

POOL_PLAN_KINDS = (SubscriptionKind.STATIC_POOL, SubscriptionKind.DYNAMIC_POOL)
KIND_FR = {"static": "Statique (prix et données par pool)", "dynamic": "Dynamique (prix et données par SIM)"}
FIELD_FR = {"name": "Nom", "plan_id": "Forfait", "line_id": "Ligne", "company_id": "Entreprise"}
LINE_CHOICES = 500


def _message(field: str | None, reason: str) -> str:
    label = FIELD_FR.get(field or "")
    return f"{label} : {reason}" if label else reason


def _form_error(err: ValidationError | DomainError) -> str:
    if isinstance(err, DomainError):
        return _message(err.field, err.reason)
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    return _message(loc[0] if loc else None, str(first.get("msg", "")).removeprefix("Value error, "))


async def _company(session: SessionDep, principal: Principal, company_id: str) -> Company:
    company = await session.get(Company, company_id[:64])
    if company is None:
        raise PortalNotFound()
    try:
        authorize(principal, Action.READ, TenantChain(company.org_id, company.id), "entreprise")
    except DomainError as err:
        raise PortalNotFound() from err
    return company


async def _pool_plans(session: SessionDep, company: Company) -> list[Plan]:
    """The plans a pool of `company` may use: pool plans of its organisation, general or its own."""
    query = (
        select(Plan)
        .where(
            Plan.org_id == company.org_id,
            (Plan.company_id.is_(None)) | (Plan.company_id == company.id),
            Plan.subscription_kind.in_(POOL_PLAN_KINDS),
        )
        .order_by(Plan.name)
    )
    return list((await session.execute(query)).scalars())


async def _pools_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    state: StateDep,
    company: Company,
    *,
    error: str | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    pools = list(
        (await session.execute(select(Pool).where(Pool.company_id == company.id).order_by(Pool.name))).scalars()
    )
    counts: dict[str, int] = {}
    if pools:
        query = select(Line.pool_id, func.count()).where(Line.pool_id.in_([p.id for p in pools])).group_by(Line.pool_id)
        counts = {pool_id: n for pool_id, n in (await session.execute(query)).all() if pool_id}
    plans = await _pool_plans(session, company)
    context: dict[str, Any] = {
        "company": company,
        "pools": pools,
        "counts": counts,
        "plan_names": {p.id: p.name for p in plans},
        "plans": plans,
        "kind_fr": KIND_FR,
        "error": error,
        "typed": typed or {},
        "can_write": principal.may(Area.POOL, Action.WRITE),
    }
    return page(
        request, state.settings, principal, "portal/pools/list.html", context, nav="companies", status_code=status_code
    )


@router.get("/companies/{company_id}/pools")
async def company_pools(
    company_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    company = await _company(session, principal, company_id)
    return await _pools_page(request, principal, session, state, company)


@router.post("/companies/{company_id}/pools", dependencies=[CsrfChecked])
async def company_pool_create(
    company_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    name: Annotated[str, Form(max_length=400)] = "",
    plan_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    company = await _company(session, principal, company_id)
    typed = {"name": name, "plan_id": plan_id}
    try:
        body = pools_api.PoolCreate(company_id=company.id, name=name.strip(), plan_id=plan_id)
        created = await pools_api.create(body, principal, session, state)
    except (ValidationError, DomainError) as err:
        await session.rollback()  # a refused pool writes nothing
        company = await _company(session, principal, company_id)  # reloaded after the rollback
        return await _pools_page(
            request, principal, session, state, company, error=_form_error(err), typed=typed, status_code=422
        )
    return RedirectResponse(f"/portal/pools/{created.id}?created=1", status_code=303)


async def _pool_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    state: StateDep,
    pool_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    pool = await pools_api.get(pool_id, principal, session, state)
    company = await session.get(Company, pool.company_id)
    candidates = (
        select(Line)
        .where(Line.company_id == pool.company_id, Line.status == LineStatus.ACTIVE, Line.pool_id.is_(None))
        .order_by(Line.msisdn)
        .limit(LINE_CHOICES)
    )
    context: dict[str, Any] = {
        "pool": pool,
        "company": company,
        "kind_fr": KIND_FR,
        "status_fr": SUBSCRIPTION_STATUS_LABELS_FR,
        "stage_fr": DUNNING_STAGE_LABELS_FR,
        "candidates": list((await session.execute(candidates)).scalars()),
        "error": error,
        "created": request.query_params.get("created") == "1",
        "can_write": principal.may(Area.POOL, Action.WRITE),
    }
    return page(
        request,
        state.settings,
        principal,
        "portal/pools/detail.html",
        context,
        nav="companies",
        status_code=status_code,
    )


@router.get("/pools/{pool_id}")
async def pool_detail(
    pool_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    return await _pool_page(request, principal, session, state, pool_id)


@router.post("/pools/{pool_id}/members", dependencies=[CsrfChecked])
async def pool_member_add(
    pool_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    state: StateDep,
    line_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    await pools_api.get(pool_id, principal, session, state)  # another tenant's pool: the 404 page first
    try:
        body = pools_api.PoolMemberAdd(line_id=line_id)
        await pools_api.add(pool_id, body, principal, session, state, Response())
    except (ValidationError, DomainError) as err:
        await session.rollback()
        return await _pool_page(request, principal, session, state, pool_id, error=_form_error(err), status_code=422)
    await session.commit()
    return RedirectResponse(f"/portal/pools/{pool_id}#members", status_code=303)


@router.post("/pools/{pool_id}/members/{line_id}/removal", dependencies=[CsrfChecked])
async def pool_member_remove(
    pool_id: str, line_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    await pools_api.get(pool_id, principal, session, state)
    try:
        await pools_api.remove(pool_id, line_id, principal, session, state)
    except NotFound:
        raise  # another tenant's line: the 404 page
    except DomainError as err:
        await session.rollback()
        return await _pool_page(request, principal, session, state, pool_id, error=_form_error(err), status_code=409)
    await session.commit()
    return RedirectResponse(f"/portal/pools/{pool_id}#members", status_code=303)
