"""Pools (seed 000) through the API: a pool of one company on a static or dynamic pool plan, lines joining
and leaving, and what its next renewal charges and grants. Bad input names its field and changes nothing."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.enums import AutoRenewMode, LineStatus, PaymentMethod, PlanType, SubscriptionKind, SubscriptionStatus
from domain.models import Line, Plan, Subscription
from domain.services.pools import rated_account
from tests.api._support import assert_problem, unchanged
from tests.api.conftest import Tenant

GB = 1 << 30


async def _plan(db: async_sessionmaker[AsyncSession], tenant: Tenant, kind: SubscriptionKind | None) -> str:
    async with db.begin() as session:
        plan = Plan(
            org_id=tenant.org_id,
            company_id=tenant.company_id,
            name=f"Pool {kind} {uuid.uuid4().hex[:6]}",
            plan_type=PlanType.SUBSCRIPTION if kind else PlanType.PREPAID,
            subscription_kind=kind,
            price_minor=700,
            data_allowance_bytes=2 * GB,
            carrier="Orange",
        )
        session.add(plan)
    return plan.id


async def _line(
    db: async_sessionmaker[AsyncSession], tenant: Tenant, company_id: str, status: LineStatus = LineStatus.ACTIVE
) -> str:
    async with db.begin() as session:
        msisdn = "+3367" + str(uuid.uuid4().int)[:7]
        line = Line(org_id=tenant.org_id, company_id=company_id, msisdn=msisdn, status=status, ocs_account=msisdn)
        session.add(line)
    return line.id


async def _pool(client: httpx.AsyncClient, tenant: Tenant, plan_id: str) -> dict[str, object]:
    body = {"company_id": tenant.company_id, "name": "Flotte camions", "plan_id": plan_id}
    response = await client.post("/api/v1/pools", json=body, headers=tenant.org_staff)
    assert response.status_code == 201, response.text
    pool: dict[str, object] = response.json()
    return pool


async def _pool_of(db: async_sessionmaker[AsyncSession], line_id: str) -> str | None:
    async with db() as session:
        line = await session.get(Line, line_id)
        assert line is not None
        return line.pool_id


async def test_a_static_pool_costs_its_plan_whatever_its_members_and_lines_join_and_leave(
    app_client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    pool = await _pool(app_client, tenant, await _plan(db, tenant, SubscriptionKind.STATIC_POOL))
    pool_id = pool["id"]
    assert pool["kind"] == "static" and pool["company_id"] == tenant.company_id
    assert pool["ocs_account"] == f"pool-{pool_id}"
    assert pool["workflow_id"] == f"subscription/{tenant.org_id}/pool-{pool_id}"
    assert pool["members"] == []
    url = f"/api/v1/pools/{pool_id}/members"
    first, second = await _line(db, tenant, tenant.company_id), await _line(db, tenant, tenant.company_id)

    added = await app_client.post(url, json={"line_id": first}, headers=tenant.org_staff)
    assert added.status_code == 201, added.text
    assert (await app_client.post(url, json={"line_id": second}, headers=tenant.org_staff)).status_code == 201
    again = await app_client.post(url, json={"line_id": second}, headers=tenant.org_staff)
    assert again.status_code == 200  # a member already: nothing changes

    read = (await app_client.get(f"/api/v1/pools/{pool_id}", headers=tenant.company_staff)).json()
    assert sorted(m["line_id"] for m in read["members"]) == sorted([first, second])
    assert read["next_renewal"] == {"members": 2, "amount_minor": 700, "data_bytes": 2 * GB, "currency": "EUR"}

    async with db() as session:  # a member's usage (and its balance on the line pages) is the pool's account
        member = await session.get(Line, first)
        assert member is not None and await rated_account(session, member) == f"pool-{pool_id}"

    removed = await app_client.delete(f"{url}/{first}", headers=tenant.org_staff)
    assert removed.status_code == 200, removed.text
    assert [m["line_id"] for m in removed.json()["members"]] == [second]
    assert removed.json()["next_renewal"]["amount_minor"] == 700
    assert await _pool_of(db, first) is None and await _pool_of(db, second) == pool_id
    async with db() as session:
        former = await session.get(Line, first)
        assert former is not None and await rated_account(session, former) == former.ocs_account
    # Another organisation does not see the pool.
    assert_problem(await app_client.get(f"/api/v1/pools/{pool_id}", headers=other_tenant.org_staff), 404)


async def test_a_dynamic_pool_counts_the_members_active_at_renewal_time(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    pool = await _pool(app_client, tenant, await _plan(db, tenant, SubscriptionKind.DYNAMIC_POOL))
    assert pool["kind"] == "dynamic"
    assert pool["next_renewal"] == {"members": 0, "amount_minor": 0, "data_bytes": 0, "currency": "EUR"}
    lines = [await _line(db, tenant, tenant.company_id) for _ in range(3)]
    for line_id in lines:
        response = await app_client.post(
            f"/api/v1/pools/{pool['id']}/members", json={"line_id": line_id}, headers=tenant.org_staff
        )
        assert response.status_code == 201, response.text
    assert response.json()["next_renewal"]["amount_minor"] == 3 * 700
    assert response.json()["next_renewal"]["data_bytes"] == 3 * 2 * GB
    async with db.begin() as session:  # a member suspended since it joined is not counted
        suspended = await session.get(Line, lines[0])
        assert suspended is not None
        suspended.status = LineStatus.SUSPENDED
    read = (await app_client.get(f"/api/v1/pools/{pool['id']}", headers=tenant.org_staff)).json()
    assert len(read["members"]) == 3
    assert read["next_renewal"]["members"] == 2 and read["next_renewal"]["amount_minor"] == 2 * 700


async def test_a_pool_needs_a_pool_plan_and_a_visible_company(
    app_client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    static = await _plan(db, tenant, SubscriptionKind.STATIC_POOL)
    prepaid = await _plan(db, tenant, None)
    good = {"company_id": tenant.company_id, "name": "Flotte", "plan_id": static}
    # The previous tests' pools may still be opening their subscriptions meanwhile (they write elsewhere).
    async with unchanged(db, tables=("pools", "subscriptions")):
        for body, status, field in [
            ({**good, "plan_id": prepaid}, 422, "plan_id"),
            ({**good, "plan_id": "nope"}, 422, "plan_id"),
            ({**good, "company_id": other_tenant.company_id}, 404, "company_id"),
            ({**good, "name": ""}, 422, "name"),
            ({k: v for k, v in good.items() if k != "plan_id"}, 422, "plan_id"),
        ]:
            assert_problem(await app_client.post("/api/v1/pools", json=body, headers=tenant.org_staff), status, field)
        # Another organisation's plan is no plan of this one.
        foreign = {"company_id": other_tenant.company_id, "name": "Flotte", "plan_id": static}
        assert_problem(await app_client.post("/api/v1/pools", json=foreign, headers=other_tenant.org_staff), 422)


async def test_only_an_active_line_of_the_company_in_no_other_pool_joins(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    plan = await _plan(db, tenant, SubscriptionKind.STATIC_POOL)
    pool, other_pool = await _pool(app_client, tenant, plan), await _pool(app_client, tenant, plan)
    taken = await _line(db, tenant, tenant.company_id)
    joined = await app_client.post(
        f"/api/v1/pools/{other_pool['id']}/members", json={"line_id": taken}, headers=tenant.org_staff
    )
    assert joined.status_code == 201
    renewing = await _line(db, tenant, tenant.company_id)
    async with db.begin() as session:
        session.add(
            Subscription(
                org_id=tenant.org_id,
                company_id=tenant.company_id,
                line_id=renewing,
                plan_id=plan,
                anchor_on=_today(),
                validity_days=30,
                next_renewal_on=_today(),
                auto_renew_mode=AutoRenewMode.ON,
                payment_method=PaymentMethod.CARD,
                status=SubscriptionStatus.ACTIVE,
                workflow_id=f"subscription/{tenant.org_id}/{renewing}",
            )
        )
    cases = {
        await _line(db, tenant, tenant.sibling_company_id): "autre entreprise",
        taken: "autre pool",
        await _line(db, tenant, tenant.company_id, LineStatus.SUSPENDED): "active",
        renewing: "propre abonnement",
    }
    url = f"/api/v1/pools/{pool['id']}/members"
    # A worker of the session may be opening the two pools' subscriptions meanwhile (it writes elsewhere).
    async with unchanged(db, tables=("lines", "pools")):
        for line_id, reason in cases.items():
            before = await _pool_of(db, line_id)
            response = await app_client.post(url, json={"line_id": line_id}, headers=tenant.org_staff)
            assert_problem(response, 409, "line_id", reason)
            assert await _pool_of(db, line_id) == before
        assert_problem(
            await app_client.post(url, json={"line_id": "unknown"}, headers=tenant.org_staff), 404, "line_id"
        )
        assert_problem(await app_client.post(url, json={}, headers=tenant.org_staff), 422, "line_id")
        # A line that is not a member cannot leave.
        assert_problem(await app_client.delete(f"{url}/{taken}", headers=tenant.org_staff), 409, "line_id")
    assert await _pool_of(db, taken) == other_pool["id"]


def _today() -> date:
    return datetime.now(UTC).date()


async def test_a_pool_created_from_the_portal_starts_its_subscription_like_the_api(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    plan_id = await _plan(db, tenant, SubscriptionKind.STATIC_POOL)
    session_token = tenant.org_staff["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(transport=app_client._transport, base_url="http://simflow.test") as portal:
        portal.cookies.set("simflow_session", session_token)
        url = f"/portal/companies/{tenant.company_id}/pools"
        form = await portal.get(url)
        assert form.status_code == 200 and f'value="{plan_id}"' in form.text, form.text[:500]
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        created = await portal.post(url, data={"name": "Flotte portail", "plan_id": plan_id, "csrf_token": token[1]})
        assert created.status_code == 303, created.text[:500]
        pool_id = created.headers["location"].removeprefix("/portal/pools/").removesuffix("?created=1")
        page = await portal.get(created.headers["location"])
        assert page.status_code == 200 and "Pool créé" in page.text and "Flotte portail" in page.text
    read = await app_client.get(f"/api/v1/pools/{pool_id}", headers=tenant.org_staff)
    assert read.status_code == 200 and read.json()["plan_id"] == plan_id and read.json()["kind"] == "static"
    assert read.json()["workflow_id"] == f"subscription/{tenant.org_id}/pool-{pool_id}"
