"""Who is calling, and may they touch this object? One `authorize` for every handler.

The policy lives in `domain.authz` (so activities use the very same function); this module keeps the
names the routes import. Path ids are checked before any handler runs by `api.guard`, from the resource
registry of `domain.services.tenancy`.
"""

from __future__ import annotations

from domain.authz import (
    ALL_AREAS,
    Action,
    Area,
    Principal,
    PrincipalKind,
    TenantChain,
    authorize,
    raise_missing,
    require_human,
    require_role,
    require_staff,
    scope_org_id,
)

__all__ = [
    "ALL_AREAS",
    "Action",
    "Area",
    "Principal",
    "PrincipalKind",
    "TenantChain",
    "authorize",
    "raise_missing",
    "require_human",
    "require_role",
    "require_staff",
    "scope_org_id",
]
