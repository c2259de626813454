"""Helpers of the security tests: accounts and API keys made in the database, a second app with other
settings (low rate limits, webhook allow-list), TOTP codes away from a step boundary."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.deps import hash_api_key
from domain.enums import ApiKeyScope, StaffRole
from domain.models import ApiKey, EndUser, StaffUser
from domain.security import hash_password, new_api_key
from infra.settings import Settings
from tests.api._support import STRONG_PASSWORD

Db = async_sessionmaker[AsyncSession]
Headers = dict[str, str]

_HASH = hash_password(STRONG_PASSWORD)


async def add_staff_member(
    db: Db,
    *,
    role: StaffRole = StaffRole.ORG_STAFF,
    org_id: str | None = None,
    company_id: str | None = None,
    permissions: list[str] | None = None,
    email: str | None = None,
) -> tuple[str, str]:
    """(email, id) of a new staff member with the strong test password."""
    email = email or f"sec-{uuid.uuid4().hex[:10]}@test.simflow"
    staff = StaffUser(
        email=email, full_name="Staff", password_hash=_HASH, role=role, org_id=org_id, company_id=company_id
    )
    if permissions is not None:
        staff.permissions = permissions
    async with db.begin() as session:
        session.add(staff)
    return email, staff.id


async def add_end_user(db: Db, org_id: str, company_id: str, email: str | None = None) -> tuple[str, str]:
    email = email or f"user-{uuid.uuid4().hex[:10]}@test.simflow"
    user = EndUser(org_id=org_id, company_id=company_id, email=email, full_name="Utilisateur", password_hash=_HASH)
    async with db.begin() as session:
        session.add(user)
    return email, user.id


async def add_api_key(
    db: Db,
    org_id: str,
    company_id: str | None = None,
    scope: ApiKeyScope = ApiKeyScope.READ_WRITE,
    *,
    expires_in: timedelta | None = timedelta(days=30),
) -> tuple[str, str]:
    """(the key as presented, its id), current format."""
    presented, prefix = new_api_key()
    key = ApiKey(
        org_id=org_id,
        company_id=company_id,
        name="test",
        prefix=prefix,
        key_hash=hash_api_key(presented),
        scope=scope,
        expires_at=datetime.now(UTC) + expires_in if expires_in else None,
        last4=presented[-4:],
    )
    async with db.begin() as session:
        session.add(key)
    return presented, key.id


async def token_response(client: httpx.AsyncClient, email: str, password: str, **extra: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": email, "password": password, **extra})


async def bearer(client: httpx.AsyncClient, email: str, password: str = STRONG_PASSWORD, **extra: str) -> Headers:
    response = await token_response(client, email, password, **extra)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@asynccontextmanager
async def other_app(
    settings: Settings, *, client_ip: str | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A second API on the same database with other settings. Rate limits are kept in the database, shared
    by every API: each such app's client comes from its own address (`client_ip`, random by default), so
    one test's failed logins do not count against another's."""
    app = create_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_ip or random_ip(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://simflow.test") as client:
            yield client


def random_ip() -> str:
    """A private address (10/8), a new one per call in practice."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


async def steady_totp_moment(margin_s: float = 3.0) -> float:
    """Now, unless a 30 s step boundary is closer than `margin_s`: then just after it. Keeps a test's
    codes in the steps it computed."""
    now = time.time()
    into_step = now % 30
    if into_step > 30 - margin_s:
        await asyncio.sleep(30 - into_step + 0.2)
        now = time.time()
    return now


def code_at(secret: str, moment: float, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(moment + steps * 30)
