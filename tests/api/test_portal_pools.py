"""Portal "Pools" of a company over HTTP (ASGI, session cookie, no browser, no Temporal): the company's pools,
a pool's page (members, next renewal, Temporal link), lines joining and leaving through the API's handlers,
and refused forms that name their field and change nothing. Another tenant's pool is the 404 page. Creating a
pool starts its subscription workflow: its success is tested with Temporal in tests/api/test_pools.py."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import pytest_asyncio
from sqlalchemy import func, select

from domain.enums import LineStatus, PlanType, PoolKind, SubscriptionKind
from domain.models import AuditLog, Line, Plan, Pool
from domain.pools import pool_ocs_account
from tests.api.test_portal import Portal, csrf_from, logged_in, portal  # noqa: F401 - `portal` is a fixture
from tests.browser.portal_seed import TEMPORAL_UI

GB = 1 << 30


@dataclass(frozen=True)
class Pools:
    dynamic_plan: str  # organisation A, 5,00 € and 1 Go per SIM
    prepaid_plan: str  # organisation A, not a pool plan
    pool_a1: str  # company A1, dynamic, one member
    member: str
    candidate: str  # active line of A1 in no pool
    suspended: str  # suspended line of A1
    line_a2: str  # active line of company A2
    pool_b: str  # organisation B


def _msisdn() -> str:
    return f"+3362{random.randrange(10**7):07d}"


@pytest_asyncio.fixture(scope="module")
async def pools(portal: Portal) -> Pools:  # noqa: F811
    seed = portal.seed
    async with portal.app.state.simflow.sessionmaker.begin() as session:

        def plan(org: str, name: str, kind: SubscriptionKind | None) -> Plan:
            return Plan(
                org_id=org,
                name=f"{name} {uuid.uuid4().hex[:4]}",
                plan_type=PlanType.SUBSCRIPTION if kind else PlanType.PREPAID,
                subscription_kind=kind,
                price_minor=500,
                data_allowance_bytes=GB,
                carrier="Orange",
            )

        dynamic, prepaid = (
            plan(seed.org_a, "Pool flotte", SubscriptionKind.DYNAMIC_POOL),
            plan(seed.org_a, "Prépayé", None),
        )
        plan_b = plan(seed.org_b, "Pool B", SubscriptionKind.STATIC_POOL)
        session.add_all([dynamic, prepaid, plan_b])
        await session.flush()
        pool_a1 = Pool(
            org_id=seed.org_a, company_id=seed.company_a1, name="Camions", kind=PoolKind.DYNAMIC, plan_id=dynamic.id
        )
        pool_b = Pool(
            org_id=seed.org_b, company_id=seed.company_b1, name="Flotte B", kind=PoolKind.STATIC, plan_id=plan_b.id
        )
        session.add_all([pool_a1, pool_b])
        await session.flush()
        for pool in (pool_a1, pool_b):
            pool.ocs_account = pool_ocs_account(pool.id)

        def line(company: str, status: LineStatus = LineStatus.ACTIVE, pool_id: str | None = None) -> Line:
            msisdn = _msisdn()
            return Line(
                org_id=seed.org_a, company_id=company, msisdn=msisdn, status=status, ocs_account=msisdn, pool_id=pool_id
            )

        lines = [
            line(seed.company_a1, pool_id=pool_a1.id),
            line(seed.company_a1),
            line(seed.company_a1, LineStatus.SUSPENDED),
            line(seed.company_a2),
        ]
        session.add_all(lines)
    return Pools(dynamic.id, prepaid.id, pool_a1.id, lines[0].id, lines[1].id, lines[2].id, lines[3].id, pool_b.id)


async def _pool_count(portal: Portal) -> int:  # noqa: F811
    async with portal.app.state.simflow.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Pool)) or 0)


async def _pool_of(portal: Portal, line_id: str) -> str | None:  # noqa: F811
    async with portal.app.state.simflow.sessionmaker() as session:
        line = await session.get(Line, line_id)
        assert line is not None
        return line.pool_id


async def test_company_pools_page_lists_its_pools_and_offers_pool_plans_only(portal: Portal, pools: Pools) -> None:  # noqa: F811
    async with logged_in(portal, portal.seed.staff_a) as client:
        company = await client.get(f"/portal/companies/{portal.seed.company_a1}")
        assert f'href="/portal/companies/{portal.seed.company_a1}/pools"' in company.text
        response = await client.get(f"/portal/companies/{portal.seed.company_a1}/pools")
        assert response.status_code == 200, response.text
        html = response.text
        assert f'data-pool="{pools.pool_a1}"' in html and "Camions" in html and "Dynamique" in html
        assert f'value="{pools.dynamic_plan}"' in html and f'value="{pools.prepaid_plan}"' not in html
        assert "Flotte B" not in html
        other = await client.get(f"/portal/companies/{portal.seed.company_a2}/pools")
        assert other.status_code == 200 and "Camions" not in other.text
        foreign = await client.get(f"/portal/companies/{portal.seed.company_b1}/pools")
        assert foreign.status_code == 404 and "Flotte B" not in foreign.text


async def test_pool_page_shows_members_next_renewal_and_the_temporal_link(portal: Portal, pools: Pools) -> None:  # noqa: F811
    async with logged_in(portal, portal.seed.staff_a) as client:
        response = await client.get(f"/portal/pools/{pools.pool_a1}")
        assert response.status_code == 200, response.text
        html = response.text
        assert f'data-member="{pools.member}"' in html
        assert 'id="renewal-members">1<' in html and 'id="renewal-amount">5,00' in html
        workflow_id = f"subscription/{portal.seed.org_a}/pool-{pools.pool_a1}"
        assert f"{TEMPORAL_UI}/namespaces/default/workflows/{quote(workflow_id, safe='')}" in html
        # The add form offers active lines of the company in no pool.
        assert f'<option value="{pools.candidate}">' in html
        assert f'value="{pools.suspended}"' not in html and f'value="{pools.line_a2}"' not in html
        assert (await client.get(f"/portal/pools/{pools.pool_b}")).status_code == 404
    async with logged_in(portal, portal.seed.staff_b) as client:
        assert (await client.get(f"/portal/pools/{pools.pool_a1}")).status_code == 404


async def test_lines_join_and_leave_and_refusals_name_the_field_and_change_nothing(
    portal: Portal,  # noqa: F811
    pools: Pools,
) -> None:
    async with logged_in(portal, portal.seed.staff_a) as client:
        url = f"/portal/pools/{pools.pool_a1}"
        token = csrf_from((await client.get(url)).text)
        for line_id, reason in (
            (pools.suspended, "la ligne doit être active"),
            (pools.line_a2, "une autre entreprise que le pool"),
            ("", "Ligne :"),
        ):
            refused = await client.post(f"{url}/members", data={"line_id": line_id, "csrf_token": token})
            assert refused.status_code == 422, (line_id, refused.text[:300])
            assert 'id="pool-error"' in refused.text and reason in refused.text, refused.text[:2000]
        assert await _pool_of(portal, pools.suspended) is None and await _pool_of(portal, pools.line_a2) is None

        added = await client.post(f"{url}/members", data={"line_id": pools.candidate, "csrf_token": token})
        assert added.status_code == 303, added.text[:300]
        assert await _pool_of(portal, pools.candidate) == pools.pool_a1
        page = await client.get(url)
        assert f'data-member="{pools.candidate}"' in page.text and 'id="renewal-members">2<' in page.text
        assert 'id="renewal-amount">10,00' in page.text

        removed = await client.post(f"{url}/members/{pools.candidate}/removal", data={"csrf_token": token})
        assert removed.status_code == 303 and await _pool_of(portal, pools.candidate) is None
        async with portal.app.state.simflow.sessionmaker() as session:
            query = select(AuditLog.action).where(AuditLog.target == f"pool:{pools.pool_a1}")
            actions = list((await session.execute(query)).scalars())
        assert actions.count("pool.member_added") == 1 and actions.count("pool.member_removed") == 1, actions
        again = await client.post(f"{url}/members/{pools.candidate}/removal", data={"csrf_token": token})
        assert again.status_code == 409 and "pas membre de ce pool" in again.text
        forged = await client.post(f"{url}/members", data={"line_id": pools.candidate, "csrf_token": "0" * 64})
        assert forged.status_code == 403 and await _pool_of(portal, pools.candidate) is None


async def test_pool_creation_refusals_name_the_field_and_create_nothing(portal: Portal, pools: Pools) -> None:  # noqa: F811
    async with logged_in(portal, portal.seed.staff_a) as client:
        url = f"/portal/companies/{portal.seed.company_a1}/pools"
        token = csrf_from((await client.get(url)).text)
        before = await _pool_count(portal)
        for name, plan_id, reason in (
            ("Flotte", pools.prepaid_plan, "Forfait : le forfait n&#39;est pas un forfait de pool"),
            ("Flotte", "inconnu", "Forfait : forfait introuvable"),
            ("", pools.dynamic_plan, "Nom :"),
        ):
            refused = await client.post(url, data={"name": name, "plan_id": plan_id, "csrf_token": token})
            assert refused.status_code == 422, refused.text[:300]
            assert reason in refused.text, (reason, refused.text[:3000])
            assert f'value="{name}"' in refused.text  # the form keeps what was typed
        assert await _pool_count(portal) == before
