"""Access control of every route, by construction.

`create_app` installs `access_guard` as an application-wide dependency, so every route — the ones that
exist and the ones added later — runs it before its own dependencies, parameters and body:

1. authentication: every `/api/` route needs a principal (bearer JWT, `X-API-Key`, or the session
   cookie) unless `ROUTE_RULES` declares it public; other routes (portal pages) use the session cookie
   when there is one and leave the login redirect to the page;
2. every id in the path is resolved to its row and tenant chain (`domain.services.tenancy.RESOURCES`)
   and goes through `authorize`: outside the caller's subtree → 404, the same answer as for an id that
   does not exist. An id whose model is unknown fails closed with a message saying where to register it;
3. function-level rules: read-only keys do not write, API keys do not use account functions, end users
   write only on self-service routes, staff members need the permission of the route's area
   (`AREA_BY_SEGMENT`), and an account whose password was set by an administrator must change it first
   (`PasswordChangeRequired`: a 403 problem on the API, a redirect to the password page on the portal;
   routes declared `during_password_change` stay open);
4. rate limits on top-up creation (per principal and per line);
5. after the handler succeeds, every write on the API is appended to the audit log in the request's
   transaction (handlers add the created object or the workflow id with `audit_note`).

`RequestContextMiddleware` gives every request an id (`X-Request-ID`), binds it to the logs and the
audit context, and throttles failed logins per client IP.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from sqlalchemy import update

from api.deps import (
    SessionDep,
    StateDep,
    api_key_scheme,
    oauth2_scheme,
    resolve_principal,
)
from api.login import bind_request_settings, reset_request_settings
from api.problems import DATABASE_UNAVAILABLE, problem, unavailable_problem
from domain.audit import AuditEntry, bind_context, record, reset_context
from domain.authz import Action, Area, Principal, PrincipalKind, authorize
from domain.errors import (
    AuthenticationFailed,
    ErrorCode,
    NotFound,
    PasswordChangeRequired,
    PermissionDenied,
    ValidationFailed,
)
from domain.models import ApiKey
from domain.services.tenancy import resolve, spec_for

log = structlog.get_logger()

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class RouteRule:
    public: bool = False  # no authentication at all
    humans_only: bool = False  # account functions: not with an API key
    staff_only: bool = False  # not for end users nor API keys
    end_user_write: bool = False  # self-service: end users may call it with a writing method
    during_password_change: bool = False  # still allowed while the password must be changed
    check_area: bool = True  # False: the handler checks the area itself (depends on the target level)
    rate_limit: str | None = None  # named limit applied to writing methods
    platform_only: bool = False  # functions of the platform operator (organisations, audit verification)


PUBLIC = RouteRule(public=True)
ACCOUNT = RouteRule(humans_only=True, end_user_write=True, check_area=False)
SELF_DURING_CHANGE = RouteRule(humans_only=True, end_user_write=True, during_password_change=True, check_area=False)
PORTAL_DURING_CHANGE = RouteRule(humans_only=True, during_password_change=True, check_area=False)

# First match wins: exact templates, then prefixes (ending with "*").
ROUTE_RULES: list[tuple[str, RouteRule]] = [
    ("/healthz", PUBLIC),
    ("/api/v1/auth/token", PUBLIC),
    ("/api/v1/auth/refresh", PUBLIC),
    ("/api/v1/auth/password/forgot", PUBLIC),
    ("/api/v1/auth/password/reset", PUBLIC),
    ("/api/v1/snaic/callback", PUBLIC),
    ("/api/v1/stripe/webhook", PUBLIC),
    ("/api/v1/organisations", RouteRule(platform_only=True)),
    ("/api/v1/audit-log/verification", RouteRule(platform_only=True)),
    ("/api/v1/health", RouteRule(platform_only=True)),  # addresses and errors of every part
    ("/api/v1/auth/me", RouteRule(humans_only=True, during_password_change=True, check_area=False)),
    ("/api/v1/auth/password/change", SELF_DURING_CHANGE),
    ("/api/v1/auth/logout", SELF_DURING_CHANGE),
    ("/api/v1/auth/*", ACCOUNT),
    ("/portal/login", PORTAL_DURING_CHANGE),
    ("/portal/logout", PORTAL_DURING_CHANGE),
    ("/portal/password", PORTAL_DURING_CHANGE),
    ("/api/v1/api-keys*", RouteRule(humans_only=True, staff_only=True, check_area=False)),
    ("/api/v1/staff*", RouteRule(humans_only=True, staff_only=True, check_area=False)),
    ("/api/v1/audit-log*", RouteRule(staff_only=True)),
    ("/api/v1/lines/{line_id}/recharges", RouteRule(end_user_write=True, rate_limit="topup")),
    ("/api/v1/recharges/{recharge_id}/resolution", RouteRule(staff_only=True)),
    ("/api/v1/wallets/{wallet_id}/fundings/{funding_id}/resolution", RouteRule(staff_only=True)),
    ("*/recharges", RouteRule(end_user_write=True, rate_limit="topup")),
    ("/api/v1/end-users/{end_user_id}/payment-methods*", RouteRule(end_user_write=True)),  # their own cards
    ("/api/v1/organisations/{org_id}/stripe-account", RouteRule(humans_only=True, staff_only=True)),
    # Self-care space: end users write there (recharges matched `*/recharges` above, with its rate limit);
    # the pages themselves refuse staff sessions (`api.portal.selfcare.selfcare_principal`).
    ("/self-care/login", SELF_DURING_CHANGE),
    ("/self-care/logout", SELF_DURING_CHANGE),
    ("/self-care/password/forgot", PUBLIC),
    ("/self-care*", ACCOUNT),
]

# Staff permission areas (seed 000) by the static segments of a route path, the last one that matches.
AREA_BY_SEGMENT: dict[str, Area] = {
    "sims": Area.SIM_CARD,
    "lines": Area.SIM_CARD,
    "activation": Area.SIM_CARD,
    "termination": Area.SIM_CARD,
    "bulk": Area.SIM_CARD,
    "bulk-operations": Area.SIM_CARD,
    "deployments": Area.SIM_CARD,
    "number-ranges": Area.SIM_CARD,
    "numbers": Area.SIM_CARD,
    "companies": Area.COMPANY,
    "billing-sites": Area.COMPANY,
    "parcs": Area.COMPANY,
    "end-users": Area.END_USER,
    "plans": Area.PLAN,
    "catalogue": Area.PLAN,
    "articles": Area.PLAN,
    "auto-renew": Area.PLAN,
    "pools": Area.POOL,
    "wallets": Area.PAYMENT,
    "payment-methods": Area.PAYMENT,
    "wallet": Area.PAYMENT,
    "fundings": Area.PAYMENT,
    "recharges": Area.PAYMENT,
    "topups": Area.PAYMENT,
    "payments": Area.PAYMENT,
    "refunds": Area.PAYMENT,
    "renewals": Area.PAYMENT,
    "resolution": Area.PAYMENT,
    "invoices": Area.BILLING,
    "credit-notes": Area.BILLING,
    "transactions": Area.BILLING,
    "rules": Area.AUTOMATION,
    "organisations": Area.ORGANISATION,
    "onboardings": Area.ORGANISATION,
    "webhook-endpoints": Area.ORGANISATION,
    "audit-log": Area.ORGANISATION,
    "operators": Area.OPERATOR,
    "psp": Area.PSP,
    "stripe": Area.PSP,
    "stripe-account": Area.PSP,
    "esim-store": Area.ESIM_STORE,
    "cfast": Area.BILLING_SOFTWARE,
    "billing-software": Area.BILLING_SOFTWARE,
}

LOGIN_PATH = re.compile(r"^(/api/v1/auth/token|/.*/login)$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def rule_for(template: str) -> RouteRule:
    for pattern, rule in ROUTE_RULES:
        if pattern.startswith("*") and template.endswith(pattern[1:]):
            return rule
        if pattern.endswith("*") and template.startswith(pattern[:-1]):
            return rule
        if pattern == template:
            return rule
    return RouteRule()


def area_for(template: str) -> Area | None:
    segments = [s for s in template.split("/") if s and not s.startswith("{")]
    for segment in reversed(segments):
        if segment in AREA_BY_SEGMENT:
            return AREA_BY_SEGMENT[segment]
    return None


def is_api(template: str) -> bool:
    return template.startswith("/api/")


def path_parameters(route: APIRoute | str) -> list[str]:
    path = route if isinstance(route, str) else route.path
    return re.findall(r"{([^}:]+)(?::[^}]*)?}", path)


def route_template(request: Request, route: APIRoute) -> str:
    """The full path template of the matched route (with any prefix added when its router was included)."""
    try:
        from fastapi.routing import _get_scope_effective_route_context

        context = _get_scope_effective_route_context(request.scope)
    except ImportError:  # another FastAPI version: routers carry their own prefix here
        context = None
    effective = getattr(context, "starlette_route", None) or context
    template = getattr(effective, "path_format", None)
    return template if isinstance(template, str) and template else route.path_format


# --- audit notes from handlers ----------------------------------------------------------------------

_note: ContextVar[dict[str, Any] | None] = ContextVar("simflow_audit_note", default=None)


def audit_note(**values: Any) -> None:
    """Adds to the audit row the guard writes for this request: `action`, `target`, `org_id`,
    `company_id`, `end_user_id`, `workflow_id`, or any detail (never a secret)."""
    note = _note.get()
    if note is not None:
        note.update({k: v for k, v in values.items() if v is not None})


# --- the guard ---------------------------------------------------------------------------------------


def _raise_function_denied(principal: Principal, rule: RouteRule, method: str, template: str) -> None:
    writing = method not in SAFE_METHODS
    if rule.platform_only and not principal.is_platform_admin:
        raise PermissionDenied(None, "action réservée à la plateforme")
    if rule.humans_only and principal.kind is PrincipalKind.API_KEY:
        raise PermissionDenied(None, "action impossible avec une clé d'API")
    if rule.staff_only and principal.kind is not PrincipalKind.STAFF:
        raise PermissionDenied(None, "action réservée au personnel")
    if writing and principal.read_only:
        raise PermissionDenied(None, "cette clé d'API est en lecture seule")
    if writing and principal.kind is PrincipalKind.END_USER and not rule.end_user_write:
        raise PermissionDenied(None, "action réservée au personnel")
    if rule.check_area and principal.kind is PrincipalKind.STAFF and not principal.is_platform_admin:
        area = area_for(template)
        action = Action.WRITE if writing else Action.READ
        if area is None:
            if is_api(template) and "*" not in principal.permissions:
                raise PermissionDenied(None, "action réservée aux administrateurs de l'organisation")
        elif not principal.may(area, action):
            raise PermissionDenied(None, f"permission « {area.value} » requise")


async def access_guard(
    request: Request,
    session: SessionDep,
    state: StateDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    _api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> AsyncIterator[None]:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        yield
        return
    template, method = route_template(request, route), request.method.upper()
    rule = rule_for(template)
    if rule.public:
        yield
        return
    api = is_api(template)
    try:
        principal = await resolve_principal(request, session, state.settings, bearer=bearer, cookie_only=not api)
    except AuthenticationFailed:
        if api:
            raise
        principal = None  # an expired session on a page: the page sends the browser to its login
    if principal is None:
        if api:
            raise AuthenticationFailed(None, "authentification requise")
        yield  # a page without a session: the page itself redirects to its login
        return
    request.state.principal = principal
    if principal.must_change_password and not rule.during_password_change:
        raise PasswordChangeRequired(None, "changez d'abord le mot de passe défini par l'administrateur")

    # Every id in the path: outside the caller's subtree it does not exist.
    writing = method not in SAFE_METHODS
    target_chain = None
    targets: dict[str, str] = {}
    for name in path_parameters(template):
        spec = spec_for(name)
        value = str(request.path_params.get(name, ""))
        if spec is None:
            continue
        try:
            _, chain = await resolve(session, spec, value)
        except ValidationFailed:
            if api:
                raise  # a malformed id is a 422 on the API, whoever asks
            raise NotFound(None, f"{spec.what} introuvable") from None  # pages show "not found"
        authorize(principal, Action.READ, chain, spec.what)
        if writing and not principal.sees(chain):
            raise PermissionDenied(None, f"{spec.what} : modification réservée à l'organisation")
        target_chain = chain
        targets[name] = value

    _raise_function_denied(principal, rule, method, template)

    if writing and rule.rate_limit == "topup":
        # The limiter takes connections of its own: end this session's read transaction first, so that
        # concurrent requests never hold every pooled connection while each waits for one more.
        await session.commit()
        settings, limiter = state.settings, state.limiter
        window = settings.rate_limit_window_s
        who = f"topup:principal:{principal.kind}:{principal.subject_id}"
        await limiter.take(who, settings.rate_limit_topups_per_principal, window, "trop de recharges")
        for name, value in targets.items():
            await limiter.take(
                f"topup:{name}:{value}", settings.rate_limit_topups_per_line, window, "trop de recharges"
            )

    note: dict[str, Any] = {}
    token = _note.set(note)
    try:
        yield
    finally:
        _note.reset(token)
    if principal.kind is PrincipalKind.API_KEY:
        await _touch_api_key(session, state, principal.subject_id)
    # Portal pages write through the API's handlers: a page's write is recorded when it names its action.
    if writing and (api or "action" in note):
        chain = target_chain or principal.chain()
        await record(
            session,
            AuditEntry(
                actor=principal.label,
                actor_kind=principal.kind.value,
                action=note.pop("action", f"{method} {template}"),
                result=note.pop("result", "ok"),
                org_id=note.pop("org_id", chain.org_id),
                company_id=note.pop("company_id", chain.company_id),
                end_user_id=note.pop("end_user_id", chain.end_user_id),
                target=note.pop("target", ",".join(f"{k}={v}" for k, v in targets.items()) or None),
                workflow_id=note.pop("workflow_id", None),
                details={"principal_id": principal.subject_id, "route": f"{method} {template}", **note},
            ),
        )


async def _touch_api_key(session: SessionDep, state: StateDep, key_id: str) -> None:
    """Records the key's last use, at most once a minute per process (a write on every request would
    serialise readers on SQLite)."""
    now = time.monotonic()
    if now - state.api_key_touched.get(key_id, -1e9) < state.settings.api_key_touch_interval_s:
        return
    state.api_key_touched[key_id] = now
    await session.execute(
        update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=datetime.now(UTC)),
        execution_options={"synchronize_session": False},
    )


# --- request context -----------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RequestContextMiddleware:
    """Request id, log and audit context, and the per-IP throttle of failed logins."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        client = scope.get("client")
        ip = str(client[0]) if client else None
        structlog.contextvars.bind_contextvars(request_id=request_id)
        audit_token = bind_context(request_id=request_id, ip=ip, user_agent=headers.get("user-agent"))
        throttle = scope.get("method") == "POST" and LOGIN_PATH.match(scope.get("path", "")) is not None
        state = getattr(getattr(scope.get("app"), "state", None), "simflow", None)
        settings_token = bind_request_settings(state.settings) if state is not None else None
        status_holder: dict[str, int] = {}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            if throttle and state is not None:
                settings = state.settings
                try:
                    wait = await state.limiter.retry_after(
                        f"login-failures:{ip}", settings.rate_limit_login_failures_per_ip, settings.rate_limit_window_s
                    )
                except DATABASE_UNAVAILABLE as exc:
                    # Outside the app's exception handlers: answer the outage here, as they would.
                    await unavailable_problem(Request(scope), exc)(scope, receive, send_with_id)
                    return
                if wait is not None:
                    await _too_many(send_with_id, wait)
                    return
            await self.app(scope, receive, send_with_id)
            if throttle and state is not None and status_holder.get("status") == 401:
                await state.limiter.hit(f"login-failures:{ip}", state.settings.rate_limit_window_s)
        finally:
            if settings_token is not None:
                reset_request_settings(settings_token)
            reset_context(audit_token)
            structlog.contextvars.unbind_contextvars("request_id")


async def _too_many(send: Send, wait: int) -> None:

    response = problem(
        429,
        f"trop de tentatives de connexion échouées depuis cette adresse : réessayez dans {wait} s",
        code=ErrorCode.RATE_LIMITED,
        headers={"Retry-After": str(wait)},
    )
    await send({"type": "http.response.start", "status": 429, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# --- OpenAPI: security and problem responses on every operation ------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                "required": ["field", "reason"],
            },
        },
    },
    "required": ["type", "title", "status", "detail", "code"],
}

PROBLEM_DESCRIPTIONS = {
    "400": "Requête illisible (corps non décodable)",
    "401": "Authentification requise ou invalide",
    "403": "Action non autorisée pour cet appelant",
    "404": "Objet introuvable (ou hors du périmètre de l'appelant)",
    "409": "Conflit",
    "413": "Corps de requête trop volumineux (avant toute authentification)",
    "422": "Données invalides",
    "429": "Trop de requêtes (voir Retry-After)",
    "503": "Service momentanément indisponible (voir Retry-After)",
}
# Only where the operation takes a body.
BODY_PROBLEM_DESCRIPTIONS = {"413": "Corps de requête trop volumineux"}

# The access token as the HTTP bearer scheme it is (RFC 6750), next to the OAuth2 password flow that
# obtains it: OpenAPI tools that do not run OAuth2 flows (schemathesis among them) then know which header
# carries the credentials.
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "Jeton d'accès obtenu par /api/v1/auth/token, dans l'en-tête Authorization",
}


def _customise_openapi(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        schema["components"].setdefault("securitySchemes", {})["HTTPBearer"] = BEARER_SCHEME
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in schema.get("paths", {}).items():
            rule = rule_for(path)
            for method, operation in operations.items():
                if not isinstance(operation, dict) or method.upper() not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                    continue
                responses = operation.setdefault("responses", {})
                descriptions = PROBLEM_DESCRIPTIONS | (BODY_PROBLEM_DESCRIPTIONS if "requestBody" in operation else {})
                for code, description in descriptions.items():
                    existing = responses.get(code)
                    if existing is None or code == "422":
                        responses[code] = {"description": description, "content": problem}
                if rule.public:
                    operation.pop("security", None)
                elif {"OAuth2PasswordBearer": []} in operation.get("security", []):
                    at = operation["security"].index({"OAuth2PasswordBearer": []}) + 1
                    operation["security"].insert(at, {"HTTPBearer": []})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI) -> None:
    """The request-context middleware and the OpenAPI additions. The guard itself is installed as an
    application dependency by `create_app` (so routers included later get it too)."""
    app.add_middleware(RequestContextMiddleware)
    _customise_openapi(app)


GuardDep = Depends(access_guard, scope="function")
