"""Staff portal, administration pages: companies (creation, end users), plans and catalogue, number
ranges, webhook endpoints, staff and permissions, API keys, audit log.

Every write calls the JSON API's own handler function (`api.routes.*`) with the API's request model, so
the portal checks, refuses and records exactly what the API does: one implementation, two front ends.
Form errors are the API's messages, shown next to their field. The permission areas are the guard's
(`api.guard.AREA_BY_SEGMENT`): the portal paths reuse the API's segments (`plans`, `webhook-endpoints`...).
Lists page with the shared cursor (`domain.pagination`), keep their filters in the URL and export CSV.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep, StateDep
from api.guard import audit_note
from api.line_schemas import NumberRangeCreate
from api.portal.routes import page
from api.portal.security import CsrfChecked, PortalForbidden, PortalNotFound, PortalPrincipalDep, PortalRoute
from api.routes import api_keys as api_keys_api
from api.routes import audit as audit_api
from api.routes import companies as companies_api
from api.routes import end_users as end_users_api
from api.routes import numbers as numbers_api
from api.routes import offers as offers_api
from api.routes import staff as staff_api
from api.routes import webhooks as webhooks_api
from api.schemas import ArticleCreate, CompanyCreate, CompanyUpdate, EndUserCreate, PlanCreate, PlanUpdate
from domain.authz import AREA_LABELS_FR, Action, Area, Principal
from domain.csv_files import write_csv
from domain.enums import (
    ApiKeyScope,
    ArticleKind,
    AutoRenewMode,
    PhoneNumberStatus,
    PlanType,
    StaffRole,
    SubscriptionKind,
    WebhookDeliveryStatus,
)
from domain.errors import DomainError, NotFound, ValidationFailed
from domain.identifiers import InvalidIdentifier
from domain.models import (
    AuditLog,
    CatalogueArticle,
    Company,
    Organisation,
    PhoneNumber,
    Plan,
    WebhookDelivery,
)
from domain.pagination import AnySelect, Keyset, by_id
from domain.services import listings
from domain.services.listings import range_numbers_query
from domain.webhooks import ALL_EVENTS, EVENT_TYPES

M = TypeVar("M", bound=BaseModel)
E = TypeVar("E")
T = TypeVar("T")

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

PAGE_SIZE = 50
CSV_MAX_ROWS = 10_000

PLAN_TYPE_LABELS_FR = {
    PlanType.PREPAID: "Prépayé",
    PlanType.SUBSCRIPTION: "Abonnement",
    PlanType.PAYGO: "PAYGO (paiement au Mo)",
}
SUBSCRIPTION_KIND_LABELS_FR = {
    SubscriptionKind.STATIC_POOL: "Pool statique",
    SubscriptionKind.DYNAMIC_POOL: "Pool dynamique",
    SubscriptionKind.UNLIMITED: "Illimité",
    SubscriptionKind.MONTHLY: "Mensuel",
    SubscriptionKind.PAY_PER_MB: "Paiement au Mo",
}
AUTO_RENEW_LABELS_FR = {
    AutoRenewMode.PROMPT: "Demander",
    AutoRenewMode.ON: "Activé",
    AutoRenewMode.OFF: "Désactivé",
}
ARTICLE_KIND_LABELS_FR = {
    ArticleKind.PERIODIC_OPTION: "Option périodique",
    ArticleKind.ONE_OFF_OPTION: "Option ponctuelle",
    ArticleKind.HARDWARE: "Matériel",
    ArticleKind.ONE_OFF_FEE: "Frais ponctuels",
}
API_KEY_SCOPE_LABELS_FR = {ApiKeyScope.READ_ONLY: "Lecture seule", ApiKeyScope.READ_WRITE: "Lecture et écriture"}
NUMBER_STATUS_LABELS_FR = {
    PhoneNumberStatus.RESERVED: "Réservé",
    PhoneNumberStatus.ASSIGNED: "Attribué",
    PhoneNumberStatus.QUARANTINED: "En quarantaine",
    PhoneNumberStatus.AVAILABLE: "Libre",
}


# --- helpers -----------------------------------------------------------------------------------------


def _form_text(form: Any, name: str) -> str | None:
    value = form.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _pydantic_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        field = loc[0] if loc else "_"
        message = str(error.get("msg", ""))
        message = message.removeprefix("Value error, ")
        message = message.removeprefix(f"{field}: ")
        errors.setdefault(field, message)
    return errors


def _domain_errors(exc: DomainError | InvalidIdentifier) -> dict[str, str]:
    field = getattr(exc, "field", None) or "_"
    return {field: str(getattr(exc, "reason", exc))}


def _validated(model: type[M], data: dict[str, Any]) -> tuple[M | None, dict[str, str]]:
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None}), {}
    except ValidationError as exc:
        return None, _pydantic_errors(exc)


def _require(principal: Principal, area: Area, action: Action) -> None:
    if not principal.may(area, action):
        raise PortalForbidden(f"Cette page demande la permission « {AREA_LABELS_FR[area]} ».")


async def _organisations(session: SessionDep, principal: Principal) -> list[tuple[str, str]]:
    """The organisations a create form offers: every one for the platform, none to choose otherwise."""
    if not principal.is_platform_admin:
        return []
    rows = await session.execute(select(Organisation.id, Organisation.name).order_by(Organisation.name))
    return [(r[0], r[1]) for r in rows]


def _url(path: str, params: dict[str, str], **changes: str | None) -> str:
    merged = {**params, **changes}
    query = {k: v for k, v in merged.items() if v}
    return path + (f"?{urlencode(query)}" if query else "")


@dataclass
class Listing:
    items: list[Any]
    next_url: str | None
    first_url: str | None
    csv_url: str


async def _listing(
    session: SessionDep,
    query: AnySelect,
    keyset: Keyset,
    key: Callable[[Any], str],
    *,
    path: str,
    params: dict[str, str],
    cursor: str | None,
    scalars: bool = True,
) -> Listing:
    paged = keyset.apply(query, cursor, PAGE_SIZE)
    result = await session.execute(paged)
    rows = list(result.scalars()) if scalars else list(result.all())
    items, next_cursor = keyset.page(rows, PAGE_SIZE, key)
    return Listing(
        items=items,
        next_url=_url(path, params, cursor=next_cursor) if next_cursor else None,
        first_url=_url(path, params) if cursor else None,
        csv_url=_url(path, params, format="csv"),
    )


def _next_cursor(response: Response) -> str | None:
    """The cursor of the next page from a bare-array API list's `Link: <…?cursor=…>; rel="next"`."""
    link = response.headers.get("Link")
    if not link:
        return None
    target = link.partition(">")[0].removeprefix("<")
    cursors = parse_qs(urlsplit(target).query).get("cursor")
    return cursors[0] if cursors else None


# One API page: the handler called with its own `limit`, `cursor` and a response for its `Link` header.
ApiPage = Callable[[Response, int, str | None], Awaitable[list[T]]]


async def _api_listing(fetch: ApiPage[T], *, path: str, params: dict[str, str], cursor: str | None) -> Listing:
    """A page of a bare-array API list, in the API's order and with the API's cursor."""
    response = Response()
    items = await fetch(response, PAGE_SIZE, cursor or None)
    next_cursor = _next_cursor(response)
    return Listing(
        items=items,
        next_url=_url(path, params, cursor=next_cursor) if next_cursor else None,
        first_url=_url(path, params) if cursor else None,
        csv_url=_url(path, params, format="csv"),
    )


async def _api_all(fetch: ApiPage[T]) -> list[T]:
    """Every row of a bare-array API list up to `CSV_MAX_ROWS`, following its cursor (the exports)."""
    rows: list[T] = []
    cursor: str | None = None
    while len(rows) < CSV_MAX_ROWS:
        response = Response()
        rows.extend(await fetch(response, 500, cursor))
        cursor = _next_cursor(response)
        if cursor is None:
            break
    return rows[:CSV_MAX_ROWS]


def _csv(filename: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Response:
    return Response(
        write_csv(header, rows).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _all_rows(session: SessionDep, query: AnySelect, order: Any) -> list[Any]:
    return list((await session.execute(query.order_by(order).limit(CSV_MAX_ROWS))).scalars())


# --- companies ---------------------------------------------------------------------------------------


def _company_form(request: Request) -> dict[str, Any]:
    return {"name": "", "siret": "", "vat_number": "", "billing_email": "", "address": "", "is_virtual": False}


@router.get("/companies/new")
async def company_new(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    _require(principal, Area.COMPANY, Action.WRITE)
    context = {"values": _company_form(request), "errors": {}, "orgs": await _organisations(session, principal)}
    return page(request, settings, principal, "portal/admin/company_form.html", context, nav="companies")


@router.post("/companies/new", dependencies=[CsrfChecked])
async def company_create(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep, state: StateDep
) -> Response:
    form = await request.form()
    values = {
        "org_id": _form_text(form, "org_id"),
        "name": _form_text(form, "name"),
        "siret": _form_text(form, "siret"),
        "vat_number": _form_text(form, "vat_number"),
        "billing_email": _form_text(form, "billing_email"),
        "address": _form_text(form, "address"),
        "is_virtual": form.get("is_virtual") == "on",
    }
    body, errors = _validated(CompanyCreate, values)
    created = None
    if body is not None:
        try:
            created = await companies_api.create(body, principal, session, state)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
    if created is None:
        await session.rollback()
        context = {"values": values, "errors": errors, "orgs": await _organisations(session, principal)}
        return page(
            request, settings, principal, "portal/admin/company_form.html", context, nav="companies", status_code=400
        )
    audit_note(action="company.created", target=f"company:{created.id}", org_id=created.org_id, company_id=created.id)
    return RedirectResponse(f"/portal/companies/{created.id}?created=1", status_code=303)


COMPANY_EDIT_FIELDS = ("name", "siret", "vat_number", "billing_email", "address")


async def _company_for_edit(session: SessionDep, principal: Principal, company_id: str) -> Company:
    _require(principal, Area.COMPANY, Action.WRITE)
    if principal.company_id is not None:
        raise PortalForbidden("Seul le personnel de l'organisation peut modifier une entreprise.")
    company = await session.get(Company, company_id)
    if company is None:  # the guard has already refused another tenant's id
        raise PortalNotFound("Cette entreprise n'existe pas ou n'est pas accessible avec votre compte.")
    return company


def _company_edit_page(
    request: Request,
    settings: SettingsDep,
    principal: Principal,
    company: Company,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    context = {"company": company, "values": values, "errors": errors}
    return page(
        request,
        settings,
        principal,
        "portal/admin/company_edit.html",
        context,
        nav="companies",
        status_code=status_code,
    )


@router.get("/companies/{company_id}/edit")
async def company_edit(
    company_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    company = await _company_for_edit(session, principal, company_id)
    values = {name: getattr(company, name) or "" for name in COMPANY_EDIT_FIELDS}
    return _company_edit_page(request, settings, principal, company, values, {})


@router.post("/companies/{company_id}/edit", dependencies=[CsrfChecked])
async def company_update(
    company_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    company = await _company_for_edit(session, principal, company_id)
    form = await request.form()
    # Every field of the form is sent: an emptied optional field is cleared (null), the name is required.
    values: dict[str, Any] = {name: _form_text(form, name) for name in COMPANY_EDIT_FIELDS}
    errors: dict[str, str] = {}
    body = None
    try:
        body = CompanyUpdate.model_validate(values)
    except ValidationError as exc:
        errors = _pydantic_errors(exc)
    if values["name"] is None:
        body, errors = None, {**errors, "name": "la raison sociale est obligatoire"}
    if body is not None:
        try:
            await companies_api.update(company_id, body, principal, session)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            return RedirectResponse(f"/portal/companies/{company_id}?updated=1", status_code=303)
    await session.rollback()
    company = await _company_for_edit(session, principal, company_id)
    shown = {k: v or "" for k, v in values.items()}
    return _company_edit_page(request, settings, principal, company, shown, errors, status_code=400)


@router.post("/companies/{company_id}/end-users", dependencies=[CsrfChecked])
async def company_end_user_create(
    company_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    values = {
        "company_id": company_id,
        "email": _form_text(form, "email"),
        "full_name": _form_text(form, "full_name"),
        "password": _form_text(form, "password"),
    }
    body, errors = _validated(EndUserCreate, values)
    if body is not None:
        try:
            user = await end_users_api.create_end_user(body, principal, session)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            audit_note(action="end_user.created", target=f"end_user:{user.id}", end_user_id=user.id)
            return RedirectResponse(f"/portal/companies/{company_id}#end-users", status_code=303)
    await session.rollback()
    return RedirectResponse(
        f"/portal/companies/{company_id}?"
        + urlencode({f"eu_error_{k}": v for k, v in errors.items()} | {"eu_email": values["email"] or ""})
        + "#end-users",
        status_code=303,
    )


# --- plans and catalogue -----------------------------------------------------------------------------


def _enum_or_none(enum: Callable[[str], E], raw: str | None) -> E | None:
    try:
        return enum(raw) if raw else None
    except ValueError:
        return None


def _plan_context(principal: Principal) -> dict[str, Any]:
    return {
        "plan_types": PLAN_TYPE_LABELS_FR,
        "subscription_kinds": SUBSCRIPTION_KIND_LABELS_FR,
        "auto_renew_modes": AUTO_RENEW_LABELS_FR,
        "article_kinds": ARTICLE_KIND_LABELS_FR,
    }


@router.get("/plans")
async def plans(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    plan_type: str | None = None,
    company_id: str | None = None,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    kind = _enum_or_none(PlanType, plan_type)
    query = listings.plans_query(principal, plan_type=kind, company_id=(company_id or None))
    if format == "csv":
        rows = await _all_rows(session, query, Plan.id)
        return _csv(
            "forfaits.csv",
            ["id", "nom", "type", "entreprise", "prix_vente", "prix_achat", "devise", "donnees_mo", "validite_j"],
            [
                [
                    p.id,
                    p.name,
                    PLAN_TYPE_LABELS_FR.get(p.plan_type, p.plan_type),
                    p.company_id or "",
                    f"{p.price_minor / 100:.2f}".replace(".", ","),
                    f"{p.purchase_price_minor / 100:.2f}".replace(".", ","),
                    p.currency,
                    p.data_allowance_bytes // (1024 * 1024),
                    p.validity_days,
                ]
                for p in rows
            ],
        )
    params = {"plan_type": kind.value if kind else "", "company_id": company_id or ""}
    listing = await _listing(
        session, query, by_id(Plan.id), lambda p: p.id, path="/portal/plans", params=params, cursor=cursor or None
    )
    context = {
        "listing": listing,
        "params": params,
        "can_edit": principal.company_id is None and principal.may(Area.PLAN, Action.WRITE),
        "updated": request.query_params.get("updated"),
        **_plan_context(principal),
    }
    return page(request, settings, principal, "portal/admin/plans.html", context, nav="plans")


_PLAN_FIELDS = (
    "org_id",
    "company_id",
    "name",
    "plan_type",
    "subscription_kind",
    "price_minor",
    "currency",
    "data_allowance_mb",
    "validity_days",
    "carrier",
    "auto_renew_mode",
    "supplier_offer_code",
    "purchase_price_minor",
)


def _euros_to_minor(raw: str | None) -> str | None:
    """`12,50` → `1250`; anything else is left for the API model to refuse."""
    if raw is None:
        return None
    text = raw.replace(" ", "").replace("\u202f", "").replace(",", ".")
    try:
        return str(round(float(text) * 100))
    except ValueError:
        return raw


async def _plan_form_context(session: SessionDep, principal: Principal) -> dict[str, Any]:
    companies = await session.execute(
        listings.companies_query(principal)
        .order_by(Company.name)
        .limit(500)
        .with_only_columns(Company.id, Company.name)
    )
    return {
        **_plan_context(principal),
        "orgs": await _organisations(session, principal),
        "companies": [(r[0], r[1]) for r in companies],
    }


@router.get("/plans/new")
async def plan_new(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    _require(principal, Area.PLAN, Action.WRITE)
    values = {"currency": "EUR", "validity_days": "30", "plan_type": "prepaid", "auto_renew_mode": "prompt"}
    context = {"values": values, "errors": {}, **await _plan_form_context(session, principal)}
    return page(request, settings, principal, "portal/admin/plan_form.html", context, nav="plans")


@router.post("/plans/new", dependencies=[CsrfChecked])
async def plan_create(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    values: dict[str, Any] = {name: _form_text(form, name) for name in _PLAN_FIELDS}
    values["price_minor"] = _euros_to_minor(_form_text(form, "price"))
    values["purchase_price_minor"] = _euros_to_minor(_form_text(form, "purchase_price"))
    values["prorated"] = form.get("prorated") == "on"
    values["esim_store"] = form.get("esim_store") == "on"
    body, errors = _validated(PlanCreate, values)
    if "price_minor" in errors:
        errors["price"] = errors.pop("price_minor")
    if "purchase_price_minor" in errors:
        errors["purchase_price"] = errors.pop("purchase_price_minor")
    if body is not None:
        try:
            plan = await offers_api.create_plan(body, principal, session)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            audit_note(action="plan.created", target=f"plan:{plan.id}", org_id=plan.org_id)
            return RedirectResponse(f"/portal/plans?created={plan.id}", status_code=303)
    await session.rollback()
    shown = {**values, "price": _form_text(form, "price"), "purchase_price": _form_text(form, "purchase_price")}
    context = {"values": shown, "errors": errors, **await _plan_form_context(session, principal)}
    return page(request, settings, principal, "portal/admin/plan_form.html", context, nav="plans", status_code=400)


PLAN_EDIT_FIELDS = ("name", "data_allowance_mb", "validity_days", "auto_renew_mode")


async def _plan_for_edit(session: SessionDep, principal: Principal, plan_id: str) -> Plan:
    _require(principal, Area.PLAN, Action.WRITE)
    if principal.company_id is not None:
        raise PortalForbidden("Seul le personnel de l'organisation peut modifier un forfait.")
    plan = await session.get(Plan, plan_id)
    if plan is None:  # the guard has already refused another tenant's id
        raise PortalNotFound("Ce forfait n'existe pas ou n'est pas accessible avec votre compte.")
    return plan


def _plan_edit_page(
    request: Request,
    settings: SettingsDep,
    principal: Principal,
    plan: Plan,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    context = {"plan": plan, "values": values, "errors": errors, **_plan_context(principal)}
    template = "portal/admin/plan_edit.html"
    return page(request, settings, principal, template, context, nav="plans", status_code=status_code)


def _euros(minor: int) -> str:
    return f"{minor / 100:.2f}".replace(".", ",")


@router.get("/plans/{plan_id}/edit")
async def plan_edit(
    plan_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    plan = await _plan_for_edit(session, principal, plan_id)
    values = {
        "name": plan.name,
        "price": _euros(plan.price_minor),
        "purchase_price": _euros(plan.purchase_price_minor),
        "data_allowance_mb": str(plan.data_allowance_bytes // (1024 * 1024)),
        "validity_days": str(plan.validity_days),
        "auto_renew_mode": plan.auto_renew_mode.value,
        "esim_store": plan.esim_store,
    }
    return _plan_edit_page(request, settings, principal, plan, values, {})


@router.post("/plans/{plan_id}/edit", dependencies=[CsrfChecked])
async def plan_update(
    plan_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    plan = await _plan_for_edit(session, principal, plan_id)
    form = await request.form()
    values: dict[str, Any] = {name: _form_text(form, name) for name in PLAN_EDIT_FIELDS}
    values["price_minor"] = _euros_to_minor(_form_text(form, "price"))
    values["purchase_price_minor"] = _euros_to_minor(_form_text(form, "purchase_price"))
    values["esim_store"] = form.get("esim_store") == "on"
    required = {"name": "le nom est obligatoire", "price_minor": "le prix de vente est obligatoire"}
    missing = {name: reason for name, reason in required.items() if values[name] is None}
    body, errors = _validated(PlanUpdate, values)
    if missing:
        body, errors = None, {**errors, **missing}
    for api_name, form_name in (("price_minor", "price"), ("purchase_price_minor", "purchase_price")):
        if api_name in errors:
            errors[form_name] = errors.pop(api_name)
    if body is not None:
        try:
            await offers_api.update_plan(plan_id, body, principal, session)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            return RedirectResponse(f"/portal/plans?updated={plan_id}", status_code=303)
    await session.rollback()
    plan = await _plan_for_edit(session, principal, plan_id)
    shown = {**values, "price": _form_text(form, "price"), "purchase_price": _form_text(form, "purchase_price")}
    return _plan_edit_page(request, settings, principal, plan, shown, errors, status_code=400)


@router.get("/catalogue")
async def catalogue(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    kind: str | None = None,
    category: str | None = None,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    article_kind = _enum_or_none(ArticleKind, kind)
    query = listings.articles_query(principal, kind=article_kind, category=(category or None))
    if format == "csv":
        rows = await _all_rows(session, query, CatalogueArticle.id)
        return _csv(
            "catalogue.csv",
            ["id", "code", "libelle", "type", "prix_vente", "prix_achat", "devise", "donnees_mo", "categorie"],
            [
                [
                    a.id,
                    a.code,
                    a.label,
                    ARTICLE_KIND_LABELS_FR.get(a.kind, a.kind),
                    f"{a.sale_price_minor / 100:.2f}".replace(".", ","),
                    f"{a.purchase_price_minor / 100:.2f}".replace(".", ","),
                    a.currency,
                    a.data_bytes // (1024 * 1024),
                    a.category,
                ]
                for a in rows
            ],
        )
    params = {"kind": article_kind.value if article_kind else "", "category": category or ""}
    listing = await _listing(
        session,
        query,
        by_id(CatalogueArticle.id),
        lambda a: a.id,
        path="/portal/catalogue",
        params=params,
        cursor=cursor or None,
    )
    context = {"listing": listing, "params": params, "values": {"currency": "EUR", "category": "Mobile"}}
    context |= {"errors": {}, "orgs": await _organisations(session, principal), **_plan_context(principal)}
    return page(request, settings, principal, "portal/admin/catalogue.html", context, nav="plans")


@router.post("/catalogue", dependencies=[CsrfChecked])
async def article_create(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    values: dict[str, Any] = {
        name: _form_text(form, name)
        for name in ("org_id", "code", "label", "kind", "currency", "data_mb", "category", "carrier", "white_label")
    }
    values["sale_price_minor"] = _euros_to_minor(_form_text(form, "sale_price"))
    values["purchase_price_minor"] = _euros_to_minor(_form_text(form, "purchase_price"))
    body, errors = _validated(ArticleCreate, values)
    for name in ("sale_price", "purchase_price"):
        if f"{name}_minor" in errors:
            errors[name] = errors.pop(f"{name}_minor")
    if body is not None:
        try:
            article = await offers_api.create_article(body, principal, session)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            audit_note(action="article.created", target=f"article:{article.id}", org_id=article.org_id)
            return RedirectResponse(f"/portal/catalogue?created={article.id}", status_code=303)
    await session.rollback()
    query = listings.articles_query(principal)
    listing = await _listing(
        session, query, by_id(CatalogueArticle.id), lambda a: a.id, path="/portal/catalogue", params={}, cursor=None
    )
    shown = {
        **values,
        "sale_price": _form_text(form, "sale_price"),
        "purchase_price": _form_text(form, "purchase_price"),
    }
    context = {"listing": listing, "params": {"kind": "", "category": ""}, "values": shown, "errors": errors}
    context |= {"orgs": await _organisations(session, principal), **_plan_context(principal)}
    return page(request, settings, principal, "portal/admin/catalogue.html", context, nav="plans", status_code=400)


# --- number ranges -----------------------------------------------------------------------------------


def _ranges_of(
    principal: Principal, session: SessionDep, orgs: list[tuple[str, str]], org_id: str | None
) -> tuple[str | None, ApiPage[Any]]:
    """The organisation shown (a platform administrator's first one unless chosen; the caller's own
    otherwise) and the pages of its ranges."""
    chosen = org_id or (orgs[0][0] if orgs else None)

    async def fetch(response: Response, limit: int, cursor: str | None) -> list[Any]:
        return await numbers_api.list_ranges(principal, session, response, org_id=chosen, limit=limit, cursor=cursor)

    return chosen, fetch


async def _ranges_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    *,
    org_id: str | None,
    cursor: str | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    orgs = await _organisations(session, principal)
    chosen, fetch = _ranges_of(principal, session, orgs, org_id)
    listing = await _api_listing(fetch, path="/portal/number-ranges", params={"org_id": chosen or ""}, cursor=cursor)
    context = {
        "listing": listing,
        "orgs": orgs,
        "org_id": chosen or "",
        "values": values or {},
        "errors": errors or {},
    }
    return page(
        request, settings, principal, "portal/admin/number_ranges.html", context, nav="numbers", status_code=status_code
    )


@router.get("/number-ranges")
async def number_ranges(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    org_id: str | None = None,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    if format == "csv":
        _, fetch = _ranges_of(principal, session, await _organisations(session, principal), org_id)
        ranges = await _api_all(fetch)
        return _csv(
            "plages-de-numeros.csv",
            ["id", "libelle", "premier", "dernier", "operateur", "taille", "utilises", "libres"],
            [
                [r.id, r.label, r.first_msisdn, r.last_msisdn, r.carrier or "", r.size, r.in_use, r.size - r.in_use]
                for r in ranges
            ],
        )
    return await _ranges_page(request, principal, session, settings, org_id=org_id, cursor=cursor)


@router.post("/number-ranges", dependencies=[CsrfChecked])
async def number_range_create(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    values = {name: _form_text(form, name) for name in ("org_id", "label", "first_msisdn", "last_msisdn", "carrier")}
    body, errors = _validated(NumberRangeCreate, values)
    if body is not None:
        try:
            created = await numbers_api.create(body, principal, session)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            audit_note(action="number_range.created", target=f"number_range:{created.id}", org_id=created.org_id)
            return RedirectResponse(f"/portal/number-ranges/{created.id}", status_code=303)
    await session.rollback()
    return await _ranges_page(
        request,
        principal,
        session,
        settings,
        org_id=values["org_id"],
        values=values,
        errors=errors,
        status_code=400,
    )


@router.get("/number-ranges/{number_range_id}")
async def number_range_detail(
    number_range_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    status: str | None = None,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    try:
        usage = await numbers_api.get_range(number_range_id[:32], principal, session)
    except NotFound as exc:
        raise PortalNotFound("Cette plage de numéros n'existe pas ou n'est pas accessible avec votre compte.") from exc
    chosen = _enum_or_none(PhoneNumberStatus, status) or PhoneNumberStatus.QUARANTINED
    query = range_numbers_query(usage.id, status=chosen)
    if format == "csv":
        numbers = await _all_rows(session, query, PhoneNumber.msisdn)
        return _csv(
            f"numeros-{chosen.value}.csv",
            ["numero", "statut", "ligne", "fin_quarantaine", "portabilite_entrante"],
            [
                [
                    n.msisdn,
                    NUMBER_STATUS_LABELS_FR[n.status],
                    n.line_id or "",
                    n.quarantine_until.isoformat() if n.quarantine_until else "",
                    "oui" if n.ported_in else "non",
                ]
                for n in numbers
            ],
        )
    numbers_page = await numbers_api.list_numbers(
        usage.id, principal, session, status=chosen, limit=PAGE_SIZE, cursor=cursor or None
    )
    params = {"status": chosen.value}
    path = f"/portal/number-ranges/{usage.id}"
    listing = Listing(
        items=list(numbers_page.items),
        next_url=_url(path, params, cursor=numbers_page.next_cursor) if numbers_page.next_cursor else None,
        first_url=_url(path, params) if cursor else None,
        csv_url=_url(path, params, format="csv"),
    )
    context = {
        "number_range": usage,
        "size": usage.size,
        "held": usage.allocated,
        "quarantined": usage.quarantined,
        "free": usage.free,
        "listing": listing,
        "status": chosen,
        "number_statuses": NUMBER_STATUS_LABELS_FR,
    }
    return page(request, settings, principal, "portal/admin/number_range.html", context, nav="numbers")


# --- webhook endpoints -------------------------------------------------------------------------------


async def _webhooks_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    secret: str | None = None,
    cursor: str | None = None,
    status_code: int = 200,
) -> Response:
    listing = await _api_listing(
        lambda response, limit, after: webhooks_api.list_endpoints(
            principal, session, response, limit=limit, cursor=after
        ),
        path="/portal/webhook-endpoints",
        params={},
        cursor=cursor,
    )
    context = {
        "listing": listing,
        "event_types": EVENT_TYPES,
        "all_events": ALL_EVENTS,
        "orgs": await _organisations(session, principal),
        "values": values or {"events": [ALL_EVENTS]},
        "errors": errors or {},
        "secret": secret,
    }
    return page(
        request, settings, principal, "portal/admin/webhooks.html", context, nav="webhooks", status_code=status_code
    )


@router.get("/webhook-endpoints")
async def webhook_endpoints(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    if format == "csv":
        endpoints = await _api_all(
            lambda response, limit, after: webhooks_api.list_endpoints(
                principal, session, response, limit=limit, cursor=after
            )
        )
        return _csv(
            "webhooks.csv",
            ["id", "organisation", "url", "evenements", "actif", "valide_le", "cree_par", "cree_le"],
            [
                [
                    e.id,
                    e.org_id,
                    e.url,
                    " ".join(e.events),
                    "oui" if e.enabled else "non",
                    e.validated_at.isoformat() if e.validated_at else "",
                    e.created_by,
                    e.created_at.isoformat(),
                ]
                for e in endpoints
            ],
        )
    return await _webhooks_page(request, principal, session, settings, cursor=cursor)


@router.post("/webhook-endpoints", dependencies=[CsrfChecked])
async def webhook_endpoint_create(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep, state: StateDep
) -> Response:
    form = await request.form()
    events = [e for e in form.getlist("events") if isinstance(e, str)]
    values: dict[str, Any] = {"org_id": _form_text(form, "org_id"), "url": _form_text(form, "url"), "events": events}
    body, errors = _validated(webhooks_api.EndpointCreate, values)
    if body is not None:
        try:
            created = await webhooks_api.create_endpoint(body, principal, session, state)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            # The secret is shown on this answer only (as the API's creation answer): never in a URL.
            return await _webhooks_page(request, principal, session, settings, secret=created.secret)
    await session.rollback()
    return await _webhooks_page(request, principal, session, settings, values=values, errors=errors, status_code=400)


@router.post("/webhook-endpoints/{webhook_endpoint_id}/disable", dependencies=[CsrfChecked])
async def webhook_endpoint_disable(
    webhook_endpoint_id: str, principal: PortalPrincipalDep, session: SessionDep
) -> Response:
    await webhooks_api.delete_endpoint(webhook_endpoint_id, principal, session)
    return RedirectResponse(f"/portal/webhook-endpoints/{webhook_endpoint_id}", status_code=303)


@router.post("/webhook-endpoints/{webhook_endpoint_id}/validation", dependencies=[CsrfChecked])
async def webhook_endpoint_revalidate(
    webhook_endpoint_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    state: StateDep,
) -> Response:
    """The API's re-validation (`echo` again): a refusal is shown on the endpoint's page."""
    try:
        await webhooks_api.revalidate_endpoint(webhook_endpoint_id, principal, session, state)
    except ValidationFailed as exc:
        await session.rollback()
        return await _endpoint_page(
            webhook_endpoint_id, request, principal, session, settings, error=exc.reason, status_code=400
        )
    return RedirectResponse(f"/portal/webhook-endpoints/{webhook_endpoint_id}?validated=1", status_code=303)


@router.post("/webhook-endpoints/{webhook_endpoint_id}/secret-rotation", dependencies=[CsrfChecked])
async def webhook_endpoint_rotate(
    webhook_endpoint_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    state: StateDep,
) -> Response:
    """A new signing secret (the API's rotation, 24 h overlap), shown once on this answer."""
    form = await request.form()
    body, errors = _validated(webhooks_api.SecretRotation, {"overlap_hours": _form_text(form, "overlap_hours")})
    if body is None:
        return await _endpoint_page(
            webhook_endpoint_id, request, principal, session, settings, error=next(iter(errors.values()))
        )
    rotated = await webhooks_api.rotate_secret(webhook_endpoint_id, body, principal, session, state)
    return await _endpoint_page(webhook_endpoint_id, request, principal, session, settings, secret=rotated.secret)


@router.get("/webhook-endpoints/{webhook_endpoint_id}")
async def webhook_endpoint_detail(
    webhook_endpoint_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    status: str | None = None,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    return await _endpoint_page(
        webhook_endpoint_id, request, principal, session, settings, status=status, cursor=cursor, format=format
    )


async def _endpoint_page(
    webhook_endpoint_id: str,
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    *,
    status: str | None = None,
    cursor: str | None = None,
    format: str | None = None,
    error: str | None = None,
    secret: str | None = None,
    status_code: int = 200,
) -> Response:
    endpoint = await webhooks_api.get_endpoint(webhook_endpoint_id, principal, session)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    delivery_status = _enum_or_none(WebhookDeliveryStatus, status)
    if delivery_status is not None:
        query = query.where(WebhookDelivery.status == delivery_status)
    if format == "csv":
        deliveries = await _all_rows(session, query, WebhookDelivery.created_at.desc())
        return _csv(
            "livraisons-webhook.csv",
            ["evenement", "type", "statut", "tentatives", "dernier_code", "derniere_erreur", "creee", "livree"],
            [
                [
                    d.event_id,
                    d.event_type,
                    d.status,
                    d.attempts,
                    d.last_status_code or "",
                    d.last_error or "",
                    d.created_at.isoformat(),
                    d.delivered_at.isoformat() if d.delivered_at else "",
                ]
                for d in deliveries
            ],
        )
    params = {"status": delivery_status.value if delivery_status else ""}
    listing = await _listing(
        session,
        query,
        by_id(WebhookDelivery.id),
        lambda d: d.id,
        path=f"/portal/webhook-endpoints/{endpoint.id}",
        params=params,
        cursor=cursor or None,
    )
    context = {"endpoint": endpoint, "listing": listing, "params": params, "error": error, "secret": secret}
    return page(
        request,
        settings,
        principal,
        "portal/admin/webhook_endpoint.html",
        context,
        nav="webhooks",
        status_code=status_code,
    )


_REDELIVERIES = "/webhook-endpoints/{webhook_endpoint_id}/deliveries/{delivery_id}/redeliveries"


@router.post(_REDELIVERIES, dependencies=[CsrfChecked])
async def webhook_redeliver(
    webhook_endpoint_id: str,
    delivery_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    state: StateDep,
) -> Response:
    """The API's redelivery (a new run of the delivery workflow); a refusal is shown on the endpoint's page."""
    try:
        started = await webhooks_api.redeliver(webhook_endpoint_id, delivery_id, principal, session, state)
    except DomainError as exc:
        await session.rollback()
        return await _endpoint_page(
            webhook_endpoint_id, request, principal, session, settings, error=exc.reason, status_code=409
        )
    return RedirectResponse(
        f"/portal/webhook-endpoints/{webhook_endpoint_id}/deliveries/{delivery_id}?redelivered={started.redelivery}",
        status_code=303,
    )


@router.get("/webhook-endpoints/{webhook_endpoint_id}/deliveries/{delivery_id}")
async def webhook_delivery_detail(
    webhook_endpoint_id: str,
    delivery_id: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    delivery = await webhooks_api.get_delivery(webhook_endpoint_id, delivery_id, principal, session)
    context = {
        "endpoint_id": webhook_endpoint_id,
        "delivery": delivery,
        "redelivered": request.query_params.get("redelivered"),
    }
    return page(request, settings, principal, "portal/admin/webhook_delivery.html", context, nav="webhooks")


# --- staff and permissions ---------------------------------------------------------------------------


def _permissions_from(form: Any) -> list[str]:
    """One select per area (none, read, read-write), or the « every area » box → the API's permission list."""
    if form.get("all_areas") == "on":
        return ["*"]
    permissions = []
    for area in Area:
        mode = form.get(f"area_{area.value}")
        if mode == "write":
            permissions.append(area.value)
        elif mode == "read":
            permissions.append(f"{area.value}:read")
    return permissions


def _modes(permissions: Sequence[str]) -> dict[str, str]:
    if "*" in permissions:
        return {area.value: "write" for area in Area}
    modes = {}
    for permission in permissions:
        area, _, mode = permission.partition(":")
        modes[area] = "read" if mode == "read" else "write"
    return modes


async def _staff_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    cursor: str | None = None,
    status_code: int = 200,
) -> Response:
    listing = await _api_listing(
        lambda response, limit, after: staff_api.list_staff(principal, session, response, limit=limit, cursor=after),
        path="/portal/staff",
        params={},
        cursor=cursor,
    )
    companies = await session.execute(
        listings.companies_query(principal)
        .order_by(Company.name)
        .limit(500)
        .with_only_columns(Company.id, Company.name)
    )
    context = {
        "listing": listing,
        "areas": AREA_LABELS_FR,
        "roles": {r: r for r in StaffRole},
        "orgs": await _organisations(session, principal),
        "companies": [(r[0], r[1]) for r in companies],
        "values": values or {"role": "company_staff" if principal.company_id else "org_staff", "modes": {}},
        "errors": errors or {},
    }
    return page(request, settings, principal, "portal/admin/staff.html", context, nav="staff", status_code=status_code)


@router.get("/staff")
async def staff_list(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    if format == "csv":
        members = await _api_all(
            lambda response, limit, after: staff_api.list_staff(principal, session, response, limit=limit, cursor=after)
        )
        return _csv(
            "personnel.csv",
            ["id", "email", "nom", "role", "organisation", "entreprise", "permissions", "actif", "derniere_connexion"],
            [
                [
                    m.id,
                    m.email,
                    m.full_name,
                    m.role.value,
                    m.org_id or "",
                    m.company_id or "",
                    " ".join(m.permissions),
                    "oui" if m.active else "non",
                    m.last_login_at.isoformat() if m.last_login_at else "",
                ]
                for m in members
            ],
        )
    return await _staff_page(request, principal, session, settings, cursor=cursor)


@router.post("/staff", dependencies=[CsrfChecked])
async def staff_invite(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    permissions = _permissions_from(form)
    values: dict[str, Any] = {
        name: _form_text(form, name) for name in ("email", "full_name", "role", "org_id", "company_id", "password")
    }
    values["permissions"] = permissions
    body, errors = _validated(staff_api.StaffCreate, values)
    if body is not None:
        try:
            member = await staff_api.create_staff(body, principal, session)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            return RedirectResponse(f"/portal/staff/{member.id}?created=1", status_code=303)
    await session.rollback()
    shown = {**values, "password": "", "modes": _modes(permissions), "all_areas": permissions == ["*"]}
    return await _staff_page(request, principal, session, settings, values=shown, errors=errors, status_code=400)


@router.get("/staff/{staff_id}")
async def staff_detail(
    staff_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _staff_member_page(staff_id, request, principal, session, settings)


async def _staff_member_page(
    staff_id: str,
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    member = await staff_api.get_staff(staff_id, principal, session)
    context = {
        "member": member,
        "areas": AREA_LABELS_FR,
        "modes": _modes(member.permissions),
        "all_areas": "*" in member.permissions,
        "errors": errors or {},
        "created": request.query_params.get("created") == "1",
    }
    return page(
        request, settings, principal, "portal/admin/staff_member.html", context, nav="staff", status_code=status_code
    )


@router.post("/staff/{staff_id}/permissions", dependencies=[CsrfChecked])
async def staff_permissions(
    staff_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    permissions = _permissions_from(form)
    try:
        await staff_api.update_permissions(
            staff_id, staff_api.PermissionsUpdate(permissions=permissions), principal, session
        )
    except DomainError as exc:
        await session.rollback()
        member = await staff_api.get_staff(staff_id, principal, session)
        context = {
            "member": member,
            "areas": AREA_LABELS_FR,
            "modes": _modes(permissions),
            "all_areas": permissions == ["*"],
            "errors": _domain_errors(exc),
            "created": False,
        }
        return page(
            request, settings, principal, "portal/admin/staff_member.html", context, nav="staff", status_code=400
        )
    return RedirectResponse(f"/portal/staff/{staff_id}?saved=1", status_code=303)


@router.post("/staff/{staff_id}/password", dependencies=[CsrfChecked])
async def staff_password_reset(
    staff_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """The API's administrator reset: a provisional password, changed at the next login."""
    form = await request.form()
    body, errors = _validated(
        staff_api.AdminPasswordReset, {"new_password": _form_text(form, "new_password"), "force_change": True}
    )
    if body is not None:
        try:
            await staff_api.admin_reset_password(staff_id, body, principal, session)
        except ValidationFailed as exc:
            errors = {"new_password": exc.reason}
        else:
            return RedirectResponse(f"/portal/staff/{staff_id}?password=1", status_code=303)
    await session.rollback()
    return await _staff_member_page(staff_id, request, principal, session, settings, errors=errors, status_code=400)


@router.post("/staff/{staff_id}/2fa-reset", dependencies=[CsrfChecked])
async def staff_2fa_reset(staff_id: str, principal: PortalPrincipalDep, session: SessionDep) -> Response:
    await staff_api.admin_reset_2fa(staff_id, principal, session)
    return RedirectResponse(f"/portal/staff/{staff_id}?totp=1", status_code=303)


@router.post("/staff/{staff_id}/deactivation", dependencies=[CsrfChecked])
async def staff_deactivate(staff_id: str, principal: PortalPrincipalDep, session: SessionDep) -> Response:
    await staff_api.deactivate_staff(staff_id, principal, session)
    return RedirectResponse(f"/portal/staff/{staff_id}?deactivated=1", status_code=303)


# --- API keys ----------------------------------------------------------------------------------------


async def _keys_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    presented: str | None = None,
    cursor: str | None = None,
    status_code: int = 200,
) -> Response:
    listing = await _api_listing(
        lambda response, limit, after: api_keys_api.list_api_keys(
            principal, session, response, limit=limit, cursor=after
        ),
        path="/portal/api-keys",
        params={},
        cursor=cursor,
    )
    context = {
        "listing": listing,
        "scopes": API_KEY_SCOPE_LABELS_FR,
        "orgs": await _organisations(session, principal),
        "values": values or {"scope": "read_only", "expires_in_days": "365"},
        "errors": errors or {},
        "presented": presented,
    }
    return page(
        request, settings, principal, "portal/admin/api_keys.html", context, nav="api_keys", status_code=status_code
    )


@router.get("/api-keys")
async def api_keys(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    if format == "csv":
        keys = await _api_all(
            lambda response, limit, after: api_keys_api.list_api_keys(
                principal, session, response, limit=limit, cursor=after
            )
        )
        return _csv(
            "cles-api.csv",
            ["id", "organisation", "nom", "cle", "portee", "creee_le", "expire_le", "derniere_utilisation", "etat"],
            [
                [
                    k.id,
                    k.org_id,
                    k.name,
                    f"{k.prefix}…{k.last4}",
                    API_KEY_SCOPE_LABELS_FR.get(k.scope, k.scope),
                    k.created_at.isoformat(),
                    k.expires_at.isoformat() if k.expires_at else "",
                    k.last_used_at.isoformat() if k.last_used_at else "",
                    "révoquée" if k.revoked_at else "remplacée" if k.replaced_by_id else "active",
                ]
                for k in keys
            ],
        )
    return await _keys_page(request, principal, session, settings, cursor=cursor)


@router.post("/api-keys", dependencies=[CsrfChecked])
async def api_key_create(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    values = {name: _form_text(form, name) for name in ("name", "scope", "org_id", "expires_in_days")}
    body, errors = _validated(api_keys_api.ApiKeyCreate, values)
    if body is not None:
        try:
            created = await api_keys_api.create_api_key(body, principal, session)
        except (DomainError, InvalidIdentifier) as exc:
            errors = _domain_errors(exc)
        else:
            return await _keys_page(request, principal, session, settings, presented=created.key)
    await session.rollback()
    return await _keys_page(request, principal, session, settings, values=values, errors=errors, status_code=400)


@router.post("/api-keys/{api_key_id}/rotation", dependencies=[CsrfChecked])
async def api_key_rotate(
    api_key_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    overlap = _form_text(form, "overlap_hours") or "0"
    body, errors = _validated(api_keys_api.ApiKeyRotation, {"overlap_hours": overlap})
    if body is None:
        return await _keys_page(request, principal, session, settings, errors=errors, status_code=400)
    created = await api_keys_api.rotate_api_key(api_key_id, body, principal, session)
    return await _keys_page(request, principal, session, settings, presented=created.key)


@router.post("/api-keys/{api_key_id}/revocation", dependencies=[CsrfChecked])
async def api_key_revoke(api_key_id: str, principal: PortalPrincipalDep, session: SessionDep) -> Response:
    await api_keys_api.revoke_api_key(api_key_id, principal, session)
    return RedirectResponse("/portal/api-keys?revoked=1", status_code=303)


# --- audit log ---------------------------------------------------------------------------------------


@router.get("/audit-log")
async def audit_log(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    action: str | None = None,
    org_id: str | None = None,
    cursor: str | None = None,
    format: str | None = None,
) -> Response:
    action = (action or "").strip()[:100] or None
    org_id = (org_id or "").strip()[:32] or None
    if format == "csv":
        entries: list[Any] = []
        next_cursor: str | None = None
        while len(entries) < CSV_MAX_ROWS:
            page_ = await audit_api.list_audit_entries(
                principal, session, action=action, org_id=org_id, limit=500, cursor=next_cursor
            )
            entries.extend(page_.items)
            next_cursor = page_.next_cursor
            if next_cursor is None:
                break
        return _csv(
            "journal-audit.csv",
            ["id", "date", "acteur", "type", "organisation", "entreprise", "action", "cible", "resultat", "workflow"],
            [
                [
                    e.id,
                    e.at.isoformat(),
                    e.actor,
                    e.actor_kind,
                    e.org_id or "",
                    e.company_id or "",
                    e.action,
                    e.target or "",
                    e.result,
                    e.workflow_id or "",
                ]
                for e in entries
            ],
        )
    result = await audit_api.list_audit_entries(
        principal, session, action=action, org_id=org_id, limit=PAGE_SIZE, cursor=cursor or None
    )
    params = {"action": action or "", "org_id": org_id or ""}
    actions = await session.execute(select(AuditLog.action).distinct().order_by(AuditLog.action).limit(300))
    context = {
        "entries": result.items,
        "params": params,
        "actions": [a for (a,) in actions],
        "next_url": _url("/portal/audit-log", params, cursor=result.next_cursor) if result.next_cursor else None,
        "first_url": _url("/portal/audit-log", params) if cursor else None,
        "csv_url": _url("/portal/audit-log", params, format="csv"),
        "verification": None,
    }
    return page(request, settings, principal, "portal/admin/audit.html", context, nav="audit")


@router.post("/audit-log/verification", dependencies=[CsrfChecked])
async def audit_verification(
    request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    if not principal.is_platform_admin:
        raise PortalForbidden("La vérification de la chaîne du journal est réservée à la plateforme.")
    report = await audit_api.verify_audit_chain(principal, session)
    result = await audit_api.list_audit_entries(
        principal, session, action=None, org_id=None, limit=PAGE_SIZE, cursor=None
    )
    context = {
        "entries": result.items,
        "params": {"action": "", "org_id": ""},
        "actions": [],
        "next_url": _url("/portal/audit-log", {}, cursor=result.next_cursor) if result.next_cursor else None,
        "first_url": None,
        "csv_url": "/portal/audit-log?format=csv",
        "verification": report,
    }
    return page(request, settings, principal, "portal/admin/audit.html", context, nav="audit")
