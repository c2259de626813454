"""API keys of an organisation or a company: read-only or read-write, with an expiry. The key is shown
once, at creation or rotation; only its prefix, last four characters and SHA-256 are kept.

Managed by staff members holding every permission (`*`) of the level they act on (or the platform);
never by an API key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep, hash_api_key
from api.guard import audit_note
from api.schemas import NEXT_PAGE_LINK, Request, UtcDatetime, page_cursor, set_next_link
from domain.authz import (
    ALL_AREAS,
    Action,
    Principal,
    TenantChain,
    authorize,
    require_human,
    require_staff,
    scope_org_id,
)
from domain.enums import ApiKeyScope
from domain.errors import NotFound, PermissionDenied, ValidationFailed
from domain.models import ApiKey, Company, Organisation
from domain.pagination import CreatedKeyset
from domain.security import new_api_key

router = APIRouter(prefix="/api/v1/api-keys", tags=["Clés d'API"])

MAX_KEYS_LISTED = 500


class ApiKeyCreate(Request):
    name: str = Field(min_length=1, max_length=100)
    scope: ApiKeyScope
    org_id: str | None = Field(default=None, max_length=32, description="Obligatoire pour la plateforme")
    company_id: str | None = Field(default=None, max_length=32, description="Clé limitée à cette entreprise")
    expires_in_days: int = Field(default=365, ge=1, le=730)


class ApiKeyRotation(Request):
    overlap_hours: int = Field(
        default=0, ge=0, le=168, description="Durée pendant laquelle l'ancienne clé reste valable (0 : révoquée)"
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    last4: str
    scope: ApiKeyScope
    org_id: str
    company_id: str | None
    created_at: UtcDatetime
    created_by: str
    expires_at: UtcDatetime | None
    revoked_at: UtcDatetime | None
    last_used_at: UtcDatetime | None
    replaced_by_id: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="La clé complète, affichée une seule fois : conservez-la")


def _out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)


def _may_manage(principal: Principal) -> None:
    require_human(principal)
    require_staff(principal)
    if not principal.is_platform_admin and ALL_AREAS not in principal.permissions:
        raise PermissionDenied(None, "la gestion des clés d'API est réservée aux administrateurs")


async def _issue(
    session: SessionDep,
    principal: Principal,
    *,
    name: str,
    scope: ApiKeyScope,
    org_id: str,
    company_id: str | None,
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    presented, prefix = new_api_key()
    key = ApiKey(
        org_id=org_id,
        company_id=company_id,
        name=name,
        prefix=prefix,
        key_hash=hash_api_key(presented),
        scope=scope,
        expires_at=expires_at,
        last4=presented[-4:],
        created_by=principal.label,
    )
    session.add(key)
    await session.flush()
    return key, presented


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, principal: PrincipalDep, session: SessionDep) -> ApiKeyCreated:
    _may_manage(principal)
    company_id = body.company_id or principal.company_id
    if company_id is not None:
        company = await session.get(Company, company_id)
        if company is None:
            raise NotFound("company_id", "entreprise introuvable")
        if body.org_id is not None and body.org_id != company.org_id:
            raise NotFound("company_id", "entreprise introuvable")
        authorize(principal, Action.WRITE, TenantChain(company.org_id, company.id), "entreprise")
        org_id = company.org_id
    else:
        org_id = scope_org_id(principal, body.org_id)
        if await session.get(Organisation, org_id) is None:
            raise NotFound("org_id", "organisation introuvable")
        authorize(principal, Action.WRITE, TenantChain(org_id), "organisation")
    expires_at = datetime.now(UTC) + timedelta(days=body.expires_in_days)
    key, presented = await _issue(
        session,
        principal,
        name=body.name,
        scope=body.scope,
        org_id=org_id,
        company_id=company_id,
        expires_at=expires_at,
    )
    audit_note(
        action="api_key.created",
        target=f"api_key:{key.id}",
        org_id=org_id,
        company_id=company_id,
        last4=key.last4,
        scope=key.scope.value,
    )
    return ApiKeyCreated(**_out(key).model_dump(), key=presented)


KEYS_KEYSET = CreatedKeyset(ApiKey.created_at, ApiKey.id, newest_first=True)


@router.get("", response_model=list[ApiKeyOut], responses=NEXT_PAGE_LINK)
async def list_api_keys(
    principal: PrincipalDep,
    session: SessionDep,
    response: Response,
    org_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_KEYS_LISTED)] = MAX_KEYS_LISTED,
    cursor: Annotated[str | None, page_cursor(KEYS_KEYSET.max_digits)] = None,
) -> list[ApiKeyOut]:
    """The keys the caller may manage, newest first; the `Link` header gives the next page."""
    _may_manage(principal)
    query = select(ApiKey)
    if not principal.is_platform_admin:
        query = query.where(ApiKey.org_id == principal.org_id)
        if principal.company_id is not None:
            query = query.where(ApiKey.company_id == principal.company_id)
    if org_id is not None:
        query = query.where(ApiKey.org_id == org_id)
    rows = list((await session.execute(KEYS_KEYSET.apply(query, cursor, limit))).scalars())
    items, next_cursor = KEYS_KEYSET.page(rows, limit, lambda k: (k.created_at, k.id))
    set_next_link(response, "/api/v1/api-keys", next_cursor, org_id=org_id, limit=limit)
    return [_out(k) for k in items]


async def _key(session: SessionDep, principal: Principal, api_key_id: str, action: Action) -> ApiKey:
    _may_manage(principal)
    key = await session.get(ApiKey, api_key_id)
    if key is None:
        raise NotFound(None, "clé d'API introuvable")
    authorize(principal, action, key, "clé d'API")
    return key


@router.get("/{api_key_id}", response_model=ApiKeyOut)
async def get_api_key(api_key_id: str, principal: PrincipalDep, session: SessionDep) -> ApiKeyOut:
    return _out(await _key(session, principal, api_key_id, Action.READ))


@router.delete("/{api_key_id}", status_code=204)
async def revoke_api_key(api_key_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    key = await _key(session, principal, api_key_id, Action.WRITE)
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
    audit_note(action="api_key.revoked", target=f"api_key:{key.id}", last4=key.last4)
    return Response(status_code=204)


@router.post("/{api_key_id}/rotation", status_code=201, response_model=ApiKeyCreated)
async def rotate_api_key(
    api_key_id: str, body: ApiKeyRotation, principal: PrincipalDep, session: SessionDep
) -> ApiKeyCreated:
    """A new key with the same name, scope, tenant and lifetime; the old one stops working now, or after
    `overlap_hours` so integrations can switch."""
    old = await _key(session, principal, api_key_id, Action.WRITE)
    now = datetime.now(UTC)
    if old.revoked_at is not None or old.replaced_by_id is not None:
        raise ValidationFailed(None, "cette clé est déjà révoquée ou remplacée")
    lifetime = timedelta(days=365)
    if old.expires_at is not None:
        created = old.created_at if old.created_at.tzinfo else old.created_at.replace(tzinfo=UTC)
        expires = old.expires_at if old.expires_at.tzinfo else old.expires_at.replace(tzinfo=UTC)
        lifetime = max(timedelta(days=1), expires - created)
    new, presented = await _issue(
        session,
        principal,
        name=old.name,
        scope=old.scope,
        org_id=old.org_id,
        company_id=old.company_id,
        expires_at=now + lifetime,
    )
    old.replaced_by_id = new.id
    if body.overlap_hours == 0:
        old.revoked_at = now
    else:
        overlap_end = now + timedelta(hours=body.overlap_hours)
        current = old.expires_at.replace(tzinfo=old.expires_at.tzinfo or UTC) if old.expires_at else None
        old.expires_at = overlap_end if current is None else min(current, overlap_end)
    audit_note(
        action="api_key.rotated",
        target=f"api_key:{old.id}",
        new_key=new.id,
        last4=new.last4,
        overlap_hours=body.overlap_hours,
    )
    return ApiKeyCreated(**_out(new).model_dump(), key=presented)
