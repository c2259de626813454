"""Staff members ("Personnel", seed 000) of the platform, an organisation or a company, with permissions
per area. A staff member can only grant, and only manage someone holding, permissions they hold
themselves; an administrator-set password must be changed at the next login.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import func, select, update

from api.deps import PrincipalDep, SessionDep
from api.guard import audit_note
from api.schemas import NEXT_PAGE_LINK, Request, UtcDatetime, page_cursor, set_next_link
from domain.authz import (
    ALL_AREAS,
    Action,
    Area,
    Principal,
    TenantChain,
    authorize,
    require_human,
    require_staff,
    validate_permissions,
)
from domain.enums import StaffRole
from domain.errors import AlreadyExists, NotFound, PermissionDenied, ValidationFailed
from domain.models import Company, EndUser, Organisation, RefreshToken, StaffUser
from domain.pagination import by_text
from domain.security import hash_password
from domain.services.accounts import disable_second_factor, set_password

router = APIRouter(prefix="/api/v1/staff", tags=["Personnel"])


class StaffCreate(Request):
    email: EmailStr
    full_name: str = Field(min_length=1, max_length=200)
    role: Literal["platform_admin", "org_staff", "company_staff"]
    org_id: str | None = Field(default=None, max_length=32)
    company_id: str | None = Field(default=None, max_length=32)
    permissions: list[str] = Field(max_length=20, description="« * », « zone » ou « zone:read » (zones du seed 000)")
    password: str = Field(min_length=1, max_length=1024, description="Mot de passe provisoire, à changer")


class PermissionsUpdate(Request):
    permissions: list[str] = Field(max_length=20)


class AdminPasswordReset(Request):
    new_password: str = Field(min_length=1, max_length=1024)
    force_change: bool = True


class StaffOut(BaseModel):
    id: str
    email: str
    full_name: str
    role: StaffRole
    org_id: str | None
    company_id: str | None
    permissions: list[str]
    active: bool
    totp_enabled: bool
    must_change_password: bool
    locked_until: UtcDatetime | None
    last_login_at: UtcDatetime | None
    created_at: UtcDatetime


def _out(staff: StaffUser) -> StaffOut:
    return StaffOut.model_validate(staff, from_attributes=True)


def _holds(principal: Principal, permissions: list[str]) -> bool:
    """Whether the caller holds every permission in the list (so granting or managing it is no escalation)."""
    if principal.is_platform_admin or ALL_AREAS in principal.permissions:
        return True
    for permission in permissions:
        area, _, mode = permission.partition(":")
        if permission == ALL_AREAS or not (
            area in principal.permissions or (mode and permission in principal.permissions)
        ):
            return False
    return True


def _level_area(company_id: str | None) -> Area:
    return Area.COMPANY if company_id is not None else Area.ORGANISATION


async def _email_free(session: SessionDep, email: str) -> None:
    for model in (StaffUser, EndUser):
        if (await session.execute(select(model.id).where(func.lower(model.email) == email))).first():
            raise AlreadyExists("email", "adresse e-mail déjà utilisée")


@router.post("", status_code=201, response_model=StaffOut)
async def create_staff(body: StaffCreate, principal: PrincipalDep, session: SessionDep) -> StaffOut:
    require_human(principal)
    require_staff(principal)
    permissions = validate_permissions(body.permissions)
    role = StaffRole(body.role)
    org_id: str | None
    company_id: str | None = None
    if role is StaffRole.PLATFORM_ADMIN:
        if not principal.is_platform_admin:
            raise PermissionDenied("role", "seule la plateforme crée des administrateurs plateforme")
        if body.org_id or body.company_id:
            raise ValidationFailed("org_id", "un administrateur plateforme n'appartient à aucune organisation")
        org_id = None
    elif role is StaffRole.COMPANY_STAFF:
        company_id = body.company_id or principal.company_id
        if company_id is None:
            raise ValidationFailed("company_id", "champ obligatoire pour le personnel d'une entreprise")
        company = await session.get(Company, company_id)
        if company is None or (body.org_id is not None and body.org_id != company.org_id):
            raise NotFound("company_id", "entreprise introuvable")
        authorize(principal, Action.WRITE, TenantChain(company.org_id, company.id), "entreprise", area=Area.COMPANY)
        org_id = company.org_id
    else:
        if principal.company_id is not None:
            raise PermissionDenied("role", "le personnel d'une entreprise ne crée pas de personnel d'organisation")
        if body.company_id is not None:
            raise ValidationFailed("company_id", "le personnel d'organisation n'est rattaché à aucune entreprise")
        org_id = principal.org_id if not principal.is_platform_admin else body.org_id
        if org_id is None or (body.org_id is not None and body.org_id != org_id):
            raise NotFound("org_id", "organisation introuvable")
        if await session.get(Organisation, org_id) is None:
            raise NotFound("org_id", "organisation introuvable")
        authorize(principal, Action.WRITE, TenantChain(org_id), "organisation", area=Area.ORGANISATION)
    if not _holds(principal, permissions):
        raise PermissionDenied("permissions", "vous ne pouvez accorder que des permissions que vous détenez")
    email = str(body.email).lower()
    await _email_free(session, email)
    staff = StaffUser(
        email=email,
        full_name=body.full_name,
        password_hash=hash_password("!"),  # replaced below, after the password rule
        role=role,
        org_id=org_id,
        company_id=company_id,
        permissions=permissions,
    )
    set_password(staff, body.password, must_change=True, field="password")
    session.add(staff)
    await session.flush()
    audit_note(
        action="staff.created",
        target=f"staff:{staff.id}",
        org_id=org_id,
        company_id=company_id,
        role=role.value,
        permissions=permissions,
    )
    return _out(staff)


STAFF_KEYSET = by_text(StaffUser.email, 320)


@router.get("", response_model=list[StaffOut], responses=NEXT_PAGE_LINK)
async def list_staff(
    principal: PrincipalDep,
    session: SessionDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    cursor: Annotated[str | None, page_cursor(STAFF_KEYSET.max_digits)] = None,
) -> list[StaffOut]:
    """The staff the caller may see, by e-mail; the `Link` header gives the next page."""
    require_staff(principal)
    if not principal.may(_level_area(principal.company_id), Action.READ):
        raise PermissionDenied(None, "permission requise pour consulter le personnel")
    query = select(StaffUser)
    if not principal.is_platform_admin:
        query = query.where(StaffUser.org_id == principal.org_id)
        if principal.company_id is not None:
            query = query.where(StaffUser.company_id == principal.company_id)
    rows = list((await session.execute(STAFF_KEYSET.apply(query, cursor, limit))).scalars())
    items, next_cursor = STAFF_KEYSET.page(rows, limit, lambda s: s.email)
    set_next_link(response, "/api/v1/staff", next_cursor, limit=limit)
    return [_out(s) for s in items]


async def _target(session: SessionDep, principal: Principal, staff_id: str, action: Action) -> StaffUser:
    require_human(principal)
    require_staff(principal)
    staff = await session.get(StaffUser, staff_id)
    if staff is None:
        raise NotFound(None, "membre du personnel introuvable")
    authorize(principal, action, staff, "membre du personnel", area=_level_area(staff.company_id))
    if action is Action.WRITE:
        if staff.id == principal.subject_id:
            raise PermissionDenied(None, "utilisez votre propre espace pour modifier votre compte")
        if not principal.may(_level_area(staff.company_id), Action.WRITE) or not _holds(principal, staff.permissions):
            raise PermissionDenied(None, "ce membre du personnel détient des droits que vous n'avez pas")
    return staff


@router.get("/{staff_id}", response_model=StaffOut)
async def get_staff(staff_id: str, principal: PrincipalDep, session: SessionDep) -> StaffOut:
    return _out(await _target(session, principal, staff_id, Action.READ))


@router.put("/{staff_id}/permissions", response_model=StaffOut)
async def update_permissions(
    staff_id: str, body: PermissionsUpdate, principal: PrincipalDep, session: SessionDep
) -> StaffOut:
    staff = await _target(session, principal, staff_id, Action.WRITE)
    permissions = validate_permissions(body.permissions)
    if not _holds(principal, permissions):
        raise PermissionDenied("permissions", "vous ne pouvez accorder que des permissions que vous détenez")
    before = list(staff.permissions or [])
    staff.permissions = permissions
    audit_note(action="staff.permissions_changed", target=f"staff:{staff.id}", before=before, after=permissions)
    return _out(staff)


@router.post("/{staff_id}/password", response_model=StaffOut)
async def admin_reset_password(
    staff_id: str, body: AdminPasswordReset, principal: PrincipalDep, session: SessionDep
) -> StaffOut:
    """Sets a password chosen by an administrator; by default it must be changed at the next login.
    Existing sessions of that member end."""
    staff = await _target(session, principal, staff_id, Action.WRITE)
    set_password(staff, body.new_password, must_change=body.force_change)
    await _revoke_refresh_tokens(session, staff.id)
    audit_note(action="staff.password_reset_by_admin", target=f"staff:{staff.id}", force_change=body.force_change)
    return _out(staff)


@router.post("/{staff_id}/2fa/reset", response_model=StaffOut)
async def admin_reset_2fa(staff_id: str, principal: PrincipalDep, session: SessionDep) -> StaffOut:
    """Removes a lost second factor (the member enrols again)."""
    staff = await _target(session, principal, staff_id, Action.WRITE)
    await disable_second_factor(session, staff)
    audit_note(action="staff.2fa_reset_by_admin", target=f"staff:{staff.id}")
    return _out(staff)


@router.delete("/{staff_id}", status_code=204)
async def deactivate_staff(staff_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    staff = await _target(session, principal, staff_id, Action.WRITE)
    staff.active = False
    staff.tokens_valid_after = datetime.now(UTC)
    await _revoke_refresh_tokens(session, staff.id)
    audit_note(action="staff.deactivated", target=f"staff:{staff.id}")
    return Response(status_code=204)


async def _revoke_refresh_tokens(session: SessionDep, account_id: str) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.account_id == account_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC)),
        execution_options={"synchronize_session": False},
    )
