"""Who is calling, and may they touch this object? One `authorize` for every handler.

Objects outside the caller's subtree (siblings included) are reported as not found, so a denial
never confirms that another tenant's object exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.enums import StaffRole
from domain.errors import NotFound, PermissionDenied


class PrincipalKind(StrEnum):
    STAFF = "staff"
    END_USER = "end_user"
    API_KEY = "api_key"


class Action(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class TenantChain:
    """Where an object sits: platform > organisation > company > end user."""

    org_id: str | None
    company_id: str | None = None
    end_user_id: str | None = None


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    subject_id: str
    label: str
    role: StaffRole | None = None
    org_id: str | None = None
    company_id: str | None = None
    end_user_id: str | None = None
    read_only: bool = False

    @property
    def is_platform_admin(self) -> bool:
        return self.kind is PrincipalKind.STAFF and self.role is StaffRole.PLATFORM_ADMIN

    def sees(self, chain: TenantChain) -> bool:
        if self.is_platform_admin:
            return True
        if self.org_id is None or chain.org_id != self.org_id:
            return False
        if self.company_id is not None and chain.company_id != self.company_id:
            return False
        return not (self.end_user_id is not None and chain.end_user_id != self.end_user_id)


def authorize(principal: Principal, action: Action, chain: TenantChain, what: str = "objet") -> None:
    """Raises NotFound when the object is outside the caller's subtree, PermissionDenied for a
    read-only caller attempting a write inside it."""
    if not principal.sees(chain):
        raise NotFound(None, f"{what} introuvable")
    if action is Action.WRITE and principal.read_only:
        raise PermissionDenied(None, "cette clé d'API est en lecture seule")


def require_role(principal: Principal, *roles: StaffRole) -> None:
    if principal.kind is not PrincipalKind.STAFF or principal.role not in roles:
        raise PermissionDenied(None, "action réservée au personnel habilité")


def scope_org_id(principal: Principal, requested_org_id: str | None) -> str:
    """The organisation a create request acts in: the caller's own, or any for a platform admin."""
    if principal.is_platform_admin:
        if requested_org_id is None:
            raise_missing("org_id")
        assert requested_org_id is not None
        return requested_org_id
    if principal.org_id is None:
        raise PermissionDenied(None, "aucune organisation rattachée")
    if requested_org_id is not None and requested_org_id != principal.org_id:
        raise NotFound("org_id", "organisation introuvable")
    return principal.org_id


def raise_missing(field: str) -> None:
    from domain.errors import ValidationFailed

    raise ValidationFailed(field, "champ obligatoire")
