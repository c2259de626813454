"""API fixtures: a direct database session on the session database, tenants created in the database (so no
workflow runs behind the tests' back), and their staff logged in through the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.enums import StaffRole
from domain.models import InvoiceCounter, Organisation, StaffUser
from domain.security import hash_password
from domain.services.companies import create_company
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.api._support import STRONG_PASSWORD, VALID_SIRET
from tests.conftest import login

_STAFF_HASH = hash_password(STRONG_PASSWORD)


@dataclass(frozen=True)
class Tenant:
    org_id: str
    org_slug: str
    company_id: str  # has SIRET VALID_SIRET
    sibling_company_id: str  # same organisation, another company
    org_staff_email: str
    company_staff_email: str
    org_staff: dict[str, str]  # Authorization headers
    company_staff: dict[str, str]


@pytest_asyncio.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def add_staff(
    db: async_sessionmaker[AsyncSession],
    *,
    role: StaffRole,
    org_id: str | None = None,
    company_id: str | None = None,
    email: str | None = None,
) -> str:
    email = email or f"staff-{uuid.uuid4().hex[:10]}@test.simflow"
    async with db.begin() as session:
        session.add(
            StaffUser(
                email=email,
                full_name="Staff",
                password_hash=_STAFF_HASH,
                role=role,
                org_id=org_id,
                company_id=company_id,
            )
        )
    return email


async def make_tenant(db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    async with db.begin() as session:
        org = Organisation(name=f"Intégrateur {slug}", slug=slug)
        session.add(org)
        await session.flush()
        session.add(InvoiceCounter(org_id=org.id, last_number=0))
        common = {"vat_number": None, "is_virtual": False, "billing_email": None, "address": None}
        company, _, _ = await create_company(session, org_id=org.id, name="Entreprise A", siret=VALID_SIRET, **common)
        sibling, _, _ = await create_company(session, org_id=org.id, name="Entreprise B", siret=None, **common)
        org_id, company_id, sibling_id = org.id, company.id, sibling.id
    org_staff = await add_staff(db, role=StaffRole.ORG_STAFF, org_id=org_id)
    company_staff = await add_staff(db, role=StaffRole.COMPANY_STAFF, org_id=org_id, company_id=company_id)
    return Tenant(
        org_id=org_id,
        org_slug=slug,
        company_id=company_id,
        sibling_company_id=sibling_id,
        org_staff_email=org_staff,
        company_staff_email=company_staff,
        org_staff=await login(client, org_staff, STRONG_PASSWORD),
        company_staff=await login(client, company_staff, STRONG_PASSWORD),
    )


@pytest_asyncio.fixture(scope="session")
async def tenant(db: async_sessionmaker[AsyncSession], app_client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(db, app_client)


@pytest_asyncio.fixture(scope="session")
async def other_tenant(db: async_sessionmaker[AsyncSession], app_client: httpx.AsyncClient) -> Tenant:
    return await make_tenant(db, app_client)
