"""Staff portal `/portal`: login, companies, SIM cards (dynamic table, selection), SIM detail.

Handlers stay thin: queries live in `domain.services.portal_queries`, rendering in `api.portal.templating`,
session/CSRF/errors in `api.portal.security`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import segno
from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from markupsafe import Markup
from sqlalchemy.orm import undefer

from api.deps import SessionDep, SettingsDep, issue_token, principal_from_token
from api.login import Authenticated, LoginPolicy, audit_auth, authenticate, change_own_password
from api.portal.columns import COLUMNS_COOKIE, ColumnLayout
from api.portal.security import (
    HOME_PATH,
    LOGIN_PATH,
    PASSWORD_PATH,
    SESSION_COOKIE,
    CsrfChecked,
    PortalForbidden,
    PortalNotFound,
    PortalPrincipalDep,
    PortalRoute,
    apply_csrf_cookie,
    clear_session_cookie,
    csrf_token,
    is_htmx,
    safe_next,
    set_session_cookie,
)
from api.portal.templating import CFAST_STATUS_LABELS_FR, line_query, render, temporal_search_url
from domain.authz import Action, Area, Principal, PrincipalKind
from domain.csv_files import write_csv
from domain.enums import SIM_STATUS_LABELS_FR, SimStatus
from domain.errors import AuthenticationFailed, PermissionDenied, TotpRequired, ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_iccid, normalize_msisdn
from domain.models import Company, EndUser, Organisation
from domain.pagination import by_id
from domain.services.accounts import get_account
from domain.services.listings import companies_query, end_users_query
from domain.services.portal_queries import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    CompanyRow,
    SimFilters,
    ViewScope,
    company_sites,
    company_update_records,
    get_company,
    get_sim_detail,
    list_sims_page,
    sim_filter_options,
)
from domain.services.sims import sim_journal
from infra.settings import Settings

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)

SIM_TABS = {"details": "Détails", "usage": "Utilisation", "journal": "Journal"}
PAGE_SIZES = (25, 50, 100, 200)
COMPANY_PAGE_SIZE = 50


def scope_of(principal: Principal) -> ViewScope:
    """The portal's view of `authorize`: platform admin everything, org staff their org, company staff theirs."""
    if principal.is_platform_admin:
        return ViewScope(org_id=None)
    if principal.org_id is None:
        raise PortalForbidden("Votre compte n'est rattaché à aucune organisation.")
    return ViewScope(org_id=principal.org_id, company_id=principal.company_id)


def page(
    request: Request,
    settings: Settings,
    principal: Principal | None,
    name: str,
    context: dict[str, Any],
    *,
    nav: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    full = {"principal": principal, "csrf_token": csrf_token(request, settings), "nav": nav, **context}
    response = render(request, name, full, status_code=status_code, headers=headers)
    apply_csrf_cookie(request, response)
    return response


def _hx_target(request: Request) -> str | None:
    return request.headers.get("HX-Target") if is_htmx(request) else None


# --- login / logout --------------------------------------------------------------------------------


async def _current_staff(request: Request, session: SessionDep, settings: Settings) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        principal = await principal_from_token(session, settings, token)
    except AuthenticationFailed:
        return None
    return principal if principal.kind is PrincipalKind.STAFF else None


def _login_page(
    request: Request,
    settings: Settings,
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    status: int,
    totp_needed: bool = False,
) -> Response:
    logged_out = request.query_params.get("logged_out") == "1"
    context = {
        "next_path": next_path,
        "email": email,
        "error": error,
        "logged_out": logged_out,
        "totp_needed": totp_needed,
    }
    return page(request, settings, None, "portal/login.html", context, status_code=status)


@router.get("/login")
async def login_form(request: Request, session: SessionDep, settings: SettingsDep, next: str | None = None) -> Response:
    if await _current_staff(request, session, settings) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, settings, next_path=safe_next(next), status=200)


@dataclass(frozen=True)
class FormLogin:
    """The outcome of a login form: who logged in, or the French message and whether the 2FA code is asked."""

    who: Authenticated | None
    error: str | None = None
    totp_needed: bool = False


async def form_login(
    request: Request, session: SessionDep, settings: Settings, email: str, password: str, totp: str
) -> FormLogin:
    """The login of the portal's and the self-care space's forms: `authenticate` (throttles, lockout, audit,
    TOTP or backup code), the same as the API's token endpoint."""
    try:
        who = await authenticate(
            session,
            email,
            password,
            totp.strip() or None,
            limiter=request.app.state.simflow.limiter,
            source=request.client.host if request.client else None,
            policy=LoginPolicy.from_settings(settings),
        )
    except TotpRequired:
        return FormLogin(
            None,
            "Ce compte est protégé par la double authentification : saisissez aussi le code à 6 chiffres.",
            totp_needed=True,
        )
    except AuthenticationFailed:
        return FormLogin(None, "Adresse e-mail ou mot de passe incorrect (ou compte temporairement verrouillé).")
    return FormLogin(who)


@router.post("/login", dependencies=[CsrfChecked])
async def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    totp: Annotated[str, Form(max_length=32)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    target = safe_next(next)
    outcome = await form_login(request, session, settings, email, password, totp)
    who = outcome.who
    if who is None:
        return _login_page(
            request,
            settings,
            next_path=target,
            email=email,
            error=outcome.error,
            status=401,
            totp_needed=outcome.totp_needed,
        )
    if who.kind is not PrincipalKind.STAFF:
        return _login_page(
            request,
            settings,
            next_path=target,
            email=email,
            error=(
                "Ce portail est réservé au personnel. "
                "Les utilisateurs finaux se connectent à l'espace client : /self-care."
            ),
            status=403,
        )
    if who.must_change_password:  # an administrator set this password: it is changed before anything else
        target = f"{PASSWORD_PATH}?{urlencode({'next': target})}"
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, settings, issue_token(settings, who.kind, who.subject_id))
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request) -> Response:
    response = RedirectResponse(f"{LOGIN_PATH}?logged_out=1", status_code=303)
    clear_session_cookie(response, request)
    return response


# --- own password (the only page open while an administrator-set password awaits its change) -----------


def _password_page(
    request: Request,
    settings: Settings,
    principal: Principal,
    *,
    next_path: str,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    context = {"next_path": next_path, "errors": errors or {}, "forced": principal.must_change_password}
    return page(request, settings, principal, "portal/password.html", context, status_code=status)


@router.get("/password")
async def password_form(
    request: Request, principal: PortalPrincipalDep, settings: SettingsDep, next: str | None = None
) -> Response:
    return _password_page(request, settings, principal, next_path=safe_next(next))


@router.post("/password", dependencies=[CsrfChecked])
async def password_submit(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    confirmation: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The password change of `/api/v1/auth/password/change` (`change_own_password`), then a fresh
    session: the change revokes every session opened before it."""
    target = safe_next(next)
    errors = await change_password_form(session, settings, principal, current_password, new_password, confirmation)
    if errors:
        return _password_page(request, settings, principal, next_path=target, errors=errors, status=400)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, settings, issue_token(settings, principal.kind, principal.subject_id))
    return response


async def change_password_form(
    session: SessionDep, settings: Settings, principal: Principal, current: str, new: str, confirmation: str
) -> dict[str, str]:
    """The password form of the staff portal and the self-care space: `change_own_password` (the API's
    rule), audited and committed; the French message of each refused field, empty when it is changed."""
    account = await get_account(session, principal.kind.value, principal.subject_id)
    if account is None:
        raise PortalForbidden("Compte introuvable.")
    errors: dict[str, str] = {}
    if not new:
        errors["new_password"] = "Saisissez le nouveau mot de passe."
    elif new != confirmation:
        errors["confirmation"] = "La confirmation ne correspond pas au nouveau mot de passe."
    if not errors:
        try:
            await change_own_password(session, settings, account, current, new)
        except PermissionDenied:
            errors["current_password"] = "Mot de passe actuel incorrect."
        except ValidationFailed as exc:
            errors["new_password"] = exc.reason[:1].upper() + exc.reason[1:]
    if errors:
        return errors
    await audit_auth(session, "auth.password_changed", "ok", account.email, account, channel="portal")
    await session.commit()
    return {}


@router.get("")
async def home(_: PortalPrincipalDep) -> Response:
    return RedirectResponse(HOME_PATH, status_code=303)


def temporal_query_for(settings: Settings, searched: str) -> str:
    """What staff type → the Temporal UI query: a line number (any notation) → its keyed hash (`MsisdnHash`),
    an ICCID → `Iccid`, anything else → a workflow id."""
    searched = searched.strip()
    try:
        return line_query(settings, normalize_msisdn(searched))
    except InvalidIdentifier:
        pass
    try:
        return f'Iccid="{normalize_iccid(searched)}"'
    except InvalidIdentifier:
        pass
    quoted = searched.replace("\\", "").replace('"', "")
    return f'WorkflowId="{quoted}"'


@router.post("/temporal-search", dependencies=[CsrfChecked])
async def temporal_search(
    _: PortalPrincipalDep, settings: SettingsDep, q: Annotated[str, Form(max_length=64)]
) -> Response:
    """The portal's search box: opens the Temporal UI on the matching workflows (see `temporal_query_for`)."""
    return RedirectResponse(temporal_search_url(settings, temporal_query_for(settings, q)), status_code=303)


# --- branding --------------------------------------------------------------------------------------

LOGO_MEDIA_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


@router.get("/branding/logo")
async def organisation_logo(principal: PortalPrincipalDep, session: SessionDep) -> Response:
    """The logo of the staff member's organisation (the header's image); 404 without one or for a platform admin."""
    if principal.org_id is None:
        raise PortalNotFound()
    org = await session.get(Organisation, principal.org_id, options=[undefer(Organisation.logo)])
    logo = org.logo if org is not None else None
    media_type = next((kind for magic, kind in LOGO_MEDIA_TYPES if logo and logo.startswith(magic)), None)
    if logo is None or media_type is None:
        raise PortalNotFound()
    return Response(content=logo, media_type=media_type)


# --- companies -------------------------------------------------------------------------------------


@router.get("/companies")
async def companies(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    format: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The API's company list (`companies_query`, same filters, same cursor), with the organisation's name."""
    name = (name or "").strip() or None
    is_virtual = {"virtual": True, "client": False}.get(kind or "")
    query = (
        companies_query(principal, name=name, is_virtual=is_virtual)
        .join(Organisation, Organisation.id == Company.org_id)
        .add_columns(Organisation.name)
    )
    if format == "csv":
        rows = (await session.execute(query.order_by(Company.name, Company.id).limit(10_000))).all()
        csv = write_csv(
            [
                "id",
                "entreprise",
                "organisation",
                "reference_client",
                "siret",
                "tva",
                "type",
                "statut_cfast",
                "creee_le",
            ],
            [
                [
                    c.id,
                    c.name,
                    org_name,
                    c.customer_reference,
                    c.siret or "",
                    c.vat_number or "",
                    "Virtuelle" if c.is_virtual else "Client",
                    CFAST_STATUS_LABELS_FR.get(c.cfast_status, c.cfast_status),
                    c.created_at.isoformat(),
                ]
                for c, org_name in rows
            ],
        )
        headers = {"Content-Disposition": 'attachment; filename="entreprises.csv"'}
        return Response(csv.encode("utf-8"), media_type="text/csv; charset=utf-8", headers=headers)
    keyset = by_id(Company.id)
    fetched = (await session.execute(keyset.apply(query, cursor or None, COMPANY_PAGE_SIZE))).all()
    items, next_cursor = keyset.page(fetched, COMPANY_PAGE_SIZE, lambda r: r[0].id)
    params = {"name": name or "", "kind": kind if is_virtual is not None and kind else ""}

    def url(**changes: str | None) -> str:
        query_ = {k: v for k, v in {**params, **changes}.items() if v}
        return "/portal/companies" + (f"?{urlencode(query_)}" if query_ else "")

    context = {
        "rows": [CompanyRow(c, org_name) for c, org_name in items],
        "show_org": principal.is_platform_admin,
        "params": params,
        "next_url": url(cursor=next_cursor) if next_cursor else None,
        "first_url": url() if cursor else None,
        "csv_url": url(format="csv"),
    }
    return page(request, settings, principal, "portal/companies/list.html", context, nav="companies")


@router.get("/companies/{company_id}")
async def company_detail(
    company_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    row = await get_company(session, scope_of(principal), company_id[:64])
    if row is None:
        raise PortalNotFound("Cette entreprise n'existe pas ou n'est pas accessible avec votre compte.")
    context = {
        "row": row,
        "company": row.company,
        "sites": await company_sites(session, row.company.id),
        "updates": await company_update_records(session, row.company.id),
        "end_users": list(
            (
                await session.execute(
                    end_users_query(principal, company_id=row.company.id).order_by(EndUser.email).limit(500)
                )
            ).scalars()
        ),
        # The end-user form's answer after a refused creation (the API's messages, by field).
        "eu_errors": {k[9:]: v for k, v in request.query_params.items() if k.startswith("eu_error_")},
        "eu_email": request.query_params.get("eu_email", ""),
        "created": request.query_params.get("created") == "1",
        "updated": request.query_params.get("updated") == "1",
        "can_edit": principal.company_id is None and principal.may(Area.COMPANY, Action.WRITE),
    }
    return page(request, settings, principal, "portal/companies/detail.html", context, nav="companies")


# --- SIM cards -------------------------------------------------------------------------------------


def _parse_status(raw: str | None) -> SimStatus | None:
    try:
        return SimStatus(raw) if raw else None
    except ValueError:
        return None


def _sims_url(params: dict[str, str], **changes: str | None) -> str:
    merged = {**params, **changes}
    query = {k: v for k, v in merged.items() if v}
    return "/portal/sims" + (f"?{urlencode(query)}" if query else "")


@router.get("/sims")
async def sims(
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[str | None, Query(max_length=32)] = None,
    company_id: Annotated[str | None, Query(max_length=64)] = None,
    carrier: Annotated[str | None, Query(max_length=50)] = None,
    q: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> Response:
    scope = scope_of(principal)
    filters = SimFilters(
        status=_parse_status(status), company_id=company_id or None, carrier=carrier or None, search=q or None
    )
    result = await list_sims_page(session, scope, filters, after=after or None, before=before or None, limit=limit)
    params = {
        "status": filters.status.value if filters.status else "",
        "company_id": filters.company_id or "",
        "carrier": filters.carrier or "",
        "q": (q or "").strip(),
        "limit": str(limit) if limit != DEFAULT_PAGE_SIZE else "",
    }
    layout = ColumnLayout.from_cookie(request.cookies.get(COLUMNS_COOKIE))
    context: dict[str, Any] = {
        "result": result,
        "params": params,
        "layout": layout,
        "columns": layout.visible_columns,
        "current_url": _sims_url(params, after=after, before=before),
        "next_url": _sims_url(params, after=result.next_cursor) if result.next_cursor else None,
        "prev_url": _sims_url(params, before=result.prev_cursor) if result.prev_cursor else None,
        "first_url": _sims_url(params) if (after or before) else None,
        "status_labels": SIM_STATUS_LABELS_FR,
        "page_sizes": PAGE_SIZES,
    }
    target = _hx_target(request)
    if target == "sim-results":
        return page(request, settings, principal, "portal/sims/_results.html", context)
    context["options"] = await sim_filter_options(session, scope)
    return page(request, settings, principal, "portal/sims/list.html", context, nav="sims")


@router.post("/sims/columns", dependencies=[CsrfChecked])
async def choose_columns(
    request: Request,
    principal: PortalPrincipalDep,
    settings: SettingsDep,
    order: Annotated[list[str] | None, Form()] = None,
    visible: Annotated[list[str] | None, Form()] = None,
    move: Annotated[str | None, Form(max_length=64)] = None,
    return_to: Annotated[str, Form(max_length=2000)] = "/portal/sims",
) -> Response:
    """The column chooser: posted order + checked columns, plus an optional move; kept in a cookie."""
    current = ColumnLayout.from_cookie(request.cookies.get(COLUMNS_COOKIE))
    layout = ColumnLayout.from_form(order or [], visible or [], current).apply(move)
    if is_htmx(request):
        response = page(
            request,
            settings,
            principal,
            "portal/sims/_column_chooser.html",
            {"layout": layout, "return_to": safe_next(return_to), "open": True},
            headers={"HX-Trigger": "sim-columns-changed"},
        )
    else:
        destination = safe_next(return_to)
        response = RedirectResponse(destination if destination.startswith("/portal/sims") else "/portal/sims", 303)
    response.set_cookie(
        COLUMNS_COOKIE,
        layout.to_cookie(),
        max_age=365 * 24 * 3600,
        path="/portal",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _qr_svg(payload: str) -> Markup:
    svg = segno.make(payload, error="m").svg_inline(scale=4, border=2, title="QR code d'activation eSIM")
    return Markup(svg)  # noqa: S704 - generated by segno from the escaped payload


@router.get("/sims/{iccid}")
async def sim_detail(
    iccid: str,
    request: Request,
    principal: PortalPrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    tab: Annotated[str, Query(max_length=16)] = "details",
) -> Response:
    try:
        normalised = normalize_iccid(iccid[:40])
    except InvalidIdentifier as exc:
        raise PortalNotFound("Cette carte SIM n'existe pas ou n'est pas accessible avec votre compte.") from exc
    view = await get_sim_detail(session, scope_of(principal), normalised)
    if view is None:
        raise PortalNotFound("Cette carte SIM n'existe pas ou n'est pas accessible avec votre compte.")
    tab = tab if tab in SIM_TABS else "details"
    sim = view.row.sim
    context: dict[str, Any] = {
        "view": view,
        "sim": sim,
        "row": view.row,
        "tab": tab,
        "tabs": SIM_TABS,
        "journal": await sim_journal(session, sim.id) if tab == "journal" else [],
        "qr_svg": _qr_svg(sim.activation_code) if (tab == "details" and sim.is_esim and sim.activation_code) else None,
    }
    if _hx_target(request) == "sim-tabs":
        return page(request, settings, principal, "portal/sims/_tabs.html", context)
    return page(request, settings, principal, "portal/sims/detail.html", context, nav="sims")
