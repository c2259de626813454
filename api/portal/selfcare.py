"""Self-care space `/self-care`: end users log in and see their own lines only, recharge them, manage their
saved cards, and download their receipts.

Nothing here is a second version of the staff portal's machinery:
- login: `api.portal.routes.form_login` (`api.login.authenticate`: throttles, lockout, audit, TOTP step);
  the session is the portal's `simflow_session` cookie and its CSRF protection (`api.portal.security`). One
  cookie, two spaces: a staff session opens no self-care page, an end-user session no portal page (403).
- tenancy: every id in a path (`line_id`, `recharge_id`) is resolved and authorised by the global guard
  (`api.guard.access_guard`, `domain.services.tenancy`) before the handler runs, as on the API; lists use
  `domain.services.listings.readable_by`, the SQL form of the same rule. Another end user's line is a 404.
- recharges: `api.topups.recharge_line`, the API's and the staff portal's top-up start;
- balances: the staff line page's live OCS read (`api.portal.lines._ocs_balances`);
- cards: the card API (`/api/v1/end-users/{id}/payment-methods`) from the shared `portal/_cards.html`;
- documents: the receipt invoice of a completed card or wallet top-up (`render_invoice_pdf`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import cards
from api.deps import SessionDep, SettingsDep, StateDep, decode_token, issue_token, principal_from_token
from api.login import request_password_reset
from api.portal.lines import _ocs_balances
from api.portal.payment_methods import card_page_csp
from api.portal.recharges import METHOD_LABELS_FR, PAYMENT_LABELS_FR, STATUS_LABELS_FR
from api.portal.routes import change_password_form, form_login
from api.portal.security import (
    SESSION_COOKIE,
    CsrfChecked,
    PortalForbidden,
    PortalLoginRequired,
    PortalNotFound,
    PortalRoute,
    apply_csrf_cookie,
    clear_session_cookie,
    csrf_token,
    is_htmx,
    set_session_cookie,
)
from api.portal.templating import render
from api.topups import recharge_line
from domain.authz import Principal, PrincipalKind
from domain.enums import TOPUP_TERMINAL_STATUSES, LineStatus, PaymentMethod, TopUpSource, WalletOwnerType
from domain.errors import AuthenticationFailed, DomainError
from domain.models import EndUser, Invoice, Line, Organisation, Payment, SimCard, TopUp
from domain.services.invoice_pdf import pdf_filename, render_invoice_pdf
from domain.services.listings import readable_by
from domain.services.pools import rated_account
from domain.services.wallets import KIND_LABELS_FR, Period, balance_of, ledger_overview, wallet_of
from infra.settings import Settings

BASE = "/self-care"
LOGIN = f"{BASE}/login"
HOME = f"{BASE}/home"
HISTORY_SIZE = 50
WALLET_PAGE_ENTRIES = 500


# --- pages and errors --------------------------------------------------------------------------------


def safe_next(value: str | None) -> str:
    """Only a self-care path may be a post-login destination (no open redirect)."""
    if not value or not value.startswith(BASE + "/") or value.startswith("//") or "\\" in value:
        return HOME
    if urlsplit(value).netloc or value.startswith(LOGIN):
        return HOME
    return value


def _page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    settings: Settings = request.app.state.simflow.settings
    full = {
        "principal": getattr(request.state, "selfcare_principal", None),
        "brand": getattr(request.state, "selfcare_brand", None) or "Espace client",
        "csrf_token": csrf_token(request, settings),
        "nav": None,
        **context,
    }
    response = render(request, name, full, status_code=status_code, headers=headers)
    apply_csrf_cookie(request, response)
    return response


selfcare_page = _page  # the self-care layout, for pages served from other modules (2FA)


class SelfCareRoute(PortalRoute):
    """The portal's route class (CSRF, security headers, French errors) with the self-care pages."""

    def login_required(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = HOME
        location = f"{LOGIN}?{urlencode({'next': safe_next(target)})}"
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": location})
        return RedirectResponse(location, status_code=303)

    def password_change_required(self, request: Request) -> Response:
        message = (
            "Le mot de passe de votre compte doit être changé : choisissez-en un nouveau avec « Mot de passe oublié »."
        )
        return self.error_page(request, 403, "Mot de passe à changer", message)

    def error_page(self, request: Request, status: int, title: str, message: str) -> Response:
        context = {"title": title, "message": message, "status": status}
        return _page(request, "selfcare/error.html", context, status_code=status)


router = APIRouter(prefix=BASE, route_class=SelfCareRoute, include_in_schema=False)


async def _brand(session: AsyncSession, org_id: str | None) -> str | None:
    if org_id is None:
        return None
    org = await session.get(Organisation, org_id)
    return (org.brand_name or org.name) if org else None


async def selfcare_principal(request: Request, session: SessionDep, settings: SettingsDep) -> Principal:
    """The end user of the session cookie (the portal's cookie). Staff sessions open no self-care page."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise PortalLoginRequired
    try:
        principal = await principal_from_token(session, settings, token)
    except AuthenticationFailed as exc:
        raise PortalLoginRequired from exc
    if principal.kind is not PrincipalKind.END_USER or principal.end_user_id is None:
        raise PortalForbidden(
            "L'espace client est réservé aux utilisateurs finaux. Le personnel utilise le portail opérateur."
        )
    request.state.selfcare_principal = principal
    request.state.selfcare_brand = await _brand(session, principal.org_id)
    expires = decode_token(settings, token).get("exp", 0)
    if isinstance(expires, int | float) and expires - time.time() < settings.jwt_ttl_minutes * 30:
        request.state.portal_session_renewal = issue_token(settings, principal.kind, principal.subject_id)
    return principal


EndUserDep = Annotated[Principal, Depends(selfcare_principal)]


# --- login / logout / forgotten password ----------------------------------------------------------------


def _login_page(
    request: Request, *, next_path: str, email: str = "", error: str | None = None, status: int, totp: bool = False
) -> Response:
    context = {
        "next_path": next_path,
        "email": email,
        "error": error,
        "totp_needed": totp,
        "logged_out": request.query_params.get("logged_out") == "1",
    }
    return _page(request, "selfcare/login.html", context, status_code=status)


@router.get("/login")
async def login_form(request: Request, session: SessionDep, settings: SettingsDep, next: str | None = None) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:  # already in: straight to the page asked for
        try:
            principal = await principal_from_token(session, settings, token)
        except AuthenticationFailed:
            principal = None
        if principal is not None and principal.kind is PrincipalKind.END_USER:
            return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next_path=safe_next(next), status=200)


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
            request, next_path=target, email=email, error=outcome.error, status=401, totp=outcome.totp_needed
        )
    if who.kind is not PrincipalKind.END_USER:
        error = "L'espace client est réservé aux utilisateurs finaux. Le personnel se connecte au portail opérateur."
        return _login_page(request, next_path=target, email=email, error=error, status=403)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, settings, issue_token(settings, who.kind, who.subject_id))
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request) -> Response:
    response = RedirectResponse(f"{LOGIN}?logged_out=1", status_code=303)
    clear_session_cookie(response, request)
    return response


@router.get("/password/forgot")
async def forgot_form(request: Request) -> Response:
    return _page(request, "selfcare/password_forgot.html", {"sent": False, "email": "", "error": None})


@router.post("/password/forgot", dependencies=[CsrfChecked])
async def forgot_submit(
    request: Request, session: SessionDep, settings: SettingsDep, email: Annotated[str, Form(max_length=320)] = ""
) -> Response:
    """The portal's and the API's reset request (`request_password_reset`): same answer for any address."""
    if "@" not in email:
        context = {"sent": False, "email": email, "error": "Saisissez l'adresse e-mail de votre compte."}
        return _page(request, "selfcare/password_forgot.html", context, status_code=400)
    address = request.client.host if request.client else "unknown"
    await request_password_reset(session, settings, request.app.state.simflow.limiter, email, address)
    await session.commit()
    return _page(request, "selfcare/password_forgot.html", {"sent": True, "email": email, "error": None})


@router.get("/password")
async def password_form(request: Request, principal: EndUserDep) -> Response:
    return _page(request, "selfcare/password.html", {"errors": {}, "changed": False, "nav": "password"})


@router.post("/password", dependencies=[CsrfChecked])
async def password_submit(
    request: Request,
    principal: EndUserDep,
    session: SessionDep,
    settings: SettingsDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    confirmation: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """The staff portal's password form (`change_password_form`), then a fresh session: the change revokes
    every session opened before it."""
    errors = await change_password_form(session, settings, principal, current_password, new_password, confirmation)
    context = {"errors": errors, "changed": not errors, "nav": "password"}
    response = _page(request, "selfcare/password.html", context, status_code=400 if errors else 200)
    if not errors:
        set_session_cookie(response, request, settings, issue_token(settings, principal.kind, principal.subject_id))
    return response


@router.get("")
async def root() -> Response:
    return RedirectResponse(HOME, status_code=303)


# --- lines ---------------------------------------------------------------------------------------------


async def _my_lines(session: AsyncSession, principal: Principal) -> list[tuple[Line, SimCard | None]]:
    rows = await session.execute(
        select(Line, SimCard)
        .outerjoin(SimCard, SimCard.id == Line.sim_id)
        .where(readable_by(principal, org=Line.org_id, company=Line.company_id, end_user=Line.end_user_id))
        .where(Line.status.not_in((LineStatus.TERMINATED, LineStatus.OBSOLETE)))
        .order_by(Line.msisdn)
    )
    return [(line, sim) for line, sim in rows.all()]


@router.get("/home")
async def home(request: Request, principal: EndUserDep, session: SessionDep, settings: SettingsDep) -> Response:
    lines = await _my_lines(session, principal)
    accounts = {line.id: await rated_account(session, line) for line, _ in lines}
    await session.commit()  # no connection held while the OCS answers
    rows = [{"line": line, "sim": sim, "ocs": await _ocs_balances(settings, accounts[line.id])} for line, sim in lines]
    return _page(request, "selfcare/home.html", {"rows": rows, "nav": "home"})


async def _history(session: AsyncSession, line_id: str) -> list[dict[str, Any]]:
    """The line's recharges, newest first, each with its receipt invoice when one was issued."""
    topups = list(
        (
            await session.execute(
                select(TopUp).where(TopUp.line_id == line_id).order_by(TopUp.created_at.desc()).limit(HISTORY_SIZE)
            )
        ).scalars()
    )
    receipts = await _receipts(session, topups)
    return [{"topup": t, "receipt": receipts.get(t.id)} for t in topups]


async def _receipts(session: AsyncSession, topups: list[TopUp]) -> dict[str, Invoice]:
    """Top-up id → its receipt: the invoice of the top-up's payment (`{workflow_id}:payment`)."""
    by_reference = {f"{t.workflow_id}:payment": t.id for t in topups}
    if not by_reference:
        return {}
    rows = await session.execute(
        select(Payment.reference, Invoice)
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(Payment.reference.in_(by_reference))
    )
    return {by_reference[reference]: invoice for reference, invoice in rows.all()}


async def _payment_options(session: AsyncSession, principal: Principal) -> list[str]:
    """Card always (the end user's default card, else the company's); the wallet when the end user has one."""
    assert principal.end_user_id is not None
    wallet = await wallet_of(session, WalletOwnerType.END_USER, principal.end_user_id)
    return [PaymentMethod.CARD, PaymentMethod.WALLET] if wallet is not None and wallet.enabled else [PaymentMethod.CARD]


@router.get("/lines/{line_id}")
async def line_page(
    line_id: str,
    request: Request,
    principal: EndUserDep,
    session: SessionDep,
    settings: SettingsDep,
    problem: str | None = None,
) -> Response:
    return await _line_page(request, principal, session, settings, line_id, problem=problem)


async def _line_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    settings: Settings,
    line_id: str,
    *,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    line = await session.get(Line, line_id)  # the guard has resolved `line_id` in the end user's tenant
    if line is None:
        raise PortalNotFound()
    sim = await session.get(SimCard, line.sim_id) if line.sim_id else None
    context: dict[str, Any] = {
        "line": line,
        "sim": sim,
        "history": await _history(session, line.id),
        "methods": await _payment_options(session, principal),
        "problem": problem,
        "status_fr": STATUS_LABELS_FR,
        "payment_fr": PAYMENT_LABELS_FR,
        "method_fr": METHOD_LABELS_FR,
        "nav": "home",
    }
    account = await rated_account(session, line)
    await session.commit()
    context["ocs"] = await _ocs_balances(settings, account)
    return _page(request, "selfcare/line.html", context, status_code=status_code)


@router.post("/lines/{line_id}/recharges", dependencies=[CsrfChecked])
async def recharge(
    line_id: str,
    request: Request,
    principal: EndUserDep,
    session: SessionDep,
    state: StateDep,
    data_gb: Annotated[int, Form(ge=1, le=100)],
    payment_method: Annotated[PaymentMethod, Form()] = PaymentMethod.CARD,
    batch: Annotated[str, Form(pattern=r"^[a-f0-9]{32}$")] = "",
) -> Response:
    """ "Recharger": the API's and the staff portal's top-up start, idempotent per rendered form."""
    if payment_method not in (PaymentMethod.CARD, PaymentMethod.WALLET):
        return await _line_page(
            request,
            principal,
            session,
            state.settings,
            line_id,
            problem="Mode de paiement non proposé.",
            status_code=422,
        )
    await session.commit()  # release the connection while the payment is decided
    key = "self" + hashlib.sha256(f"{batch or uuid.uuid4().hex}:{line_id}:selfcare".encode()).hexdigest()[:28]
    try:
        out, _ = await recharge_line(
            session, state, principal, line_id, data_gb, payment_method, key, TopUpSource.SELFCARE
        )
    except DomainError as err:
        return await _line_page(
            request, principal, session, state.settings, line_id, problem=err.reason, status_code=422
        )
    return RedirectResponse(f"{BASE}/recharges/{out.recharge_id}", status_code=303)


@router.get("/recharges/{recharge_id}")
async def recharge_progress(recharge_id: str, request: Request, principal: EndUserDep, session: SessionDep) -> Response:
    """One recharge, followed live (htmx polling) until it is completed, refunded or failed."""
    topup = await session.get(TopUp, recharge_id)  # resolved in the end user's tenant by the guard
    if topup is None:
        raise PortalNotFound()
    line = await session.get(Line, topup.line_id)
    context = {
        "topup": topup,
        "line": line,
        "receipt": (await _receipts(session, [topup])).get(topup.id),
        "live": topup.status not in TOPUP_TERMINAL_STATUSES,
        "status_fr": STATUS_LABELS_FR,
        "payment_fr": PAYMENT_LABELS_FR,
        "method_fr": METHOD_LABELS_FR,
        "nav": "home",
    }
    name = "selfcare/_recharge_body.html" if is_htmx(request) else "selfcare/recharge.html"
    return _page(request, name, context)


@router.get("/recharges/{recharge_id}/receipt.pdf")
async def receipt_pdf(recharge_id: str, request: Request, principal: EndUserDep, session: SessionDep) -> Response:
    topup = await session.get(TopUp, recharge_id)  # resolved in the end user's tenant by the guard
    if topup is None:
        raise PortalNotFound()
    receipt = (await _receipts(session, [topup])).get(topup.id)
    if receipt is None:  # 409, not 404: a 404 says "not yours or nonexistent", and this recharge is theirs
        message = (
            "Cette recharge n'a pas de reçu : il est émis quand une recharge payée par carte ou portefeuille "
            "est terminée."
        )
        context = {"title": "Pas de reçu", "message": message, "status": 409}
        return _page(request, "selfcare/error.html", context, status_code=409)
    pdf = await render_invoice_pdf(session, receipt.id)
    headers = {"Content-Disposition": f'attachment; filename="{pdf_filename(receipt)}"'}
    return Response(pdf, media_type="application/pdf", headers=headers)


# --- cards and invoices ------------------------------------------------------------------------------------


@router.get("/cards")
async def my_cards(request: Request, principal: EndUserDep, session: SessionDep, settings: SettingsDep) -> Response:
    assert principal.end_user_id is not None
    owner = await cards.owner_of(session, end_user_id=principal.end_user_id)
    user = owner.row
    assert isinstance(user, EndUser)
    context = {
        "api_base": f"/api/v1/end-users/{user.id}/payment-methods",
        "stripe_js_url": settings.stripe_js_url,
        "publishable_key": settings.stripe_publishable_key,
        "stripe_account": owner.account or "",
        "cards": await cards.list_cards(session, owner),
        "default_pm": user.stripe_payment_method_id,
        "nav": "cards",
    }
    headers = {"Content-Security-Policy": card_page_csp(settings)}
    return _page(request, "selfcare/cards.html", context, headers=headers)


@router.get("/wallet")
async def my_wallet(
    request: Request,
    principal: EndUserDep,
    session: SessionDep,
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
) -> Response:
    """The end user's own wallet, read only (the organisation sets it up and funds it): balance, the overview
    over a period, the ledger with its references and the CSV export of the API."""
    assert principal.end_user_id is not None
    wallet = await wallet_of(session, WalletOwnerType.END_USER, principal.end_user_id)
    context: dict[str, Any] = {
        "wallet": wallet,
        "nav": "wallet",
        "period_from": first.isoformat() if first else "",
        "period_to": last.isoformat() if last else "",
        "kind_fr": KIND_LABELS_FR,
    }
    if wallet is not None:
        context.update(
            balance_minor=await balance_of(session, wallet.id),
            overview=await ledger_overview(session, wallet.id, Period.of_days(first, last), WALLET_PAGE_ENTRIES),
            csv_query=urlencode({k: v.isoformat() for k, v in (("from", first), ("to", last)) if v is not None}),
        )
    return _page(request, "selfcare/wallet.html", context)


@router.get("/invoices")
async def my_invoices(request: Request, principal: EndUserDep, session: SessionDep) -> Response:
    """The end user's documents: the receipts of the recharges of their lines. The company's monthly invoices
    belong to the company (staff portal), not to one of its end users."""
    topups = list(
        (
            await session.execute(
                select(TopUp)
                .join(Line, Line.id == TopUp.line_id)
                .where(readable_by(principal, org=Line.org_id, company=Line.company_id, end_user=Line.end_user_id))
                .where(readable_by(principal, org=TopUp.org_id, company=TopUp.company_id, end_user=TopUp.end_user_id))
                .order_by(TopUp.created_at.desc())
                .limit(200)
            )
        ).scalars()
    )
    receipts = await _receipts(session, topups)
    rows = [{"topup": t, "invoice": receipts[t.id]} for t in topups if t.id in receipts]
    return _page(request, "selfcare/invoices.html", {"rows": rows, "nav": "invoices"})
