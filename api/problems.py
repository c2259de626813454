"""RFC 9457 problem responses. The only place where domain errors become HTTP statuses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Index, UniqueConstraint
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from domain.errors import MESSAGES, DomainError, ErrorCode, RateLimited
from domain.identifiers import InvalidIdentifier
from domain.models import Base

log = structlog.get_logger()

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# The HTTP status of every catalogue code. An activity's or an external system's code reaches the API only
# through a workflow's answer; its status says what the caller can do about it.
STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.VALIDATION_FAILED: 422,
    ErrorCode.INVALID_IDENTIFIER: 422,
    ErrorCode.INVALID_CHARACTERS: 422,
    ErrorCode.IDEMPOTENCY_MISMATCH: 422,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.ROUTE_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.AUTHENTICATION_FAILED: 401,
    ErrorCode.TOTP_REQUIRED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.PASSWORD_CHANGE_REQUIRED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.RESOURCE_BUSY: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.ILLEGAL_TRANSITION: 409,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.LINE_NOT_FOUND: 404,
    ErrorCode.LINE_NOT_RECHARGEABLE: 409,
    ErrorCode.LINE_NO_OCS_ACCOUNT: 409,
    ErrorCode.LINE_INCOMPLETE: 409,
    ErrorCode.LINE_INVALID_STATE: 409,
    ErrorCode.LINE_INVALID_OPERATION: 422,
    ErrorCode.LINE_VALIDATION_FAILED: 422,
    ErrorCode.LINE_SAME_PLAN: 409,
    ErrorCode.LINE_TERMINATION_SCHEDULED: 409,
    ErrorCode.LINE_OPERATION_FAILED: 502,
    ErrorCode.LINE_OPERATION_NEEDS_ATTENTION: 502,
    ErrorCode.ACTIVATION_FAILED: 502,
    ErrorCode.ACTIVATION_NEEDS_ATTENTION: 502,
    ErrorCode.TERMINATION_NOT_CANCELLABLE: 409,
    ErrorCode.TERMINATION_NOT_IN_GRACE: 409,
    ErrorCode.TERMINATION_NOT_NEEDING_ATTENTION: 409,
    ErrorCode.TERMINATION_INVALID_GRACE: 422,
    ErrorCode.BULK_INVALID_KIND: 422,
    ErrorCode.SAGA_STEP_FAILED: 502,
    ErrorCode.RESOLUTION_NOT_AWAITED: 409,
    ErrorCode.RESOLUTION_UNKNOWN_ACTION: 422,
    ErrorCode.RESOLUTION_NOTE_REQUIRED: 422,
    ErrorCode.CUSTOMER_SYNC_FAILED: 502,
    ErrorCode.ONBOARDING_CLOSED: 409,
    ErrorCode.ONBOARDING_WRONG_STAGE: 409,
    ErrorCode.ONBOARDING_NOT_MANUAL: 409,
    ErrorCode.ONBOARDING_PLATFORM_NOT_READY: 409,
    ErrorCode.ONBOARDING_AMOUNT: 422,
    ErrorCode.ONBOARDING_REFERENCE_REQUIRED: 422,
    ErrorCode.ONBOARDING_CARD_REQUIRED: 422,
    ErrorCode.ONBOARDING_PAYMENT_KIND: 409,
    ErrorCode.ONBOARDING_PAYMENT_IN_PROGRESS: 409,
    ErrorCode.ONBOARDING_UNKNOWN_ITEM: 422,
    ErrorCode.ONBOARDING_DOCUMENT_REQUIRED: 422,
    ErrorCode.ONBOARDING_REJECTED_ITEMS_REQUIRED: 422,
    ErrorCode.ONBOARDING_NOTE_REQUIRED: 422,
    ErrorCode.ONBOARDING_NOTHING_TO_RETRY: 409,
    ErrorCode.ONBOARDING_REASON_REQUIRED: 422,
    ErrorCode.ONBOARDING_DOCUMENT_NOT_FOUND: 404,
    ErrorCode.ONBOARDING_WRONG_ITEM: 409,
    ErrorCode.ONBOARDING_DOSSIER_INCOMPLETE: 409,
    ErrorCode.ONBOARDING_ORGANISATION_NOT_FOUND: 404,
    ErrorCode.ONBOARDING_SALES_TABLES: 422,
    ErrorCode.ONBOARDING_EMAIL_TAKEN: 409,
    ErrorCode.SUBSCRIPTION_NOT_FOUND: 404,
    ErrorCode.SUBSCRIPTION_LINE_NOT_FOUND: 404,
    ErrorCode.SUBSCRIPTION_NOT_RENEWABLE: 409,
    ErrorCode.SUBSCRIPTION_INVALID_PLAN: 422,
    ErrorCode.POOL_INVALID_PLAN: 422,
    ErrorCode.POOL_INVALID_MEMBER: 409,
    ErrorCode.TOPUP_NOT_FOUND: 404,
    ErrorCode.FUNDING_NOT_FOUND: 404,
    ErrorCode.WALLET_NOT_FOUND: 404,
    ErrorCode.WALLET_DISABLED: 409,
    ErrorCode.WALLET_CURRENCY_MISMATCH: 409,
    ErrorCode.WALLET_INSUFFICIENT_FUNDS: 409,
    ErrorCode.PAYMENT_NO_SAVED_CARD: 409,
    ErrorCode.PAYMENT_DECLINED: 402,
    ErrorCode.BILLING_INVALID_PERIOD: 422,
    ErrorCode.BILLING_COMPANY_NOT_FOUND: 404,
    ErrorCode.USAGE_IMPORT_NOT_FOUND: 404,
    ErrorCode.USAGE_INVALID_FILE: 422,
    ErrorCode.USAGE_IMPORT_FAILED: 502,
    ErrorCode.USAGE_SCAN_FAILED: 502,
    ErrorCode.WEBHOOK_UNKNOWN_EVENT: 422,
    ErrorCode.WEBHOOK_ENDPOINT_GONE: 404,
    ErrorCode.WEBHOOK_HTTP_STATUS: 502,
    ErrorCode.WEBHOOK_TARGET_REJECTED: 422,
    ErrorCode.EXTERNAL_UNAVAILABLE: 503,
    ErrorCode.EXTERNAL_REJECTED: 502,
    ErrorCode.SNAIC_LINE_UNKNOWN: 502,
    ErrorCode.SNAIC_OFFER_CODE_REQUIRED: 422,
    ErrorCode.SNAIC_INVALID_SIGNATURE: 401,
    ErrorCode.CFAST_SERVICE_UNKNOWN: 502,
    ErrorCode.CFAST_SERVICE_LABEL_IN_USE: 409,
    ErrorCode.STRIPE_INVALID_SIGNATURE: 400,
    ErrorCode.STRIPE_INVALID_EVENT: 400,
}
# The four kinds of answer of every external system: one that cannot answer is a 503 (try later), one that
# refuses a 502 (a bad gateway answer).
STATUS_BY_CODE |= {
    code: 503 if code.endswith(".unavailable") else 502
    for code in ErrorCode
    if code not in STATUS_BY_CODE and code.endswith((".unavailable", ".rejected", ".not_found", ".conflict"))
}

# The code of an HTTP error raised by the framework or a route (`HTTPException`), by status.
CODE_BY_HTTP_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.AUTHENTICATION_FAILED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.ROUTE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.VALIDATION_FAILED,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


TITLES = {
    400: "Requête invalide",
    401: "Authentification requise",
    402: "Paiement refusé",
    403: "Accès refusé",
    404: "Introuvable",
    405: "Méthode non autorisée",
    409: "Conflit",
    413: "Contenu trop volumineux",
    415: "Type de contenu non pris en charge",
    422: "Données invalides",
    429: "Trop de requêtes",
    500: "Erreur interne",
    502: "Erreur d'un système externe",
    503: "Service indisponible",
}


def problem(
    status: int,
    detail: str | None = None,
    *,
    code: ErrorCode,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://simflow.dev/problems/{code}",
        "title": TITLES.get(status, "Erreur"),
        "status": status,
        "detail": detail or MESSAGES[code],
        "code": code.value,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


# --- database errors ---------------------------------------------------------------------------------------

DATABASE_RETRY_AFTER_S = 5

# The database cannot be reached or cannot serve now (connection refused or lost, server shutting down, too
# many connections, pool exhausted, SQLite locked or unreadable): the request may succeed later.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,  # asyncpg raises the socket's error (ConnectionRefusedError, TimeoutError…) unwrapped on connect
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
)

_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<columns>[\w.]+(?:, [\w.]+)*)")


@cache
def _unique_fields() -> tuple[dict[str, str], dict[tuple[str, frozenset[str]], str]]:
    """The API field of every unique constraint of the model, by constraint name (PostgreSQL reports it) and
    by (table, columns) (SQLite reports those). The field is the constraint's last column (the leading ones
    scope it: `(org_id, siret)` → `siret`), or the column's `info["api_field"]` when the API names it
    otherwise."""
    by_name: dict[str, str] = {}
    by_columns: dict[tuple[str, frozenset[str]], str] = {}
    for table in Base.metadata.tables.values():
        groups: list[UniqueConstraint | Index] = [c for c in table.constraints if isinstance(c, UniqueConstraint)]
        groups += [i for i in table.indexes if i.unique]
        for group in groups:
            columns = list(group.columns)
            if not columns:
                continue
            last = columns[-1]
            field = str(last.info.get("api_field", last.name))
            if isinstance(group.name, str):
                by_name[group.name] = field
            by_columns[(table.name, frozenset(c.name for c in columns))] = field
    return by_name, by_columns


def unique_field(exc: IntegrityError) -> str | None:
    """The API field whose unique constraint the database refused, None for another integrity error."""
    orig = exc.orig
    by_name, by_columns = _unique_fields()
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        name = getattr(getattr(orig, "__cause__", None), "constraint_name", None)
        return by_name.get(str(name)) if name else None
    match = _SQLITE_UNIQUE.search(str(orig))
    if match is None:
        return None
    qualified = [part.strip().split(".", 1) for part in match["columns"].split(",")]
    tables = {parts[0] for parts in qualified if len(parts) == 2}
    if len(tables) != 1:
        return None
    return by_columns.get((tables.pop(), frozenset(parts[1] for parts in qualified)))


def _location_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        status = STATUS_BY_CODE[exc.code]
        errors = [{"field": exc.field, "reason": exc.reason}] if exc.field else None
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return problem(status, str(exc) if exc.field else exc.reason, code=exc.code, errors=errors, headers=headers)

    @app.exception_handler(InvalidIdentifier)
    async def invalid_identifier(_: Request, exc: InvalidIdentifier) -> JSONResponse:
        return problem(
            422,
            f"{exc.field}: {exc.reason}",
            code=ErrorCode.INVALID_IDENTIFIER,
            errors=[{"field": exc.field, "reason": exc.reason}],
        )

    @app.exception_handler(RequestValidationError)
    async def request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _location_to_field(e.get("loc", ())), "reason": e.get("msg", "")} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, detail, code=ErrorCode.VALIDATION_FAILED, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = CODE_BY_HTTP_STATUS.get(exc.status_code, ErrorCode.INTERNAL_ERROR)
        return problem(exc.status_code, str(exc.detail), code=code, headers=exc.headers)

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's router answers with the methods of the first route matching the path only; a path
        # served by several routes (GET and POST /staff) must list them all (RFC 9110 § 15.5.6).
        allowed = allowed_methods(request)
        return problem(
            405,
            f"méthode {request.method} non autorisée ici (autorisées : {', '.join(allowed)})",
            code=ErrorCode.METHOD_NOT_ALLOWED,
            headers={"Allow": ", ".join(allowed)},
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # A NUL character in a query parameter or form field (SQLSTATE 22021 on PostgreSQL) is bad input.
        if getattr(exc.orig, "sqlstate", None) == "22021":
            return problem(422, "caractère interdit (NUL) dans la requête", code=ErrorCode.INVALID_CHARACTERS)
        if isinstance(exc, IntegrityError):
            return integrity_conflict(request, exc)
        if isinstance(exc, DATABASE_UNAVAILABLE):
            return unavailable_problem(request, exc)
        raise exc

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        return unavailable_problem(request, exc)

    for unavailable in DATABASE_UNAVAILABLE:
        if not issubclass(unavailable, DBAPIError):
            app.add_exception_handler(unavailable, database_unavailable)


def integrity_conflict(request: Request, exc: IntegrityError) -> JSONResponse:
    """A write the database refused because of another one (two creates of one unique value at the same
    moment, a row removed meanwhile): 409, naming the field when it is a unique value. Raised at flush or at
    commit, which both happen before the response (see `api.deps.SessionDep`)."""
    field = unique_field(exc)
    log.info("api.integrity_conflict", path=request.url.path, field=field, error=str(exc.orig)[:300])
    if field is None:
        return problem(409, "conflit avec une modification concurrente : réessayez", code=ErrorCode.CONFLICT)
    reason = "valeur déjà utilisée"
    return problem(
        409, f"{field}: {reason}", code=ErrorCode.ALREADY_EXISTS, errors=[{"field": field, "reason": reason}]
    )


def unavailable_problem(request: Request, exc: Exception) -> JSONResponse:
    """503 + Retry-After when the database cannot serve; the body names neither the server nor the error
    (both go to the log)."""
    log.warning("api.database_unavailable", path=request.url.path, error_type=type(exc).__name__, error=str(exc)[:300])
    return problem(
        503,
        "service momentanément indisponible : réessayez dans quelques secondes",
        code=ErrorCode.SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method the application serves on the request's path, asked of the router itself."""
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
