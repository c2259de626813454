from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PrincipalDep, SessionDep, StateDep
from api.guard import audit_note
from api.schemas import (
    CompanyCreate,
    CompanyCreated,
    CompanyOut,
    CompanyPage,
    CompanyUpdate,
    page_cursor,
    text_query,
)
from domain.authz import Action, Principal, TenantChain, authorize, scope_org_id
from domain.errors import NotFound, PermissionDenied
from domain.models import Company
from domain.pagination import ID_DIGITS, by_id
from domain.services.companies import cfast_customer_input, create_company, update_company
from domain.services.listings import companies_query
from infra.temporal import workflow_ui_url
from starters.companies import start_cfast_customer
from workflows.cfast_customer import workflow_id as cfast_workflow_id

router = APIRouter(prefix="/api/v1/companies", tags=["Entreprises"])


def _require_org_level(principal: Principal, what: str = "créer") -> None:
    if principal.company_id is not None:
        raise PermissionDenied(None, f"seul le personnel de l'organisation peut {what} une entreprise")


@router.post("", status_code=201, response_model=CompanyCreated)
async def create(body: CompanyCreate, principal: PrincipalDep, session: SessionDep, state: StateDep) -> CompanyCreated:
    _require_org_level(principal)
    org_id = scope_org_id(principal, body.org_id)
    authorize(principal, Action.WRITE, TenantChain(org_id=org_id), "organisation")
    company, site, parc = await create_company(session, org_id=org_id, **body.model_dump(exclude={"org_id"}))
    data = cfast_customer_input(company, site, parc)
    company.cfast_workflow_id = cfast_workflow_id(org_id, company.id)
    await session.commit()  # the workflow's activities read what was just written
    wf_id = await start_cfast_customer(await state.temporal(), state.settings, data)
    return CompanyCreated(
        **CompanyOut.model_validate(company).model_dump(),
        workflow_id=wf_id,
        workflow_url=workflow_ui_url(state.settings, wf_id),
    )


@router.get("", response_model=CompanyPage)
async def list_companies(
    principal: PrincipalDep,
    session: SessionDep,
    name: Annotated[str | None, text_query("Partie du nom (sans distinction de casse)", 200)] = None,
    is_virtual: Annotated[bool | None, Query(description="Entreprises virtuelles (true) ou réelles (false)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> CompanyPage:
    """The companies the caller can see, by id; `next_cursor` gives the next page."""
    keyset = by_id(Company.id)
    query = keyset.apply(companies_query(principal, name=name, is_virtual=is_virtual), cursor, limit)
    items, next_cursor = keyset.page(list((await session.execute(query)).scalars()), limit, lambda c: c.id)
    return CompanyPage(items=[CompanyOut.model_validate(c) for c in items], next_cursor=next_cursor)


@router.get("/{company_id}", response_model=CompanyOut)
async def get(company_id: str, principal: PrincipalDep, session: SessionDep) -> Company:
    company = await session.get(Company, company_id)
    if company is None:
        raise NotFound(None, "entreprise introuvable")
    authorize(principal, Action.READ, TenantChain(company.org_id, company.id), "entreprise")
    return company


@router.patch("/{company_id}", response_model=CompanyOut)
async def update(company_id: str, body: CompanyUpdate, principal: PrincipalDep, session: SessionDep) -> Company:
    """Changes the fields sent (name, SIRET, VAT number, billing e-mail, address). CFAST has no update of a
    customer account: a company already synced keeps its CFAST record as created."""
    _require_org_level(principal, "modifier")
    company = await session.get(Company, company_id)
    if company is None:
        raise NotFound(None, "entreprise introuvable")
    authorize(principal, Action.WRITE, TenantChain(company.org_id, company.id), "entreprise")
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    changed = await update_company(session, company, changes)
    audit_note(
        action="company.updated",
        target=f"company:{company.id}",
        org_id=company.org_id,
        company_id=company.id,
        fields=changed,
    )
    return company
