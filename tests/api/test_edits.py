"""Editing what was created: a company (`PATCH /companies/{id}`) and a plan (`PATCH /plans/{id}`). The
fields sent change, the others stay; a refused value names its field and changes nothing; another
organisation's object is a 404; company staff cannot edit; each edit is in the audit log."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.models import AuditLog, Company, Plan
from tests.api._support import VALID_SIRET, assert_problem
from tests.api.conftest import Tenant

Db = async_sessionmaker[AsyncSession]
OTHER_SIRET = "73282932000017"


async def _company(db: Db, company_id: str) -> Company:
    async with db() as session:
        company = await session.get(Company, company_id)
        assert company is not None
        return company


async def test_company_patch_changes_only_the_fields_sent(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant
) -> None:
    before = await _company(db, tenant.company_id)
    response = await app_client.patch(
        f"/api/v1/companies/{tenant.company_id}",
        json={"name": "Nouvelle Raison", "vat_number": "44 732 829 320", "billing_email": "compta@example.com"},
        headers=tenant.org_staff,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["vat_number"], body["billing_email"]) == (
        "Nouvelle Raison",
        "FR44732829320",
        "compta@example.com",
    )
    after = await _company(db, tenant.company_id)
    assert (after.name, after.vat_number, after.billing_email) == (
        "Nouvelle Raison",
        "FR44732829320",
        "compta@example.com",
    )
    assert (after.siret, after.address, after.customer_reference) == (
        before.siret,
        before.address,
        before.customer_reference,
    )

    cleared = await app_client.patch(
        f"/api/v1/companies/{tenant.company_id}", json={"billing_email": None}, headers=tenant.org_staff
    )
    assert cleared.status_code == 200 and cleared.json()["billing_email"] is None
    assert (await _company(db, tenant.company_id)).name == "Nouvelle Raison"

    async with db() as session:
        rows = (
            await session.execute(
                select(AuditLog).where(AuditLog.org_id == tenant.org_id, AuditLog.action == "company.updated")
            )
        ).scalars()
        audited = list(rows)
    assert len(audited) == 2 and audited[0].target == f"company:{tenant.company_id}"


async def test_company_patch_refusals_name_the_field_and_change_nothing(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    path = f"/api/v1/companies/{tenant.company_id}"
    before = await _company(db, tenant.company_id)
    for payload, field, reason in [
        ({"name": "Ok", "vat_number": "FR00732829320"}, "vat_number", None),
        ({"siret": "73282932000075"}, "siret", "luhn"),
        ({"name": None}, "name", None),
        ({"name": " "}, "name", None),
        ({"billing_email": "pas-un-email"}, "billing_email", None),
        ({"customer_reference": "X"}, "customer_reference", None),
    ]:
        assert_problem(await app_client.patch(path, json=payload, headers=tenant.org_staff), 422, field, reason)
    # The sibling company may not take a SIRET another company of the organisation holds.
    sibling = f"/api/v1/companies/{tenant.sibling_company_id}"
    assert_problem(await app_client.patch(sibling, json={"siret": VALID_SIRET}, headers=tenant.org_staff), 409, "siret")
    ok = await app_client.patch(sibling, json={"siret": OTHER_SIRET}, headers=tenant.org_staff)
    assert ok.status_code == 200 and ok.json()["siret"] == OTHER_SIRET
    # Another organisation's company does not exist for this caller; company staff may not edit.
    foreign = await app_client.patch(path, json={"name": "Pirate"}, headers=other_tenant.org_staff)
    assert_problem(foreign, 404)
    assert_problem(await app_client.patch(path, json={"name": "Filiale"}, headers=tenant.company_staff), 403)
    after = await _company(db, tenant.company_id)
    assert (after.name, after.siret, after.vat_number, after.billing_email) == (
        before.name,
        before.siret,
        before.vat_number,
        before.billing_email,
    )


async def _new_plan(app_client: httpx.AsyncClient, tenant: Tenant, **extra: object) -> dict[str, object]:
    body = {"name": "Prépayé 5 Go", "plan_type": "prepaid", "price_minor": 990, "carrier": "Orange"} | extra
    response = await app_client.post("/api/v1/plans", json=body, headers=tenant.org_staff)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_plan_patch_changes_the_terms_sent_only(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    plan = await _new_plan(app_client, tenant, data_allowance_mb=5120, supplier_offer_code="OFR_5G")
    path = f"/api/v1/plans/{plan['id']}"
    response = await app_client.patch(
        path, json={"price_minor": 1290, "data_allowance_mb": 10240, "name": "Prépayé 10 Go"}, headers=tenant.org_staff
    )
    assert response.status_code == 200, response.text
    async with db() as session:
        row = await session.get(Plan, str(plan["id"]))
        assert row is not None
        assert (row.name, row.price_minor, row.data_allowance_bytes) == ("Prépayé 10 Go", 1290, 10240 * 1024 * 1024)
        assert (row.validity_days, row.supplier_offer_code, row.plan_type.value) == (30, "OFR_5G", "prepaid")
        audited = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.target == f"plan:{plan['id']}")
        )
    assert audited == 1
    listed = await app_client.get("/api/v1/plans", params={"limit": 500}, headers=tenant.org_staff)
    assert {"id": plan["id"], "price_minor": 1290}.items() <= next(
        p for p in listed.json()["items"] if p["id"] == plan["id"]
    ).items()


async def test_plan_patch_refusals_name_the_field_and_change_nothing(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    plan = await _new_plan(app_client, tenant)
    path = f"/api/v1/plans/{plan['id']}"
    for payload, field in [
        ({"price_minor": 99}, "price_minor"),
        ({"validity_days": 0}, "validity_days"),
        ({"name": None}, "name"),
        ({"plan_type": "subscription"}, "plan_type"),  # the shape of a plan does not change
        ({"currency": "USD"}, "currency"),
        ({"supplier_offer_code": "AUTRE"}, "supplier_offer_code"),
    ]:
        assert_problem(await app_client.patch(path, json=payload, headers=tenant.org_staff), 422, field)
    assert_problem(await app_client.patch(path, json={"price_minor": 5000}, headers=other_tenant.org_staff), 404)
    assert_problem(await app_client.patch(path, json={"price_minor": 5000}, headers=tenant.company_staff), 403)
    async with db() as session:
        row = await session.get(Plan, str(plan["id"]))
        assert row is not None and (row.price_minor, row.validity_days, row.name) == (990, 30, "Prépayé 5 Go")
