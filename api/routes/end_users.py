from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from api.authz import Action, TenantChain, authorize
from api.deps import PrincipalDep, SessionDep
from api.schemas import EndUserCreate, EndUserOut
from domain.errors import AlreadyExists, NotFound
from domain.models import Company, EndUser, StaffUser
from domain.security import check_password_rule, hash_password

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
