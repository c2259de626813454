"""Portal session cookie, CSRF protection and the portal's HTML error handling.

Session: the `simflow_session` cookie holds the same JWT as the API's bearer token (HttpOnly,
SameSite=Strict, Path=/, Secure when served over HTTPS); `api.deps` reads the same cookie.

The session slides: a page served when less than half of the token's lifetime is left renews the cookie,
so staff working in the portal are not sent back to the login page every `jwt_ttl_minutes`.

CSRF: every portal POST must carry the token of the signed double-submit pattern, in the `csrf_token`
form field or the `X-CSRF-Token` header (htmx sends it from `hx-headers` on `<body>`). The token is
`HMAC(jwt_secret, seed | subject)`, where the seed is a random value in the `simflow_csrf` cookie and the
subject is the staff member of the session cookie (empty before login): a cross-site form cannot read
it, a cookie planted by a sibling domain cannot be paired with a token without the server's secret, and a
token taken from another account's page is worthless. A POST whose `Origin` (or `Sec-Fetch-Site`) shows
another site is refused before the token is even checked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import SessionDep, SettingsDep, decode_token, issue_token, principal_from_token
from domain.authz import Principal, PrincipalKind
from domain.errors import (
    AuthenticationFailed,
    NotFound,
    PasswordChangeRequired,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
)
from domain.models import Organisation
from infra.settings import Settings

SESSION_COOKIE = "simflow_session"
CSRF_COOKIE = "simflow_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/portal/login"
PASSWORD_PATH = "/portal/password"
HOME_PATH = "/portal/home"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Vary": "Cookie, HX-Request, HX-Target",
}


class PortalLoginRequired(Exception):
    """No valid staff session: the browser is sent to the login page."""


class PortalForbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PortalNotFound(Exception):
    def __init__(
        self, message: str = "La page demandée n'existe pas ou n'est pas accessible avec votre compte."
    ) -> None:
        super().__init__(message)
        self.message = message


class CsrfRejected(Exception):
    pass


# --- session cookie --------------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.jwt_ttl_minutes * 60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))


# --- CSRF ------------------------------------------------------------------------------------------


def _session_subject(settings: Settings, session_token: str | None) -> str:
    """Who the session cookie names (signature and expiry checked), or "" without a valid one."""
    if not session_token:
        return ""
    try:
        claims = decode_token(settings, session_token)
    except AuthenticationFailed:
        return ""
    return f"{claims.get('kind', '')}:{claims.get('sub', '')}"


def _csrf_digest(settings: Settings, seed: str, session_token: str | None) -> str:
    message = f"simflow-portal-csrf|{seed}|{_session_subject(settings, session_token)}".encode()
    return hmac.new(settings.jwt_secret.get_secret_value().encode(), message, hashlib.sha256).hexdigest()


def csrf_seed(request: Request) -> str:
    """The CSRF seed of this browser, created (and set as a cookie by `apply_csrf_cookie`) when missing."""
    seed = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "csrf_new_seed", None)
    if not seed:
        seed = secrets.token_urlsafe(32)
        request.state.csrf_new_seed = seed
    return str(seed)


def csrf_token(request: Request, settings: Settings, *, session_token: str | None = None) -> str:
    """The token to put in forms. `session_token` overrides the request's cookie (right after login)."""
    if session_token is None:
        session_token = request.cookies.get(SESSION_COOKIE)
    return _csrf_digest(settings, csrf_seed(request), session_token)


def apply_csrf_cookie(request: Request, response: Response) -> None:
    seed = getattr(request.state, "csrf_new_seed", None)
    if seed:
        response.set_cookie(CSRF_COOKIE, seed, path="/", httponly=True, samesite="strict", secure=_secure(request))


def _same_origin(request: Request) -> bool:
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    host = request.headers.get("Host", "")
    return parts.netloc == host and parts.scheme in ("http", "https")


async def verify_csrf(request: Request, settings: SettingsDep) -> None:
    """Dependency of every portal POST: same origin, and a token matching the CSRF and session cookies."""
    if not _same_origin(request):
        raise CsrfRejected
    seed = request.cookies.get(CSRF_COOKIE)
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    if not seed or not submitted:
        raise CsrfRejected
    expected = _csrf_digest(settings, seed, request.cookies.get(SESSION_COOKIE))
    if not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise CsrfRejected


CsrfChecked = Depends(verify_csrf)


# --- who is browsing -------------------------------------------------------------------------------


async def portal_principal(request: Request, session: SessionDep, settings: SettingsDep) -> Principal:
    """The staff member of the session cookie. Bearer tokens and API keys are not portal sessions."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise PortalLoginRequired
    try:
        principal = await principal_from_token(session, settings, token)
    except AuthenticationFailed as exc:
        raise PortalLoginRequired from exc
    request.state.portal_principal = principal
    if principal.kind is PrincipalKind.STAFF and principal.org_id is not None:
        request.state.portal_branding = await organisation_branding(session, principal.org_id)
    if principal.kind is not PrincipalKind.STAFF:
        raise PortalForbidden(
            "Ce portail est réservé au personnel. Les utilisateurs finaux utilisent l'espace client : /self-care."
        )
    expires = decode_token(settings, token).get("exp", 0)
    if isinstance(expires, int | float) and expires - time.time() < settings.jwt_ttl_minutes * 30:
        request.state.portal_session_renewal = issue_token(settings, principal.kind, principal.subject_id)
    return principal


PortalPrincipalDep = Annotated[Principal, Depends(portal_principal)]


@dataclass(frozen=True)
class PortalBranding:
    """The header of an organisation's staff pages: its mobile brand, and its logo (seed 002) when it has one."""

    brand: str
    has_logo: bool


async def organisation_branding(session: AsyncSession, org_id: str) -> PortalBranding | None:
    row = (
        await session.execute(
            select(Organisation.brand_name, Organisation.name, Organisation.logo.is_not(None)).where(
                Organisation.id == org_id
            )
        )
    ).first()
    if row is None:
        return None
    brand_name, name, has_logo = row
    return PortalBranding(brand=brand_name or name, has_logo=bool(has_logo))


def safe_next(value: str | None) -> str:
    """Only a path inside the portal may be a post-login destination (no open redirect)."""
    if not value or not value.startswith("/portal") or value.startswith("//") or "\\" in value:
        return HOME_PATH
    if urlsplit(value).netloc or value.startswith((LOGIN_PATH, PASSWORD_PATH)):
        return HOME_PATH
    return value


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def _redirect_with_next(request: Request, path: str, htmx_status: int, *, pages_only: bool = False) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if pages_only and request.method != "GET":
        target = HOME_PATH  # a refused form is not replayed as a GET afterwards
    location = f"{path}?{urlencode({'next': safe_next(target)})}"
    if is_htmx(request):
        return Response(status_code=htmx_status, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def login_redirect(request: Request) -> Response:
    return _redirect_with_next(request, LOGIN_PATH, 401)


def password_change_redirect(request: Request) -> Response:
    """The guard refused the page: the password an administrator set must be changed first."""
    return _redirect_with_next(request, PASSWORD_PATH, 403, pages_only=True)


# --- HTML errors -----------------------------------------------------------------------------------


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    from api.portal.templating import render

    principal = getattr(request.state, "portal_principal", None)
    if principal is not None and principal.kind is not PrincipalKind.STAFF:
        principal = None
    settings: Settings = request.app.state.simflow.settings
    context: dict[str, Any] = {
        "principal": principal,
        "csrf_token": csrf_token(request, settings),
        "title": title,
        "message": message,
        "status": status,
        "nav": None,
    }
    response = render(request, "portal/error.html", context, status_code=status)
    apply_csrf_cookie(request, response)
    return response


class PortalRoute(APIRoute):
    """Turns the portal's exceptions into French HTML pages (the API keeps its RFC 9457 JSON errors)."""

    # The self-care space (`api.portal.selfcare.SelfCareRoute`) overrides these three with its own pages.
    def login_required(self, request: Request) -> Response:
        return login_redirect(request)

    def password_change_required(self, request: Request) -> Response:
        return password_change_redirect(request)

    def error_page(self, request: Request, status: int, title: str, message: str) -> Response:
        return error_page(request, status, title, message)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        error_page = self.error_page

        async def portal_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except PortalLoginRequired:
                response = self.login_required(request)
            except PasswordChangeRequired:
                response = self.password_change_required(request)
            except (PortalNotFound, NotFound) as exc:
                message = exc.message if isinstance(exc, PortalNotFound) else PortalNotFound().message
                response = error_page(request, 404, "Page introuvable", message)
            except PortalForbidden as exc:
                response = error_page(request, 403, "Accès refusé", exc.message)
            except PermissionDenied as exc:  # the guard's area check, or the API handler a page calls
                reason = f"Votre compte ne permet pas d'utiliser cette page ({exc.reason})."
                response = error_page(request, 403, "Accès refusé", reason)
            except CsrfRejected:
                response = error_page(
                    request,
                    403,
                    "Requête refusée",
                    "Le jeton de sécurité du formulaire est absent ou invalide. Rechargez la page puis recommencez.",
                )
            except ValidationFailed as exc:
                response = error_page(request, 400, "Requête invalide", exc.reason)
            except RateLimited as exc:
                wait = f"{exc.reason} : réessayez dans {exc.retry_after_s} s."
                response = error_page(request, 429, "Trop de requêtes", wait)
                response.headers["Retry-After"] = str(exc.retry_after_s)
            renewal = getattr(request.state, "portal_session_renewal", None)
            if renewal and response.status_code < 400:
                set_session_cookie(response, request, request.app.state.simflow.settings, renewal)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return portal_handler
