"""Pools of a company (seed 000): creation on a pool plan, and membership of lines. Services take the session
and never commit; every refusal names its field and leaves the database as it was."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.enums import LineStatus, PoolKind, SubscriptionStatus
from domain.errors import ErrorCode, IllegalTransition, ValidationFailed
from domain.models import Company, Line, Plan, Pool, Subscription
from domain.pools import PLAN_KIND_OF_POOL, charging_account, pool_ocs_account

KIND_OF_PLAN = {plan_kind: pool_kind for pool_kind, plan_kind in PLAN_KIND_OF_POOL.items()}
# A line's own subscription in these states no longer charges: the line may join a pool.
CLOSED_SUBSCRIPTION_STATUSES = (SubscriptionStatus.ENDED, SubscriptionStatus.CANCELLED)


async def create_pool(session: AsyncSession, *, company: Company, name: str, plan_id: str) -> Pool:
    """A pool of `company` on a pool plan of its organisation (general or the company's); the plan's
    subscription kind makes the pool static or dynamic."""
    plan = await session.get(Plan, plan_id) if len(plan_id) <= 32 else None
    if plan is None or plan.org_id != company.org_id or plan.company_id not in (None, company.id):
        raise ValidationFailed("plan_id", "forfait introuvable", code=ErrorCode.POOL_INVALID_PLAN)
    kind = KIND_OF_PLAN.get(plan.subscription_kind) if plan.subscription_kind else None
    if kind is None:
        raise ValidationFailed(
            "plan_id",
            "le forfait n'est pas un forfait de pool (pool statique ou pool dynamique attendu)",
            code=ErrorCode.POOL_INVALID_PLAN,
        )
    pool = Pool(org_id=company.org_id, company_id=company.id, name=name, kind=PoolKind(kind), plan_id=plan.id)
    session.add(pool)
    await session.flush()
    pool.ocs_account = pool_ocs_account(pool.id)
    return pool


async def add_member(session: AsyncSession, pool: Pool, line: Line) -> bool:
    """Puts an active line of the pool's company in the pool; False when it was a member already."""
    if line.pool_id == pool.id:
        return False
    if line.org_id != pool.org_id or line.company_id != pool.company_id:
        raise _member_refused("la ligne appartient à une autre entreprise que le pool")
    if line.pool_id is not None:
        raise _member_refused("la ligne appartient déjà à un autre pool : retirez-la d'abord")
    if line.status != LineStatus.ACTIVE:
        raise _member_refused(f"la ligne doit être active (état actuel : {line.status})")
    own = await session.execute(
        select(Subscription.id).where(
            Subscription.line_id == line.id, Subscription.status.not_in(CLOSED_SUBSCRIPTION_STATUSES)
        )
    )
    if own.scalar_one_or_none() is not None:
        # Else the line would be charged twice: by its own subscription and by the pool's.
        raise _member_refused("la ligne a son propre abonnement en cours : résiliez-le avant de l'ajouter au pool")
    line.pool_id = pool.id
    return True


def remove_member(pool: Pool, line: Line) -> None:
    """Takes a line out of the pool: it no longer counts at the pool's next renewal."""
    if line.pool_id != pool.id:
        raise _member_refused("la ligne n'est pas membre de ce pool")
    line.pool_id = None


async def members_of(session: AsyncSession, pool_id: str) -> list[Line]:
    query = select(Line).where(Line.pool_id == pool_id).order_by(Line.id)
    return list((await session.execute(query)).scalars())


async def rated_account(session: AsyncSession, line: Line) -> str | None:
    """The OCS account the line's usage draws on: its pool's when it belongs to one, else its own."""
    pool = await session.get(Pool, line.pool_id) if line.pool_id else None
    return charging_account(line.ocs_account, pool.ocs_account if pool else None)


def _member_refused(reason: str) -> IllegalTransition:
    return IllegalTransition("line_id", reason, code=ErrorCode.POOL_INVALID_MEMBER)
