"""Reading the audit log: the platform sees everything, an organisation its own rows, a company its own.
Reading is itself audited. The chain verification is for the platform."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from api.deps import PrincipalDep, SessionDep
from api.schemas import UtcDatetime, page_cursor
from domain.audit import AuditEntry, record, verify_chain
from domain.authz import Action, Area, authorize, require_role, require_staff
from domain.enums import StaffRole
from domain.errors import ValidationFailed
from domain.models import AuditLog

router = APIRouter(prefix="/api/v1/audit-log", tags=["Journal d'audit"])


class AuditEntryOut(BaseModel):
    id: int
    at: UtcDatetime
    actor: str
    actor_kind: str
    org_id: str | None
    company_id: str | None
    end_user_id: str | None
    action: str
    target: str | None
    result: str
    request_id: str | None
    workflow_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


class ChainVerification(BaseModel):
    ok: bool
    rows: int
    first_bad_id: int | None
    reason: str | None


AUDIT_ID_MAX = 2**31 - 1  # `audit_log.id` is an INTEGER


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(value.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor", "curseur de pagination invalide") from exc
    if not decoded.isdigit() or len(decoded) > 18:
        raise ValidationFailed("cursor", "curseur de pagination invalide")
    # Row ids are 32-bit: a larger position pages from the newest row, as any position above them all would.
    return min(int(decoded), AUDIT_ID_MAX)


@router.get("", response_model=AuditPage)
async def list_audit_entries(
    principal: PrincipalDep,
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=100)] = None,
    org_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, page_cursor(18)] = None,
) -> AuditPage:
    """Newest first. Organisation staff see their organisation's rows, company staff their company's."""
    require_staff(principal)
    authorize(principal, Action.READ, principal.chain(), "journal", area=Area.ORGANISATION)
    query = select(AuditLog).order_by(AuditLog.id.desc())
    if not principal.is_platform_admin:
        query = query.where(AuditLog.org_id == principal.org_id)
        if principal.company_id is not None:
            query = query.where(AuditLog.company_id == principal.company_id)
    if org_id is not None:
        query = query.where(AuditLog.org_id == org_id)
    if action is not None:
        query = query.where(AuditLog.action == action)
    before = _cursor(cursor)
    if before is not None:
        query = query.where(AuditLog.id < before)
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    next_cursor = base64.urlsafe_b64encode(str(rows[limit - 1].id).encode()).decode() if len(rows) > limit else None
    items = [AuditEntryOut.model_validate(r, from_attributes=True) for r in rows[:limit]]
    await record(
        session,
        AuditEntry(
            actor=principal.label,
            actor_kind=principal.kind.value,
            action="audit.read",
            org_id=principal.org_id,
            company_id=principal.company_id,
            details={"principal_id": principal.subject_id, "rows": len(items), "filter_org_id": org_id},
        ),
    )
    return AuditPage(items=items, next_cursor=next_cursor)


@router.get("/verification", response_model=ChainVerification)
async def verify_audit_chain(principal: PrincipalDep, session: SessionDep) -> ChainVerification:
    require_role(principal, StaffRole.PLATFORM_ADMIN)
    report = await verify_chain(session)
    return ChainVerification(ok=report.ok, rows=report.rows, first_bad_id=report.first_bad_id, reason=report.reason)
