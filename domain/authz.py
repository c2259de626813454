"""Who is calling, and may they touch this object? One `authorize` for every handler and activity.

The policy in two sentences: an object outside the caller's subtree (platform > organisation > company >
end user; siblings included) does not exist for the caller — `NotFound`, the same answer as for an id that
exists nowhere. Inside the subtree, a caller without the right (read-only key, end user on a staff
function, staff member without the area's permission) gets `PermissionDenied`.

Staff permissions are per area (seed 000 "Personnel": Automatisation, Entreprise, Magasin eSIM,
Utilisateur final, Carte SIM, Logiciel de facturation, Opérateur, Organisation, Paiement, Facturation,
Forfait, Pool, PSP): `"*"` grants every area, `"<area>"` reading and writing, `"<area>:read"` reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.enums import StaffRole
from domain.errors import NotFound, PermissionDenied, ValidationFailed


class PrincipalKind(StrEnum):
    STAFF = "staff"
    END_USER = "end_user"
    API_KEY = "api_key"
    WORKFLOW = "workflow"  # an activity acting for the organisation its workflow runs for


class Action(StrEnum):
    READ = "read"
    WRITE = "write"


class Area(StrEnum):
    AUTOMATION = "automation"
    COMPANY = "company"
    ESIM_STORE = "esim_store"
    END_USER = "end_user"
    SIM_CARD = "sim_card"
    BILLING_SOFTWARE = "billing_software"
    OPERATOR = "operator"
    ORGANISATION = "organisation"
    PAYMENT = "payment"
    BILLING = "billing"
    PLAN = "plan"
    POOL = "pool"
    PSP = "psp"


AREA_LABELS_FR: dict[Area, str] = {
    Area.AUTOMATION: "Automatisation",
    Area.COMPANY: "Entreprise",
    Area.ESIM_STORE: "Magasin eSIM",
    Area.END_USER: "Utilisateur final",
    Area.SIM_CARD: "Carte SIM",
    Area.BILLING_SOFTWARE: "Logiciel de facturation",
    Area.OPERATOR: "Opérateur",
    Area.ORGANISATION: "Organisation",
    Area.PAYMENT: "Paiement",
    Area.BILLING: "Facturation",
    Area.PLAN: "Forfait",
    Area.POOL: "Pool",
    Area.PSP: "PSP",
}

ALL_AREAS = "*"


def validate_permissions(values: list[str], field: str = "permissions") -> list[str]:
    """Normalises a permission list: `*`, `<area>` or `<area>:read`, each area at most once."""
    seen: dict[str, str] = {}
    for raw in values:
        value = raw.strip()
        if value == ALL_AREAS:
            return [ALL_AREAS]
        area, _, mode = value.partition(":")
        if area not in Area.__members__.values() or mode not in ("", "read"):
            raise ValidationFailed(field, f"permission inconnue : {raw!r} (attendu « * », « zone » ou « zone:read »)")
        if seen.get(area) != area:  # read-write wins over read-only
            seen[area] = value
    return sorted(seen.values())


@dataclass(frozen=True)
class TenantChain:
    """Where an object sits: platform > organisation > company > end user. `org_wide` objects (general
    plans, the catalogue) are readable by everyone in the organisation, writable only at its level."""

    org_id: str | None
    company_id: str | None = None
    end_user_id: str | None = None
    org_wide: bool = False

    @classmethod
    def of(cls, obj: Any) -> TenantChain:
        """The chain of an ORM row (or anything) carrying `org_id`, `company_id`, `end_user_id`."""
        return cls(
            org_id=getattr(obj, "org_id", None),
            company_id=getattr(obj, "company_id", None),
            end_user_id=getattr(obj, "end_user_id", None),
        )


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
    permissions: frozenset[str] = frozenset()
    must_change_password: bool = False

    @property
    def is_platform_admin(self) -> bool:
        return self.kind is PrincipalKind.STAFF and self.role is StaffRole.PLATFORM_ADMIN

    @property
    def is_human(self) -> bool:
        return self.kind in (PrincipalKind.STAFF, PrincipalKind.END_USER)

    def chain(self) -> TenantChain:
        """The caller's own position in the tree."""
        return TenantChain(self.org_id, self.company_id, self.end_user_id)

    def sees(self, chain: TenantChain) -> bool:
        """Whether the object is inside the caller's subtree."""
        if self.is_platform_admin:
            return True
        if self.org_id is None or chain.org_id != self.org_id:
            return False
        if self.company_id is not None and chain.company_id != self.company_id:
            return False
        return not (self.end_user_id is not None and chain.end_user_id != self.end_user_id)

    def reads(self, chain: TenantChain) -> bool:
        """`sees`, plus the organisation-wide objects of the caller's organisation."""
        return self.sees(chain) or (chain.org_wide and self.org_id is not None and chain.org_id == self.org_id)

    def may(self, area: Area | str, action: Action | str) -> bool:
        """The staff member's permission on an area. Other principals are limited elsewhere (key scope,
        end-user routes), platform admins hold every area. `action` may be its text (templates pass "read")."""
        if self.kind is not PrincipalKind.STAFF or self.is_platform_admin:
            return True
        return (
            ALL_AREAS in self.permissions
            or str(area) in self.permissions
            or (action == Action.READ and f"{area}:read" in self.permissions)
        )


def workflow_principal(expected: TenantChain, label: str = "workflow") -> Principal:
    """The principal an activity acts as: the tenant its workflow runs for (from the workflow input),
    never the platform. An empty organisation sees nothing (fails closed)."""
    return Principal(
        kind=PrincipalKind.WORKFLOW,
        subject_id=label,
        label=label,
        org_id=expected.org_id or None,
        company_id=expected.company_id or None,
        end_user_id=expected.end_user_id or None,
    )


def authorize(
    principal: Principal, action: Action, resource: Any, what: str = "objet", *, area: Area | str | None = None
) -> None:
    """The one authorisation check. `resource` is a `TenantChain` or a row carrying its chain.

    Raises NotFound when the object is outside the caller's subtree (never confirming that it exists),
    PermissionDenied when it is inside but the caller may not do `action` on it (read-only key, read-only
    organisation-wide object, staff member without the area's permission)."""
    chain = resource if isinstance(resource, TenantChain) else TenantChain.of(resource)
    if not principal.reads(chain):
        raise NotFound(None, f"{what} introuvable")
    if action is Action.WRITE:
        if principal.read_only:
            raise PermissionDenied(None, "cette clé d'API est en lecture seule")
        if not principal.sees(chain):
            raise PermissionDenied(None, f"{what} : modification réservée à l'organisation")
    if area is not None and not principal.may(area, action):
        raise PermissionDenied(None, f"permission « {area} » requise")


def require_role(principal: Principal, *roles: StaffRole) -> None:
    if principal.kind is not PrincipalKind.STAFF or principal.role not in roles:
        raise PermissionDenied(None, "action réservée au personnel habilité")


def require_staff(principal: Principal) -> None:
    if principal.kind is not PrincipalKind.STAFF:
        raise PermissionDenied(None, "action réservée au personnel")


def require_human(principal: Principal) -> None:
    """Account functions (password, 2FA, API keys, staff) are not for API keys."""
    if not principal.is_human:
        raise PermissionDenied(None, "action impossible avec une clé d'API")


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
    raise ValidationFailed(field, "champ obligatoire")
