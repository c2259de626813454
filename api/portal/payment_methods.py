"""Portal page of saved cards: a company's, and an end user's (same page). The list is rendered here; the
card form is Stripe Elements, and every action (SetupIntent, record, default, remove) calls the API routes
of api/routes/payment_methods.py from static/portal/cards.js with the session cookie.

Stripe.js comes from `settings.stripe_js_url`: Stripe's own in production, localstripe's stand-in in
development and tests. The page's Content-Security-Policy opens that origin to scripts, requests and frames.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from sqlalchemy import select

from api import cards
from api.deps import SessionDep, SettingsDep
from api.portal.routes import page, scope_of
from api.portal.security import SECURITY_HEADERS, PortalNotFound, PortalPrincipalDep, PortalRoute
from domain.authz import Action, TenantChain, authorize
from domain.errors import NotFound
from domain.models import EndUser
from domain.services.portal_queries import get_company
from infra.settings import Settings

router = APIRouter(prefix="/portal", route_class=PortalRoute, include_in_schema=False)


def card_page_csp(settings: Settings) -> str:
    """The portal's policy, plus Stripe.js's origin (and Stripe's frames in production)."""
    parts = urlsplit(settings.stripe_js_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    extra = {origin}
    if parts.netloc == "js.stripe.com":
        extra |= {"https://api.stripe.com", "https://hooks.stripe.com"}
    sources = " ".join(sorted(extra))
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    policy = policy.replace("script-src 'self'", f"script-src 'self' {origin}")
    policy = policy.replace("connect-src 'self'", f"connect-src 'self' {sources}")
    return f"{policy}; frame-src {sources}"


def _context(settings: Settings, owner: cards.CardOwner, api_base: str) -> dict[str, object]:
    return {
        "api_base": api_base,
        "stripe_js_url": settings.stripe_js_url,
        "publishable_key": settings.stripe_publishable_key,
        "stripe_account": owner.account or "",
    }


@router.get("/companies/{company_id}/payment-methods")
async def company_cards(
    company_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    row = await get_company(session, scope_of(principal), company_id[:64])
    if row is None:
        raise PortalNotFound("Cette entreprise n'existe pas ou n'est pas accessible avec votre compte.")
    owner = await cards.owner_of(session, company_id=row.company.id)
    users = (
        await session.execute(select(EndUser).where(EndUser.company_id == row.company.id).order_by(EndUser.email))
    ).scalars()
    context = {
        **_context(settings, owner, f"/api/v1/companies/{row.company.id}/payment-methods"),
        "company": row.company,
        "end_user": None,
        "owner_label": row.company.name,
        "cards": await cards.list_cards(session, owner),
        "default_pm": owner.row.stripe_payment_method_id,
        "end_users": list(users),
    }
    headers = {"Content-Security-Policy": card_page_csp(settings)}
    return page(request, settings, principal, "portal/companies/cards.html", context, nav="companies", headers=headers)


@router.get("/end-users/{end_user_id}/payment-methods")
async def end_user_cards(
    end_user_id: str, request: Request, principal: PortalPrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    try:
        owner = await cards.owner_of(session, end_user_id=end_user_id[:64])
        authorize(principal, Action.READ, TenantChain(owner.org_id, owner.company_id, owner.end_user_id))
    except NotFound as missing:
        raise PortalNotFound("Cet utilisateur n'existe pas ou n'est pas accessible avec votre compte.") from missing
    row = await get_company(session, scope_of(principal), owner.company_id)
    if row is None:
        raise PortalNotFound("Cet utilisateur n'existe pas ou n'est pas accessible avec votre compte.")
    user = owner.row
    assert isinstance(user, EndUser)
    context = {
        **_context(settings, owner, f"/api/v1/end-users/{user.id}/payment-methods"),
        "company": row.company,
        "end_user": user,
        "owner_label": f"{user.full_name} ({user.email})",
        "cards": await cards.list_cards(session, owner),
        "default_pm": user.stripe_payment_method_id,
        "end_users": [],
    }
    headers = {"Content-Security-Policy": card_page_csp(settings)}
    return page(request, settings, principal, "portal/companies/cards.html", context, nav="companies", headers=headers)
