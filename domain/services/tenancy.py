"""The tenant chain of any object, read from the database.

`RESOURCES` maps the name of an id (as it appears in a route path: `company_id`, `iccid`, `line_id`, …) to
the model holding it. `api.guard` resolves every path id of every route through `resolve` before the
handler runs, and activities that receive an id from outside call `ensure_in_tenant`. A name that is not
registered is looked up by convention (`<thing>_id` → table `<things>` with an `org_id` column); anything
else fails closed with `UnregisteredIdParameter`, whose message says where to register it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import models
from domain.authz import Action, TenantChain, authorize, workflow_principal
from domain.errors import NotFound, ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_iccid


class UnregisteredIdParameter(RuntimeError):
    """A route path carries an id whose owner model is unknown: the tenant check cannot run."""


@dataclass(frozen=True)
class ResourceSpec:
    model: str  # class name in domain.models, resolved when used
    what: str  # French noun for messages ("entreprise")
    column: str = "id"
    normalise: Callable[[str], str] | None = None
    # The row is itself a level of the tree: its own id is the org/company/end-user id of its chain.
    level: str | None = None  # "org" | "company" | "end_user"
    org_wide: bool = False  # readable by the whole organisation
    org_wide_without_company: bool = False  # readable by the whole organisation when company_id is NULL

    def model_class(self) -> Any:
        model = getattr(models, self.model, None)
        if model is None:
            raise UnregisteredIdParameter(f"domain.models has no model {self.model!r}")
        return model

    def chain_of(self, row: Any) -> TenantChain:
        if self.level == "org":
            return TenantChain(org_id=row.id)
        chain = TenantChain.of(row)
        if self.level == "company":
            chain = TenantChain(org_id=row.org_id, company_id=row.id)
        elif self.level == "end_user":
            chain = TenantChain(org_id=row.org_id, company_id=row.company_id, end_user_id=row.id)
        org_wide = self.org_wide or (self.org_wide_without_company and chain.company_id is None)
        return TenantChain(chain.org_id, chain.company_id, chain.end_user_id, org_wide=org_wide)


def _iccid(value: str) -> str:
    try:
        return normalize_iccid(value)
    except InvalidIdentifier as exc:
        raise ValidationFailed("iccid", exc.reason) from exc


RESOURCES: dict[str, ResourceSpec] = {
    "org_id": ResourceSpec("Organisation", "organisation", level="org"),
    "organisation_id": ResourceSpec("Organisation", "organisation", level="org"),
    "company_id": ResourceSpec("Company", "entreprise", level="company"),
    "end_user_id": ResourceSpec("EndUser", "utilisateur final", level="end_user"),
    "iccid": ResourceSpec("SimCard", "carte SIM", column="iccid", normalise=_iccid),
    "sim_id": ResourceSpec("SimCard", "carte SIM"),
    "line_id": ResourceSpec("Line", "ligne"),
    "recharge_id": ResourceSpec("TopUp", "recharge"),
    "topup_id": ResourceSpec("TopUp", "recharge"),
    "plan_id": ResourceSpec("Plan", "forfait", org_wide_without_company=True),
    "article_id": ResourceSpec("CatalogueArticle", "article", org_wide=True),
    "pool_id": ResourceSpec("Pool", "pool"),
    "wallet_id": ResourceSpec("Wallet", "portefeuille"),
    "funding_id": ResourceSpec("WalletFunding", "approvisionnement"),
    "deployment_id": ResourceSpec("Deployment", "déploiement"),
    "bulk_id": ResourceSpec("BulkOperation", "opération groupée"),
    "bulk_operation_id": ResourceSpec("BulkOperation", "opération groupée"),
    "staff_id": ResourceSpec("StaffUser", "membre du personnel"),
    "api_key_id": ResourceSpec("ApiKey", "clé d'API"),
    "webhook_endpoint_id": ResourceSpec("WebhookEndpoint", "endpoint de webhook"),
    "delivery_id": ResourceSpec("WebhookDelivery", "livraison de webhook"),
    "invoice_id": ResourceSpec("Invoice", "facture"),
    "credit_note_id": ResourceSpec("Invoice", "avoir"),
    "payment_id": ResourceSpec("Payment", "paiement"),
    "payment_method_id": ResourceSpec("SavedPaymentMethod", "moyen de paiement"),
    "transaction_id": ResourceSpec("Transaction", "transaction"),
    "rule_id": ResourceSpec("Rule", "règle"),
    "batch": ResourceSpec("SimImport", "import", column="batch"),
    "onboarding_id": ResourceSpec("Onboarding", "intégration"),
}

# Path parameters that are not object ids (formats, tabs, …): no tenant check applies.
NON_ID_PARAMETERS: set[str] = {"tab", "format", "event_type", "file_path", "path"}


def _plural(name: str) -> list[str]:
    if name.endswith("y"):
        return [name[:-1] + "ies", name + "s"]
    return [name + "s", name + "es", name]


def infer_spec(parameter: str) -> ResourceSpec | None:
    """`<thing>_id` → the model whose table is `<things>` and which carries `org_id`."""
    if not parameter.endswith("_id"):
        return None
    candidates = _plural(parameter[: -len("_id")])
    for mapper in models.Base.registry.mappers:
        cls = mapper.class_
        table = getattr(cls, "__tablename__", None)
        if table in candidates and hasattr(cls, "org_id") and hasattr(cls, "id"):
            return ResourceSpec(cls.__name__, table.replace("_", " ").rstrip("s"))
    return None


def spec_for(parameter: str) -> ResourceSpec | None:
    """The spec of a path parameter, None for a declared non-id; raises for an unknown id."""
    if parameter in NON_ID_PARAMETERS:
        return None
    spec = RESOURCES.get(parameter) or infer_spec(parameter)
    if spec is None:
        raise UnregisteredIdParameter(
            f"path parameter {parameter!r} has no tenant resolver: register it in "
            "domain/services/tenancy.py RESOURCES (model and column), or in NON_ID_PARAMETERS if it is not an id"
        )
    return spec


async def resolve(session: AsyncSession, spec: ResourceSpec, value: str) -> tuple[Any, TenantChain]:
    """The row and its tenant chain, or NotFound (the same answer whether or not it exists elsewhere)."""
    lookup = spec.normalise(value) if spec.normalise else value
    model = spec.model_class()
    row = (await session.execute(select(model).where(getattr(model, spec.column) == lookup))).scalars().first()
    if row is None:
        raise NotFound(None, f"{spec.what} introuvable")
    return row, spec.chain_of(row)


async def ensure_in_tenant(
    session: AsyncSession,
    parameter: str,
    value: str,
    expected: TenantChain,
    action: Action = Action.WRITE,
    *,
    missing_ok: bool = False,
) -> Any:
    """For activities handed an id from outside (through a workflow input): the object must sit inside
    `expected`, the tenant the workflow runs for, and be open to `action` there. The check is `authorize`
    with the workflow's principal (`workflow_principal`), so the rule is the handlers' rule: an object of
    another organisation or company is NotFound, an organisation-wide object (general plan) is readable
    from a company but not writable (PermissionDenied). An expected chain without an organisation sees
    nothing. Returns the row; with `missing_ok`, None for an id that exists nowhere (a compensation
    undoing a step that never ran), while an id of another tenant is still refused."""
    spec = spec_for(parameter)
    if spec is None:
        raise UnregisteredIdParameter(f"{parameter!r} is not an id")
    try:
        row, chain = await resolve(session, spec, value)
    except NotFound:
        if missing_ok:
            return None
        raise
    authorize(workflow_principal(expected), action, chain, spec.what)
    return row
