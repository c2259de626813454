"""Number ranges (MSISDN blocks) of an organisation: activations allocate from them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep
from api.line_schemas import NumberRangeCreate, NumberRangeOut, NumberRangeUsage, PhoneNumberOut, PhoneNumberPage
from api.schemas import NEXT_PAGE_LINK, page_cursor, set_next_link
from domain.authz import Action, TenantChain, authorize, scope_org_id
from domain.enums import PhoneNumberStatus
from domain.errors import NotFound, PermissionDenied
from domain.models import NumberRange, Organisation, PhoneNumber
from domain.pagination import ID_DIGITS, by_id, by_msisdn
from domain.services.lines import create_number_range, number_range_usage
from domain.services.listings import range_numbers_query

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


RANGES_KEYSET = by_msisdn(NumberRange.first_msisdn)


@router.get("", response_model=list[NumberRangeOut], responses=NEXT_PAGE_LINK)
async def list_ranges(
    principal: PrincipalDep,
    session: SessionDep,
    response: Response,
    org_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
    cursor: Annotated[str | None, page_cursor(RANGES_KEYSET.max_digits)] = None,
) -> list[NumberRangeOut]:
    """The organisation's ranges by first number; the `Link` header gives the next page."""
    if principal.company_id is not None:
        raise PermissionDenied(None, "réservé au personnel de l'organisation")
    target = scope_org_id(principal, org_id)
    authorize(principal, Action.READ, TenantChain(target), "organisation")
    query = RANGES_KEYSET.apply(select(NumberRange).where(NumberRange.org_id == target), cursor, limit)
    ranges, next_cursor = RANGES_KEYSET.page(
        list((await session.execute(query)).scalars()), limit, lambda r: r.first_msisdn
    )
    set_next_link(response, "/api/v1/number-ranges", next_cursor, org_id=org_id, limit=limit)
    out = []
    for number_range in ranges:
        usage = await number_range_usage(session, number_range)
        out.append(
            NumberRangeOut.model_validate(number_range).model_copy(update={"size": usage.size, "in_use": usage.in_use})
        )
    return out


async def _range(session: SessionDep, principal: PrincipalDep, number_range_id: str) -> NumberRange:
    if principal.company_id is not None:
        raise PermissionDenied(None, "réservé au personnel de l'organisation")
    number_range = await session.get(NumberRange, number_range_id)
    if number_range is None:
        raise NotFound(None, "plage de numéros introuvable")
    authorize(principal, Action.READ, TenantChain(number_range.org_id), "plage de numéros")
    return number_range


@router.get("/{number_range_id}", response_model=NumberRangeUsage)
async def get_range(number_range_id: str, principal: PrincipalDep, session: SessionDep) -> NumberRangeUsage:
    """The range and its usage: allocated (on a line or reserved), in quarantine, free."""
    number_range = await _range(session, principal, number_range_id)
    usage = await number_range_usage(session, number_range)
    return NumberRangeUsage.model_validate(number_range).model_copy(
        update={
            "size": usage.size,
            "in_use": usage.in_use,
            "allocated": usage.allocated,
            "quarantined": usage.quarantined,
            "free": usage.free,
        }
    )


@router.get("/{number_range_id}/numbers", response_model=PhoneNumberPage)
async def list_numbers(
    number_range_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    status: PhoneNumberStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(ID_DIGITS)] = None,
) -> PhoneNumberPage:
    """The range's numbers the platform has handed out (`status=quarantined`: the quarantine), by id."""
    number_range = await _range(session, principal, number_range_id)
    keyset = by_id(PhoneNumber.id)
    query = keyset.apply(range_numbers_query(number_range.id, status=status), cursor, limit)
    items, next_cursor = keyset.page(list((await session.execute(query)).scalars()), limit, lambda n: n.id)
    return PhoneNumberPage(items=[PhoneNumberOut.model_validate(n) for n in items], next_cursor=next_cursor)
