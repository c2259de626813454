from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from api.deps import PrincipalDep, SessionDep
from api.schemas import EndUserCreate, EndUserOut, EndUserPage, page_cursor, row_id_query
from domain.authz import Action, TenantChain, authorize
from domain.errors import AlreadyExists, NotFound
from domain.models import Company, EndUser, StaffUser
from domain.pagination import ID_DIGITS, by_id
from domain.security import check_password_rule, hash_password
from domain.services.listings import end_users_query

router = APIRouter(prefix="/api/v1/end-users", tags=["Utilisateurs finaux"])


@router.post("", status_code=201, response_model=EndUserOut)
async def create_end_user(body: EndUserCreate, principal: PrincipalDep, session: SessionDep) -> EndUser:
    company = await session.get(Company, body.company_id)
    # Another tenant's company gets exactly the answer of a company that does not exist.
    if company is None or not principal.sees(TenantChain(company.org_id, company.id)) or principal.end_user_id:
        raise NotFound("company_id", "entreprise introuvable")
    authorize(principal, Action.WRITE, TenantChain(company.org_id, company.id), "entreprise")
    email = str(body.email).lower()
    for model in (EndUser, StaffUser):
        if (await session.execute(select(model.id).where(func.lower(model.email) == email))).first():
            raise AlreadyExists("email", "adresse e-mail déjà utilisée")
    if body.password is not None:
        check_password_rule(body.password)
    user = EndUser(
        org_id=company.org_id,
        company_id=company.id,
        email=email,
        full_name=body.full_name,
        password_hash=hash_password(body.password) if body.password else None,
    )
    session.add(user)
    await session.flush()
    return user


@router.get("", response_model=EndUserPage)
async def list_end_users(
    principal: PrincipalDep,
    session: SessionDep,
    company_id: Annotated[str | None, row_id_query("Utilisateurs de cette entreprise")] = None,
    email: Annotated[
        str | None, Query(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$", description="Adresse exacte")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> EndUserPage:
    """The end users the caller can see, by id; `next_cursor` gives the next page."""
    keyset = by_id(EndUser.id)
    query = keyset.apply(end_users_query(principal, company_id=company_id, email=email), cursor, limit)
    items, next_cursor = keyset.page(list((await session.execute(query)).scalars()), limit, lambda u: u.id)
    return EndUserPage(items=[EndUserOut.model_validate(u) for u in items], next_cursor=next_cursor)
