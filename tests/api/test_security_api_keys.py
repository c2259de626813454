"""API keys: `X-API-Key`, shown once, prefix + SHA-256 stored, scope (read-only / read-write, organisation
or company), expiry, revocation, rotation with overlap, last use; managed by administrators only."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update

from domain.enums import SimStatus, StaffRole
from domain.models import ApiKey, SimCard
from domain.security import API_KEY_PATTERN
from tests.api._security_support import Db, Headers, add_end_user, add_staff_member, bearer
from tests.api._support import assert_problem, random_iccid, random_imsi
from tests.api.conftest import Tenant


async def _key_row(db: Db, key_id: str) -> ApiKey:
    async with db() as session:
        row = await session.get(ApiKey, key_id)
        assert row is not None
        return row


async def _sim(db: Db, org_id: str, company_id: str | None) -> str:
    iccid = random_iccid()
    async with db.begin() as session:
        session.add(
            SimCard(
                org_id=org_id,
                iccid=iccid,
                imsi=random_imsi(),
                carrier="Orange",
                status=SimStatus.BLANK,
                company_id=company_id,
            )
        )
    return iccid


async def _create(client: httpx.AsyncClient, headers: Headers, **body: object) -> httpx.Response:
    return await client.post("/api/v1/api-keys", json={"name": "intégration", **body}, headers=headers)


async def test_key_is_shown_once_and_stored_as_a_hash(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    created = await _create(app_client, tenant.org_staff, scope="read_only")
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert API_KEY_PATTERN.fullmatch(key) and key.startswith(body["prefix"]) and key.endswith(body["last4"])
    row = await _key_row(db, body["id"])
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in row.key_hash and row.prefix == body["prefix"]
    expires = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC) if row.expires_at else None
    assert expires is not None and timedelta(days=364) < expires - datetime.now(UTC) <= timedelta(days=365)

    listed = await app_client.get("/api/v1/api-keys", headers=tenant.org_staff)
    assert listed.status_code == 200
    assert key not in listed.text and body["id"] in listed.text
    detail = await app_client.get(f"/api/v1/api-keys/{body['id']}", headers=tenant.org_staff)
    assert "key" not in detail.json() and detail.json()["last_used_at"] is None

    own_sim = await _sim(db, tenant.org_id, tenant.company_id)
    assert (await app_client.get(f"/api/v1/sims/{own_sim}", headers={"X-API-Key": key})).status_code == 200
    assert (await _key_row(db, body["id"])).last_used_at is not None
    write = await app_client.post(
        "/api/v1/plans",
        json={"name": "Forfait", "plan_type": "prepaid", "price_minor": 500, "carrier": "Orange"},
        headers={"X-API-Key": key},
    )
    assert_problem(write, 403)


async def test_company_scoped_key_sees_only_its_company(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    created = await _create(app_client, tenant.company_staff, scope="read_write")
    assert created.status_code == 201, created.text
    assert created.json()["company_id"] == tenant.company_id  # a company's staff makes company keys
    key = {"X-API-Key": created.json()["key"]}
    own, sibling, foreign = (
        await _sim(db, tenant.org_id, tenant.company_id),
        await _sim(db, tenant.org_id, tenant.sibling_company_id),
        await _sim(db, other_tenant.org_id, other_tenant.company_id),
    )
    assert (await app_client.get(f"/api/v1/sims/{own}", headers=key)).status_code == 200
    for iccid in (sibling, foreign):
        assert_problem(await app_client.get(f"/api/v1/sims/{iccid}", headers=key), 404)
    listed = (await app_client.get("/api/v1/sims", params={"limit": 500}, headers=key)).json()["items"]
    assert {s["company_id"] for s in listed} <= {tenant.company_id}

    sibling_key = await _create(
        app_client, tenant.company_staff, scope="read_only", company_id=tenant.sibling_company_id
    )
    assert_problem(sibling_key, 404)
    foreign_key = await _create(app_client, tenant.org_staff, scope="read_only", company_id=other_tenant.company_id)
    assert_problem(foreign_key, 404)


async def test_expiry_revocation_and_rotation(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    created = (await _create(app_client, tenant.org_staff, scope="read_only", expires_in_days=1)).json()
    old = {"X-API-Key": created["key"]}
    assert (await app_client.get("/api/v1/sims", headers=old)).status_code == 200

    rotated = await app_client.post(
        f"/api/v1/api-keys/{created['id']}/rotation", json={"overlap_hours": 1}, headers=tenant.org_staff
    )
    assert rotated.status_code == 201, rotated.text
    new = {"X-API-Key": rotated.json()["key"]}
    assert rotated.json()["key"] != created["key"] and rotated.json()["scope"] == "read_only"
    assert (await app_client.get("/api/v1/sims", headers=old)).status_code == 200  # overlap
    assert (await app_client.get("/api/v1/sims", headers=new)).status_code == 200
    row = await _key_row(db, created["id"])
    assert row.replaced_by_id == rotated.json()["id"]
    again = await app_client.post(
        f"/api/v1/api-keys/{created['id']}/rotation", json={"overlap_hours": 0}, headers=tenant.org_staff
    )
    assert_problem(again, 422)

    async with db.begin() as session:  # the overlap ends
        await session.execute(
            update(ApiKey).where(ApiKey.id == created["id"]).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert_problem(await app_client.get("/api/v1/sims", headers=old), 401)

    immediate = await app_client.post(
        f"/api/v1/api-keys/{rotated.json()['id']}/rotation", json={"overlap_hours": 0}, headers=tenant.org_staff
    )
    assert immediate.status_code == 201
    assert_problem(await app_client.get("/api/v1/sims", headers=new), 401)
    newest = {"X-API-Key": immediate.json()["key"]}
    assert (await app_client.get("/api/v1/sims", headers=newest)).status_code == 200

    revoked = await app_client.delete(f"/api/v1/api-keys/{immediate.json()['id']}", headers=tenant.org_staff)
    assert revoked.status_code == 204
    assert_problem(await app_client.get("/api/v1/sims", headers=newest), 401)
    assert (await _key_row(db, immediate.json()["id"])).revoked_at is not None


async def test_who_may_manage_keys(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant, admin_headers: Headers
) -> None:
    created = (await _create(app_client, tenant.org_staff, scope="read_write")).json()
    limited_email, _ = await add_staff_member(db, org_id=tenant.org_id, permissions=["organisation", "sim_card"])
    user_email, _ = await add_end_user(db, tenant.org_id, tenant.company_id)
    limited = await bearer(app_client, limited_email)
    user = await bearer(app_client, user_email)
    key = {"X-API-Key": created["key"]}
    for headers in (limited, user, key):
        assert_problem(await _create(app_client, headers, scope="read_only"), 403)
    for headers in (limited, key):  # inside their subtree: refused
        assert_problem(await app_client.get(f"/api/v1/api-keys/{created['id']}", headers=headers), 403)
    # An organisation's key is outside an end user's subtree: it does not exist for them.
    assert_problem(await app_client.get(f"/api/v1/api-keys/{created['id']}", headers=user), 404)
    # Another organisation cannot see it, revoke it or rotate it.
    assert_problem(await app_client.get(f"/api/v1/api-keys/{created['id']}", headers=other_tenant.org_staff), 404)
    assert_problem(await app_client.delete(f"/api/v1/api-keys/{created['id']}", headers=other_tenant.org_staff), 404)
    assert (await _key_row(db, created["id"])).revoked_at is None
    listed = (await app_client.get("/api/v1/api-keys", headers=other_tenant.org_staff)).json()
    assert created["id"] not in {k["id"] for k in listed}
    # The platform names the organisation.
    missing = await _create(app_client, admin_headers, scope="read_only")
    assert_problem(missing, 422, "org_id")
    made = await _create(app_client, admin_headers, scope="read_only", org_id=other_tenant.org_id)
    assert made.status_code == 201 and made.json()["org_id"] == other_tenant.org_id
    # Company staff may not hold an organisation-wide key.
    company_email, _ = await add_staff_member(
        db, role=StaffRole.COMPANY_STAFF, org_id=tenant.org_id, company_id=tenant.company_id
    )
    company_staff = await bearer(app_client, company_email)
    keys = (await app_client.get("/api/v1/api-keys", headers=company_staff)).json()
    assert all(k["company_id"] == tenant.company_id for k in keys)
    async with db() as session:
        org_keys = (await session.execute(select(ApiKey.id).where(ApiKey.org_id == tenant.org_id))).scalars().all()
    assert created["id"] in org_keys
