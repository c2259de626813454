"""Authentication and tenant scoping: tokens, lockout, bad JWTs and API keys, who sees which SIM cards."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import hash_api_key
from api.login import LOCK_DURATION, MAX_FAILED_LOGINS
from domain.enums import ApiKeyScope, SimStatus, StaffRole
from domain.models import ApiKey, RateLimitHit, SimCard, StaffUser
from infra.settings import Settings
from tests.api._support import STRONG_PASSWORD, assert_problem, random_iccid, random_imsi
from tests.api.conftest import Tenant, add_staff, make_tenant
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login

Db = async_sessionmaker[AsyncSession]
Headers = dict[str, str]


async def _token(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": username, "password": password})


async def _staff(db: Db, email: str) -> StaffUser:
    async with db() as session:
        return (await session.execute(select(StaffUser).where(StaffUser.email == email))).scalar_one()


# --- tokens -----------------------------------------------------------------------------------------


async def test_token_for_the_bootstrap_admin(app_client: httpx.AsyncClient, settings: Settings, db: Db) -> None:
    response = await _token(app_client, f"  {ADMIN_EMAIL.upper()} ", ADMIN_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.jwt_ttl_minutes * 60
    claims = jwt.decode(body["access_token"], settings.jwt_secret.get_secret_value(), algorithms=["HS256"])
    admin = await _staff(db, ADMIN_EMAIL)
    assert claims["sub"] == admin.id and claims["kind"] == "staff"
    assert admin.role is StaffRole.PLATFORM_ADMIN
    listed = await app_client.get("/api/v1/sims", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert listed.status_code == 200, listed.text


async def test_wrong_password_and_unknown_account_get_the_same_answer(app_client: httpx.AsyncClient) -> None:
    wrong = await _token(app_client, ADMIN_EMAIL, "Not-the-password-1!")
    unknown = await _token(app_client, "nobody@test.simflow", "Not-the-password-1!")
    for response in (wrong, unknown):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == unknown.json()
    # The admin is not locked by one failure.
    assert (await _token(app_client, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def _failures_from_here(db: Db, email: str) -> int:
    """Wrong passwords counted against (this account, the test client's address)."""
    async with db() as session:
        query = select(func.count()).select_from(RateLimitHit).where(RateLimitHit.key.startswith(f"login:{email}|"))
        return int((await session.execute(query)).scalar_one())


async def test_account_locked_after_five_failures(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    """Locked for the address the failures came from (another address: tests/api/test_abuse.py)."""
    email = await add_staff(db, role=StaffRole.ORG_STAFF, org_id=tenant.org_id)
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert (await _token(app_client, email, "Wrong-password-1!")).status_code == 401
    assert await _failures_from_here(db, email) == MAX_FAILED_LOGINS - 1
    assert (await _token(app_client, email, "Wrong-password-1!")).status_code == 401  # the fifth: locked

    locked = await _token(app_client, email, STRONG_PASSWORD)
    assert_problem(locked, 401)
    unknown = await _token(app_client, "nobody@test.simflow", STRONG_PASSWORD)
    assert locked.json() == unknown.json()  # a locked account is not distinguishable either
    assert (await _staff(db, email)).locked_until is None  # the account itself is not locked

    age = LOCK_DURATION.total_seconds() + 1
    async with db.begin() as session:  # the lock expires with the failures' window
        await session.execute(
            update(RateLimitHit)
            .where(RateLimitHit.key.startswith(f"login:{email}|"))
            .values(at=RateLimitHit.at - age, expires_at=RateLimitHit.expires_at - age)
        )
    assert (await _token(app_client, email, STRONG_PASSWORD)).status_code == 200


async def test_successful_login_resets_the_failure_count(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    email = await add_staff(db, role=StaffRole.ORG_STAFF, org_id=tenant.org_id)
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert (await _token(app_client, email, "Wrong-password-1!")).status_code == 401
    assert (await _token(app_client, email, STRONG_PASSWORD)).status_code == 200
    assert await _failures_from_here(db, email) == 0
    assert (await _token(app_client, email, "Wrong-password-1!")).status_code == 401
    assert (await _token(app_client, email, STRONG_PASSWORD)).status_code == 200


def _jwt(settings: Settings, **claims: Any) -> str:
    now = datetime.now(UTC)
    base = {"kind": "staff", "iat": now, "exp": now + timedelta(minutes=5), "typ": "access"}
    return jwt.encode({**base, **claims}, settings.jwt_secret.get_secret_value(), algorithm="HS256")


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda s, sub: _jwt(s, sub=sub, exp=datetime.now(UTC) - timedelta(seconds=5)), id="expired"),
        pytest.param(lambda s, sub: "garbage", id="garbage"),
        pytest.param(lambda s, sub: "a.b.c", id="three-garbage-parts"),
        pytest.param(
            lambda s, sub: jwt.encode({"sub": sub, "kind": "staff"}, "another-secret-0123456789abcdef0123456789"),
            id="other-secret",
        ),
        pytest.param(
            lambda s, sub: jwt.encode({"sub": sub, "kind": "staff"}, None, algorithm="none"),  # type: ignore[arg-type]
            id="alg-none",
        ),
        pytest.param(lambda s, sub: _jwt(s, sub="0" * 32), id="unknown-subject"),
        pytest.param(lambda s, sub: _jwt(s, sub=sub, kind="end_user"), id="wrong-kind"),
        pytest.param(lambda s, sub: _jwt(s, sub=sub, kind="robot"), id="unknown-kind"),
    ],
)
async def test_bad_jwt_is_rejected(app_client: httpx.AsyncClient, settings: Settings, db: Db, make_token: Any) -> None:
    admin = await _staff(db, ADMIN_EMAIL)
    response = await app_client.get(
        "/api/v1/sims", headers={"Authorization": f"Bearer {make_token(settings, admin.id)}"}
    )
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_no_credentials(app_client: httpx.AsyncClient) -> None:
    assert_problem(await app_client.get("/api/v1/sims"), 401)
    assert_problem(await app_client.get("/api/v1/sims", headers={"Authorization": "Basic YTpi"}), 401)


async def test_deactivated_staff_token_stops_working(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    email = await add_staff(db, role=StaffRole.ORG_STAFF, org_id=tenant.org_id)
    headers = await login(app_client, email, STRONG_PASSWORD)
    assert (await app_client.get("/api/v1/sims", headers=headers)).status_code == 200
    async with db.begin() as session:
        staff = (await session.execute(select(StaffUser).where(StaffUser.email == email))).scalar_one()
        staff.active = False
    assert_problem(await app_client.get("/api/v1/sims", headers=headers), 401)
    assert_problem(await _token(app_client, email, STRONG_PASSWORD), 401)


# --- API keys ---------------------------------------------------------------------------------------


async def _api_key(db: Db, tenant: Tenant, scope: ApiKeyScope, *, revoked: bool = False, expired: bool = False) -> str:
    prefix = secrets.token_hex(6)
    presented = f"{prefix}.{secrets.token_urlsafe(24)}"
    now = datetime.now(UTC)
    async with db.begin() as session:
        session.add(
            ApiKey(
                org_id=tenant.org_id,
                name="test",
                prefix=prefix,
                key_hash=hash_api_key(presented),
                scope=scope,
                revoked_at=now if revoked else None,
                expires_at=now - timedelta(days=1) if expired else None,
            )
        )
    return presented


async def test_bad_api_keys_are_rejected(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    good = await _api_key(db, tenant, ApiKeyScope.READ_ONLY)
    prefix = good.split(".", 1)[0]
    bad_keys = {
        "garbage": "garbage",
        "garbage with dot": "abc.def",
        "right prefix, wrong secret": f"{prefix}.{secrets.token_urlsafe(24)}",
        "revoked": await _api_key(db, tenant, ApiKeyScope.READ_WRITE, revoked=True),
        "expired": await _api_key(db, tenant, ApiKeyScope.READ_WRITE, expired=True),
    }
    for name, key in bad_keys.items():
        response = await app_client.get("/api/v1/sims", headers={"X-API-Key": key})
        assert response.status_code == 401, (name, response.text)
        assert_problem(response, 401)
    assert (await app_client.get("/api/v1/sims", headers={"X-API-Key": good})).status_code == 200


async def test_read_only_api_key_cannot_write(app_client: httpx.AsyncClient, db: Db, tenant: Tenant) -> None:
    key = await _api_key(db, tenant, ApiKeyScope.READ_ONLY)
    response = await app_client.post(
        "/api/v1/plans",
        json={"name": "Forfait", "plan_type": "prepaid", "price_minor": 500, "carrier": "Orange"},
        headers={"X-API-Key": key},
    )
    assert_problem(response, 403)


# --- tenant scoping of the SIM inventory ------------------------------------------------------------


async def _add_sims(db: Db, org_id: str, company_id: str | None, count: int) -> set[str]:
    iccids = {random_iccid() for _ in range(count)}
    async with db.begin() as session:
        for iccid in iccids:
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
    return iccids


async def _listed(client: httpx.AsyncClient, headers: Headers, **params: Any) -> list[str]:
    """Every ICCID the caller can list, following the cursor."""
    iccids: list[str] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/sims", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        iccids += [item["iccid"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return iccids


async def test_sim_listing_is_scoped_to_the_callers_tenant(
    app_client: httpx.AsyncClient, db: Db, admin_headers: Headers
) -> None:
    a = await make_tenant(db, app_client)
    b = await make_tenant(db, app_client)
    a_company = await _add_sims(db, a.org_id, a.company_id, 3)
    a_sibling = await _add_sims(db, a.org_id, a.sibling_company_id, 2)
    a_stock = await _add_sims(db, a.org_id, None, 2)
    b_company = await _add_sims(db, b.org_id, b.company_id, 2)
    a_all = a_company | a_sibling | a_stock

    # Organisation staff: the whole organisation, nothing of the other one, whatever the filters or page size.
    listed = await _listed(app_client, a.org_staff, limit=2)
    assert len(listed) == len(set(listed)) and set(listed) == a_all
    assert listed == sorted(listed)
    assert set(await _listed(app_client, a.org_staff, company_id=a.sibling_company_id)) == a_sibling
    assert await _listed(app_client, a.org_staff, company_id=b.company_id) == []
    assert set(await _listed(app_client, b.org_staff)) == b_company

    # Company staff: their company only; asking for a sibling company gives nothing.
    assert set(await _listed(app_client, a.company_staff, limit=1)) == a_company
    assert await _listed(app_client, a.company_staff, company_id=a.sibling_company_id) == []
    assert set(await _listed(app_client, a.company_staff, company_id=a.company_id)) == a_company

    # The platform sees everything.
    everything = set(await _listed(app_client, admin_headers, limit=500))
    assert a_all | b_company <= everything
    assert set(await _listed(app_client, admin_headers, company_id=b.company_id)) == b_company

    # Reading one SIM follows the same rule: outside the subtree it does not exist.
    sibling_sim, b_sim, stock_sim = next(iter(a_sibling)), next(iter(b_company)), next(iter(a_stock))
    assert (await app_client.get(f"/api/v1/sims/{sibling_sim}", headers=a.org_staff)).status_code == 200
    assert_problem(await app_client.get(f"/api/v1/sims/{sibling_sim}", headers=a.company_staff), 404)
    assert_problem(await app_client.get(f"/api/v1/sims/{stock_sim}", headers=a.company_staff), 404)
    assert_problem(await app_client.get(f"/api/v1/sims/{b_sim}", headers=a.org_staff), 404)
    assert (await app_client.get(f"/api/v1/sims/{b_sim}", headers=admin_headers)).status_code == 200


async def test_api_key_listing_is_scoped_to_its_organisation(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant
) -> None:
    own = await _add_sims(db, tenant.org_id, tenant.company_id, 2)
    foreign = await _add_sims(db, other_tenant.org_id, other_tenant.company_id, 2)
    key = await _api_key(db, tenant, ApiKeyScope.READ_ONLY)
    listed = set(await _listed(app_client, {"X-API-Key": key}))
    assert own <= listed
    assert not foreign & listed
