"""Plans (forfaits) and catalogue articles."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.authz import Action, TenantChain, authorize, scope_org_id
from api.deps import PrincipalDep, SessionDep
from api.schemas import ArticleCreate, ArticleOut, PlanCreate, PlanOut
from domain.enums import PlanType
from domain.errors import AlreadyExists, NotFound, PermissionDenied, ValidationFailed
from domain.models import CatalogueArticle, Company, Organisation, Plan
from domain.money import MB

router = APIRouter(prefix="/api/v1", tags=["Offres"])


async def _org_for_write(session: SessionDep, principal: PrincipalDep, requested: str | None) -> str:
    if principal.company_id is not None:
        raise PermissionDenied(None, "réservé au personnel de l'organisation")
    org_id = scope_org_id(principal, requested)
    if await session.get(Organisation, org_id) is None:
        raise NotFound("org_id", "organisation introuvable")
    authorize(principal, Action.WRITE, TenantChain(org_id), "organisation")
    return org_id


@router.post("/plans", status_code=201, response_model=PlanOut)
async def create_plan(body: PlanCreate, principal: PrincipalDep, session: SessionDep) -> Plan:
    org_id = await _org_for_write(session, principal, body.org_id)
    if body.company_id is not None:
        company = await session.get(Company, body.company_id)
        if company is None or company.org_id != org_id:
            raise NotFound("company_id", "entreprise introuvable")
    if body.plan_type is PlanType.SUBSCRIPTION and body.subscription_kind is None:
        raise ValidationFailed("subscription_kind", "obligatoire pour un forfait par abonnement")
    if body.plan_type is not PlanType.SUBSCRIPTION and body.subscription_kind is not None:
        raise ValidationFailed("subscription_kind", "réservé aux forfaits par abonnement")
    plan = Plan(
        org_id=org_id,
        data_allowance_bytes=body.data_allowance_mb * MB,
        **body.model_dump(exclude={"org_id", "data_allowance_mb"}),
    )
    session.add(plan)
    await session.flush()
    return plan


@router.post("/catalogue/articles", status_code=201, response_model=ArticleOut)
async def create_article(body: ArticleCreate, principal: PrincipalDep, session: SessionDep) -> CatalogueArticle:
    org_id = await _org_for_write(session, principal, body.org_id)
    exists = await session.execute(
        select(CatalogueArticle.id).where(CatalogueArticle.org_id == org_id, CatalogueArticle.code == body.code)
    )
    if exists.first():
        raise AlreadyExists("code", "un article avec ce code existe déjà")
    article = CatalogueArticle(
        org_id=org_id, data_bytes=body.data_mb * MB, **body.model_dump(exclude={"org_id", "data_mb"})
    )
    session.add(article)
    await session.flush()
    return article
