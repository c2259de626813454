"""Typed dependencies: settings, the request's database session, the Temporal client, the principal."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.authz import Principal, PrincipalKind
from domain.enums import ApiKeyScope
from domain.errors import AuthenticationFailed
from domain.models import ApiKey, EndUser, StaffUser
from infra.settings import Settings
from infra.temporal import connect_temporal


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    _temporal: Client | None = None
    _temporal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_temporal(state: StateDep) -> Client:
    return await state.temporal()


TemporalDep = Annotated[Client, Depends(get_temporal)]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def issue_token(settings: Settings, kind: PrincipalKind, subject_id: str) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject_id,
        "kind": kind.value,
        "iat": now,
        "exp": now + timedelta(minutes=settings.jwt_ttl_minutes),
        "typ": "access",
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def hash_api_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def principal_from_token(session: AsyncSession, settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(token, settings.jwt_secret.get_secret_value(), algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise AuthenticationFailed(None, "jeton invalide ou expiré") from exc
    kind = claims.get("kind")
    subject = str(claims.get("sub", ""))
    if kind == PrincipalKind.STAFF.value:
        staff = await session.get(StaffUser, subject)
        if staff is None or not staff.active:
            raise AuthenticationFailed(None, "jeton invalide ou expiré")
        return Principal(
            kind=PrincipalKind.STAFF,
            subject_id=staff.id,
            label=staff.email,
            role=staff.role,
            org_id=staff.org_id,
            company_id=staff.company_id,
        )
    if kind == PrincipalKind.END_USER.value:
        user = await session.get(EndUser, subject)
        if user is None or not user.active:
            raise AuthenticationFailed(None, "jeton invalide ou expiré")
        return Principal(
            kind=PrincipalKind.END_USER,
            subject_id=user.id,
            label=user.email,
            org_id=user.org_id,
            company_id=user.company_id,
            end_user_id=user.id,
        )
    raise AuthenticationFailed(None, "jeton invalide ou expiré")


async def principal_from_api_key(session: AsyncSession, presented: str) -> Principal:
    prefix = presented.split(".", 1)[0]
    key = (await session.execute(select(ApiKey).where(ApiKey.prefix == prefix))).scalar_one_or_none()
    now = datetime.now(UTC)
    if (
        key is None
        or key.revoked_at is not None
        or (key.expires_at is not None and key.expires_at.replace(tzinfo=key.expires_at.tzinfo or UTC) < now)
        or not _constant_time_equal(key.key_hash, hash_api_key(presented))
    ):
        raise AuthenticationFailed(None, "clé d'API invalide")
    key.last_used_at = now
    return Principal(
        kind=PrincipalKind.API_KEY,
        subject_id=key.id,
        label=f"api-key:{key.prefix}",
        org_id=key.org_id,
        company_id=key.company_id,
        read_only=key.scope is ApiKeyScope.READ_ONLY,
    )


def _constant_time_equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


async def get_principal(
    request: Request, session: SessionDep, settings: SettingsDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    api_key = request.headers.get("X-API-Key")
    if api_key:
        return await principal_from_api_key(session, api_key)
    if token is None:
        token = request.cookies.get("simflow_session")
    if not token:
        raise AuthenticationFailed(None, "authentification requise")
    return await principal_from_token(session, settings, token)


PrincipalDep = Annotated[Principal, Depends(get_principal)]
