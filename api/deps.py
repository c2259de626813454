"""Typed dependencies: settings, the request's database session, the Temporal client, the principal."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.ratelimit import RateLimiter
from domain.authz import Principal, PrincipalKind
from domain.enums import ApiKeyScope
from domain.errors import AuthenticationFailed
from domain.models import ApiKey, EndUser, StaffUser
from domain.security import api_key_prefix, constant_time_equal
from infra.settings import Settings
from infra.temporal import connect_temporal
from integrations.stripe_gateway import StripeGateway


@dataclass
class CachedAnswer:
    """An answer reused for a while (the health report): concurrent requests after it expires wait for one
    refresh instead of each computing it."""

    value: Any = None
    expires_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, ttl_s: float, compute: Callable[[], Awaitable[Any]]) -> Any:
        if time.monotonic() < self.expires_at:
            return self.value
        async with self.lock:
            if time.monotonic() >= self.expires_at:
                self.value = await compute()
                self.expires_at = time.monotonic() + ttl_s
            return self.value


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    _temporal: Client | None = None
    _temporal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    api_key_touched: dict[str, float] = field(default_factory=dict)
    health_report: CachedAnswer = field(default_factory=CachedAnswer)
    limiter: RateLimiter = field(init=False)
    _stripe: StripeGateway | None = None

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.sessionmaker)  # in the database: shared by every API process

    def stripe(self) -> StripeGateway:
        """The Stripe gateway (saved cards), made on first use; closed with the application."""
        if self._stripe is None:
            self._stripe = StripeGateway(
                self.settings.stripe_secret_key.get_secret_value(),
                self.settings.stripe_api_base,
                self.settings.http_timeout_s,
            )
        return self._stripe

    async def aclose(self) -> None:
        if self._stripe is not None:
            await self._stripe.aclose()
            self._stripe = None

    async def temporal(self) -> Client:
        """Connects on first use, so the API starts (and reports it in /healthz) while Temporal is down."""
        if self._temporal is None:
            async with self._temporal_lock:
                if self._temporal is None:
                    self._temporal = await asyncio.wait_for(connect_temporal(self.settings), timeout=10)
        return self._temporal


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.simflow
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: committed when the handler returns, rolled back on error."""
    async with state.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# `scope="function"`: the commit runs when the handler returns, before the response is sent. A client that
# got its answer can read what it wrote, and a commit the database refuses becomes the answer (the default
# scope of a `yield` dependency would commit after the response has left). Every yield dependency that
# takes the session must have this scope too (FastAPI refuses otherwise).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_temporal(state: StateDep) -> Client:
    return await state.temporal()


TemporalDep = Annotated[Client, Depends(get_temporal)]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="Clé d'API (organisation ou entreprise)")

INVALID_TOKEN = "jeton invalide ou expiré"


def issue_token(settings: Settings, kind: PrincipalKind, subject_id: str) -> str:
    """A short-lived access token. Tokens issued before the account's `tokens_valid_after` (password
    change, reset, logout everywhere) stop working."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject_id,
        "kind": kind.value,
        "iat": now,
        "exp": now + timedelta(minutes=settings.jwt_ttl_minutes),
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "ias": now.timestamp(),  # issued-at with sub-second precision, for revocation by `tokens_valid_after`
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def hash_api_key(secret: str) -> str:
    """SHA-256 of the whole key: enough for ≥ 256-bit random keys (no dictionary to attack), and cheap on
    every request."""
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_lookup_prefix(presented: str) -> str | None:
    """The stored prefix of a presented key: `sfk_xxxxxxxxxxxx_…` (current format) or `prefix.secret`."""
    prefix = api_key_prefix(presented)
    if prefix is not None:
        return prefix
    head, dot, rest = presented.partition(".")
    return head if dot and head and rest and len(head) <= 16 else None


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def decode_token(settings: Settings, token: str, typ: str = "access") -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, settings.jwt_secret.get_secret_value(), algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.PyJWTError as exc:
        raise AuthenticationFailed(None, INVALID_TOKEN) from exc
    if claims.get("typ", "access") != typ:
        raise AuthenticationFailed(None, INVALID_TOKEN)
    return claims


def issued_before(claims: dict[str, Any], valid_after: datetime | None) -> bool:
    """Whether a token predates the account's last credential change (password, reset, logout everywhere)."""
    after = _aware(valid_after)
    if after is None:
        return False
    issued = claims.get("ias", claims.get("iat"))
    if not isinstance(issued, int | float):
        return True
    return float(issued) < after.timestamp()


def staff_principal(staff: StaffUser) -> Principal:
    return Principal(
        kind=PrincipalKind.STAFF,
        subject_id=staff.id,
        label=staff.email,
        role=staff.role,
        org_id=staff.org_id,
        company_id=staff.company_id,
        permissions=frozenset(staff.permissions or ()),
        must_change_password=staff.must_change_password,
    )


def end_user_principal(user: EndUser) -> Principal:
    return Principal(
        kind=PrincipalKind.END_USER,
        subject_id=user.id,
        label=user.email,
        org_id=user.org_id,
        company_id=user.company_id,
        end_user_id=user.id,
        must_change_password=user.must_change_password,
    )


async def principal_from_token(session: AsyncSession, settings: Settings, token: str) -> Principal:
    claims = decode_token(settings, token)
    kind = claims.get("kind")
    subject = str(claims.get("sub", ""))
    if kind == PrincipalKind.STAFF.value:
        staff = await session.get(StaffUser, subject)
        if staff is None or not staff.active or issued_before(claims, staff.tokens_valid_after):
            raise AuthenticationFailed(None, INVALID_TOKEN)
        return staff_principal(staff)
    if kind == PrincipalKind.END_USER.value:
        user = await session.get(EndUser, subject)
        if user is None or not user.active or issued_before(claims, user.tokens_valid_after):
            raise AuthenticationFailed(None, INVALID_TOKEN)
        return end_user_principal(user)
    raise AuthenticationFailed(None, INVALID_TOKEN)


async def principal_from_api_key(session: AsyncSession, presented: str) -> Principal:
    """Looks the key up by its prefix, compares the hash in constant time. Does not write: the guard
    records `last_used_at` once the handler is done (a write here would hold SQLite's lock for the request)."""
    prefix = api_key_lookup_prefix(presented.strip())
    key = None
    if prefix is not None:
        key = (await session.execute(select(ApiKey).where(ApiKey.prefix == prefix))).scalar_one_or_none()
    now = datetime.now(UTC)
    expires_at = _aware(key.expires_at) if key is not None else None
    if (
        key is None
        or key.revoked_at is not None
        or (expires_at is not None and expires_at <= now)
        or not constant_time_equal(key.key_hash, hash_api_key(presented.strip()))
    ):
        raise AuthenticationFailed(None, "clé d'API invalide")
    return Principal(
        kind=PrincipalKind.API_KEY,
        subject_id=key.id,
        label=f"api-key:{key.id}",
        org_id=key.org_id,
        company_id=key.company_id,
        read_only=key.scope is ApiKeyScope.READ_ONLY,
    )


async def resolve_principal(
    request: Request, session: AsyncSession, settings: Settings, *, bearer: str | None, cookie_only: bool = False
) -> Principal | None:
    """Whoever the request carries (X-API-Key, bearer token, session cookie), None when nothing."""
    if not cookie_only:
        api_key = request.headers.get("X-API-Key")
        if api_key:
            return await principal_from_api_key(session, api_key)
        if bearer:
            return await principal_from_token(session, settings, bearer)
    cookie = request.cookies.get("simflow_session")
    if cookie:
        return await principal_from_token(session, settings, cookie)
    return None


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    _api_key: Annotated[str | None, Depends(api_key_scheme)] = None,
) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = await resolve_principal(request, session, settings, bearer=token)
    if principal is None:
        raise AuthenticationFailed(None, "authentification requise")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
