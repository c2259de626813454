"""Number ranges (MSISDN blocks) of an organisation: activations allocate from them."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from api.authz import Action, TenantChain, authorize, scope_org_id
from api.deps import PrincipalDep, SessionDep
from api.line_schemas import NumberRangeCreate, NumberRangeOut
from domain.enums import PhoneNumberStatus
from domain.errors import NotFound, PermissionDenied
from domain.models import NumberRange, Organisation, PhoneNumber
from domain.services.lines import create_number_range

router = APIRouter(prefix="/api/v1/number-ranges", tags=["Numéros"])


def _size(number_range: NumberRange) -> int:
    return int(number_range.last_msisdn[1:]) - int(number_range.first_msisdn[1:]) + 1


@router.post("", status_code=201, response_model=NumberRangeOut)
async def create(body: NumberRangeCreate, principal: PrincipalDep, session: SessionDep) -> NumberRangeOut:
    if principal.company_id is not None:
        raise PermissionDenied(None, "réservé au personnel de l'organisation")
    org_id = scope_org_id(principal, body.org_id)
    if await session.get(Organisation, org_id) is None:
        raise NotFound("org_id", "organisation introuvable")
    authorize(principal, Action.WRITE, TenantChain(org_id), "organisation")
    number_range = await create_number_range(
        session,
        org_id=org_id,
        label=body.label,
        first_msisdn=body.first_msisdn,
        last_msisdn=body.last_msisdn,
        carrier=body.carrier,
    )
    return NumberRangeOut.model_validate(number_range).model_copy(update={"size": _size(number_range)})


@router.get("", response_model=list[NumberRangeOut])
async def list_ranges(principal: PrincipalDep, session: SessionDep, org_id: str | None = None) -> list[NumberRangeOut]:
    if principal.company_id is not None:
        raise PermissionDenied(None, "réservé au personnel de l'organisation")
    target = scope_org_id(principal, org_id)
    authorize(principal, Action.READ, TenantChain(target), "organisation")
    ranges = (
        await session.execute(
            select(NumberRange).where(NumberRange.org_id == target).order_by(NumberRange.first_msisdn)
        )
    ).scalars()
    out = []
    for number_range in ranges:
        in_use = await session.scalar(
            select(func.count())
            .select_from(PhoneNumber)
            .where(
                PhoneNumber.range_id == number_range.id,
                PhoneNumber.status.in_(
                    [PhoneNumberStatus.RESERVED, PhoneNumberStatus.ASSIGNED, PhoneNumberStatus.QUARANTINED]
                ),
            )
        )
        out.append(
            NumberRangeOut.model_validate(number_range).model_copy(
                update={"size": _size(number_range), "in_use": int(in_use or 0)}
            )
        )
    return out
