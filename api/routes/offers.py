"""Plans (forfaits) and catalogue articles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep
from api.guard import audit_note
from api.schemas import (
    ArticleCreate,
    ArticleOut,
    ArticlePage,
    PlanCreate,
    PlanOut,
    PlanPage,
    PlanUpdate,
    page_cursor,
    row_id_query,
    text_query,
)
from domain.authz import Action, TenantChain, authorize, scope_org_id
from domain.enums import ArticleKind, PlanType
from domain.errors import AlreadyExists, NotFound, PermissionDenied, ValidationFailed
from domain.models import CatalogueArticle, Company, Organisation, Plan
from domain.money import MB
from domain.pagination import ID_DIGITS, by_id
from domain.services.listings import articles_query, plans_query

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


@router.patch("/plans/{plan_id}", response_model=PlanOut)
async def update_plan(plan_id: str, body: PlanUpdate, principal: PrincipalDep, session: SessionDep) -> Plan:
    """Changes the terms sent. Lines already on the plan get them at their next sale (recharge, renewal,
    plan change); what was sold keeps the terms it was sold with."""
    if principal.company_id is not None:
        raise PermissionDenied(None, "réservé au personnel de l'organisation")
    plan = await session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(None, "forfait introuvable")
    authorize(principal, Action.WRITE, TenantChain(plan.org_id, plan.company_id), "forfait")
    changes: dict[str, object] = {name: getattr(body, name) for name in body.model_fields_set}
    if "data_allowance_mb" in changes:
        changes["data_allowance_bytes"] = body.data_allowance_mb * MB
        del changes["data_allowance_mb"]
    changed = [name for name, value in changes.items() if getattr(plan, name) != value]
    for name in changed:
        setattr(plan, name, changes[name])
    await session.flush()
    audit_note(action="plan.updated", target=f"plan:{plan.id}", org_id=plan.org_id, fields=changed)
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


@router.get("/plans", response_model=PlanPage)
async def list_plans(
    principal: PrincipalDep,
    session: SessionDep,
    plan_type: PlanType | None = None,
    company_id: Annotated[
        str | None, row_id_query("Forfaits qu'une entreprise peut prendre : les siens et les forfaits généraux")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> PlanPage:
    """The plans the caller can read (the organisation's general plans, its company's own), by id."""
    keyset = by_id(Plan.id)
    query = keyset.apply(plans_query(principal, plan_type=plan_type, company_id=company_id), cursor, limit)
    items, next_cursor = keyset.page(list((await session.execute(query)).scalars()), limit, lambda p: p.id)
    return PlanPage(items=[PlanOut.model_validate(p) for p in items], next_cursor=next_cursor)


@router.get("/catalogue/articles", response_model=ArticlePage)
async def list_articles(
    principal: PrincipalDep,
    session: SessionDep,
    kind: ArticleKind | None = None,
    category: Annotated[str | None, text_query("Catégorie (sans distinction de casse)", 100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> ArticlePage:
    """The catalogue articles of the caller's organisation, by id; `next_cursor` gives the next page."""
    keyset = by_id(CatalogueArticle.id)
    query = keyset.apply(articles_query(principal, kind=kind, category=category), cursor, limit)
    items, next_cursor = keyset.page(list((await session.execute(query)).scalars()), limit, lambda a: a.id)
    return ArticlePage(items=[ArticleOut.model_validate(a) for a in items], next_cursor=next_cursor)
