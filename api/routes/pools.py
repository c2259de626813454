"""Pools of a company (seed 000): `POST /api/v1/pools` creates one on a pool plan and starts its subscription
workflow (`subscription/{org}/pool-{pool}`, which pays the first period at once); lines join and leave with
`POST /api/v1/pools/{id}/members` and `DELETE /api/v1/pools/{id}/members/{line_id}`; `GET /api/v1/pools/{id}`
shows the members, what the next renewal would charge and grant, and the subscription."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import AppState, PrincipalDep, SessionDep, StateDep
from api.guard import audit_note
from api.routes.lines import load_line, send_compensation_answer
from api.schemas import Request
from domain.authz import Action, Principal, TenantChain, authorize
from domain.enums import LineStatus
from domain.errors import NotFound
from domain.lifecycle_contracts import ResolveCompensation
from domain.models import Company, Line, Plan, Pool, Subscription
from domain.pools import pool_owner_id, pool_renewal
from domain.services.pools import add_member, create_pool, members_of, remove_member
from domain.subscription_contracts import subscription_workflow_id
from infra.temporal import workflow_ui_url
from starters.subscriptions import start_pool_subscription

router = APIRouter(prefix="/api/v1/pools", tags=["Pools"])


class PoolCreate(Request):
    company_id: str = Field(min_length=1, max_length=32, description="L'entreprise du pool (une seule)")
    name: str = Field(min_length=1, max_length=200)
    plan_id: str = Field(
        min_length=1,
        max_length=32,
        description="Forfait de pool : statique (prix et données fixes) ou dynamique (prix et données par SIM)",
    )


class PoolMemberAdd(Request):
    line_id: str = Field(min_length=1, max_length=32, description="Ligne active de l'entreprise du pool")


class PoolMemberOut(BaseModel):
    line_id: str
    msisdn: str
    status: str


class PoolRenewalOut(BaseModel):
    members: int = Field(description="Lignes actives comptées au prochain renouvellement")
    amount_minor: int
    data_bytes: int
    currency: str


class PoolSubscriptionOut(BaseModel):
    period: int
    next_renewal_on: date
    status: str
    auto_renew_mode: str
    payment_method: str
    dunning_stage: str | None


class PoolOut(BaseModel):
    id: str
    org_id: str
    company_id: str
    name: str
    kind: str
    plan_id: str | None
    plan_name: str | None
    price_minor: int = Field(description="Prix du forfait : par pool (statique) ou par SIM (dynamique)")
    data_bytes: int = Field(description="Données du forfait : par pool (statique) ou par SIM (dynamique)")
    ocs_account: str | None = Field(description="Compte OCS du pool : le solde partagé de ses lignes")
    members: list[PoolMemberOut]
    next_renewal: PoolRenewalOut
    subscription: PoolSubscriptionOut | None = Field(description="None tant que le workflow ne l'a pas ouvert")
    workflow_id: str
    workflow_url: str


async def _pool(session: AsyncSession, principal: Principal, pool_id: str, action: Action) -> Pool:
    pool = await session.get(Pool, pool_id) if len(pool_id) <= 32 else None
    if pool is None:
        raise NotFound(None, "pool introuvable")
    authorize(principal, action, TenantChain(pool.org_id, pool.company_id), "pool")
    return pool


async def resolve_pool_compensation(
    session: AsyncSession, state: AppState, principal: Principal, pool_id: str, answer: ResolveCompensation
) -> str:
    """The `resolve_compensation` Update of the pool's subscription whose renewal refund failed for good:
    `retry` the refund, or `resolved_manually`."""
    pool = await _pool(session, principal, pool_id, Action.WRITE)
    workflow_id = subscription_workflow_id(pool.org_id, pool_owner_id(pool.id))
    return await send_compensation_answer(state, workflow_id, answer)


async def pool_out(session: AsyncSession, state: AppState, pool: Pool) -> PoolOut:
    plan = await session.get(Plan, pool.plan_id) if pool.plan_id else None
    members = await members_of(session, pool.id)
    active = sum(1 for line in members if line.status == LineStatus.ACTIVE)
    price, data = (plan.price_minor, plan.data_allowance_bytes) if plan else (0, 0)
    renewal = pool_renewal(pool.kind, price_minor=price, data_bytes=data, members=active)
    sub = await session.scalar(select(Subscription).where(Subscription.pool_id == pool.id))
    wf_id = subscription_workflow_id(pool.org_id, pool_owner_id(pool.id))
    return PoolOut(
        id=pool.id,
        org_id=pool.org_id,
        company_id=pool.company_id,
        name=pool.name,
        kind=pool.kind,
        plan_id=pool.plan_id,
        plan_name=plan.name if plan else None,
        price_minor=price,
        data_bytes=data,
        ocs_account=pool.ocs_account,
        members=[PoolMemberOut(line_id=line.id, msisdn=line.msisdn, status=line.status) for line in members],
        next_renewal=PoolRenewalOut(
            members=active,
            amount_minor=renewal.amount_minor,
            data_bytes=renewal.data_bytes,
            currency=plan.currency if plan else "EUR",
        ),
        subscription=PoolSubscriptionOut(
            period=sub.period,
            next_renewal_on=sub.next_renewal_on,
            status=sub.status,
            auto_renew_mode=sub.auto_renew_mode,
            payment_method=sub.payment_method,
            dunning_stage=sub.dunning_stage,
        )
        if sub
        else None,
        workflow_id=wf_id,
        workflow_url=workflow_ui_url(state.settings, wf_id),
    )


@router.post("", status_code=201, response_model=PoolOut)
async def create(body: PoolCreate, principal: PrincipalDep, session: SessionDep, state: StateDep) -> PoolOut:
    """A pool of one company on a pool plan; its subscription workflow starts and pays the first period."""
    company = await session.get(Company, body.company_id)
    try:
        if company is None:
            raise NotFound(None, "entreprise introuvable")
        authorize(principal, Action.WRITE, TenantChain(company.org_id, company.id), "entreprise")
    except NotFound as err:
        raise NotFound("company_id", "entreprise introuvable") from err
    pool = await create_pool(session, company=company, name=body.name, plan_id=body.plan_id)
    await session.commit()  # the workflow's first activity reads the pool
    await start_pool_subscription(await state.temporal(), state.settings, pool)
    audit_note(action="pool.created", target=f"pool:{pool.id}", org_id=pool.org_id, company_id=pool.company_id)
    return await pool_out(session, state, pool)


@router.get("/{pool_id}", response_model=PoolOut)
async def get(pool_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep) -> PoolOut:
    """The pool, its members, what its next renewal charges and grants, and its subscription."""
    return await pool_out(session, state, await _pool(session, principal, pool_id, Action.READ))


@router.post("/{pool_id}/members", response_model=PoolOut)
async def add(
    pool_id: str, body: PoolMemberAdd, principal: PrincipalDep, session: SessionDep, state: StateDep, response: Response
) -> PoolOut:
    """Adds an active line of the pool's company, in no other pool (201; 200 if it was a member already).
    It counts from the pool's next renewal and its usage draws on the pool's OCS account."""
    pool = await _pool(session, principal, pool_id, Action.WRITE)
    try:
        line = await load_line(session, principal, body.line_id, Action.WRITE)
    except NotFound as err:
        raise NotFound("line_id", "ligne introuvable") from err
    added = await add_member(session, pool, line)
    response.status_code = 201 if added else 200
    audit_note(action="pool.member_added", target=f"pool:{pool.id}", line_id=line.id, org_id=pool.org_id)
    await session.flush()
    return await pool_out(session, state, pool)


@router.delete("/{pool_id}/members/{line_id}", response_model=PoolOut)
async def remove(pool_id: str, line_id: str, principal: PrincipalDep, session: SessionDep, state: StateDep) -> PoolOut:
    """Takes the line out of the pool: it no longer counts at the pool's next renewal."""
    pool = await _pool(session, principal, pool_id, Action.WRITE)
    line: Line = await load_line(session, principal, line_id, Action.WRITE)
    remove_member(pool, line)
    audit_note(action="pool.member_removed", target=f"pool:{pool.id}", line_id=line.id, org_id=pool.org_id)
    await session.flush()
    return await pool_out(session, state, pool)
