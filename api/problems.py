"""RFC 9457 problem responses. The only place where domain errors become HTTP statuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from domain.errors import (
    AlreadyExists,
    AuthenticationFailed,
    DomainError,
    IdempotencyMismatch,
    IllegalTransition,
    NotFound,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
)
from domain.identifiers import InvalidIdentifier

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    ValidationFailed: 422,
    NotFound: 404,
    AlreadyExists: 409,
    IllegalTransition: 409,
    PermissionDenied: 403,
    AuthenticationFailed: 401,
    IdempotencyMismatch: 422,
    RateLimited: 429,
}

TITLES = {
    400: "Requête invalide",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Introuvable",
    405: "Méthode non autorisée",
    409: "Conflit",
    413: "Contenu trop volumineux",
    415: "Type de contenu non pris en charge",
    422: "Données invalides",
    429: "Trop de requêtes",
    500: "Erreur interne",
    503: "Service indisponible",
}


def problem(
    status: int,
    detail: str,
    *,
    code: str,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://simflow.dev/problems/{code}",
        "title": TITLES.get(status, "Erreur"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def _location_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        status = next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)
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
            code="invalid_identifier",
            errors=[{"field": exc.field, "reason": exc.reason}],
        )

    @app.exception_handler(RequestValidationError)
    async def request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _location_to_field(e.get("loc", ())), "reason": e.get("msg", "")} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, detail, code="validation_failed", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), code=f"http_{exc.status_code}", headers=exc.headers)

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's router answers with the methods of the first route matching the path only; a path
        # served by several routes (GET and POST /staff) must list them all (RFC 9110 § 15.5.6).
        allowed = allowed_methods(request)
        return problem(
            405,
            f"méthode {request.method} non autorisée ici (autorisées : {', '.join(allowed)})",
            code="http_405",
            headers={"Allow": ", ".join(allowed)},
        )

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        # A NUL character in a query parameter or form field (SQLSTATE 22021 on PostgreSQL) is bad input.
        if getattr(exc.orig, "sqlstate", None) == "22021":
            return problem(422, "caractère interdit (NUL) dans la requête", code="invalid_characters")
        raise exc


def allowed_methods(request: Request) -> list[str]:
    """Every method the application serves on the request's path, asked of the router itself."""
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
