from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep
from api.schemas import OrganisationCreate, OrganisationOut
from domain.authz import require_role
from domain.enums import StaffRole
from domain.errors import AlreadyExists
from domain.models import InvoiceCounter, Organisation

router = APIRouter(prefix="/api/v1/organisations", tags=["Organisations"])


@router.post("", status_code=201, response_model=OrganisationOut)
async def create_organisation(body: OrganisationCreate, principal: PrincipalDep, session: SessionDep) -> Organisation:
    require_role(principal, StaffRole.PLATFORM_ADMIN)
    if (await session.execute(select(Organisation.id).where(Organisation.slug == body.slug))).first():
        raise AlreadyExists("slug", "identifiant d'organisation déjà utilisé")
    org = Organisation(**body.model_dump())
    session.add(org)
    await session.flush()
    session.add(InvoiceCounter(org_id=org.id, last_number=0))
    return org
