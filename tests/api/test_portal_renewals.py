"""Portal "Renouvellements" and the line page's subscription block over HTTP (ASGI, session cookie, no
browser, no Temporal): each staff member sees the subscriptions of their scope only, with next renewal,
reminders, dunning stage and the Temporal link; the filters by state; the block's forms on the line page.
The actions themselves run on the real stack in tests/e2e/test_portal_renewals.py."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import pytest_asyncio

from domain.enums import AutoRenewMode, DunningStage, LineStatus, PaymentMethod, PlanType, SubscriptionStatus
from domain.models import Line, Plan, Subscription
from domain.renewal_calendar import RenewalCalendar
from tests.api.test_portal import Portal, csrf_from, logged_in, portal  # noqa: F401 - `portal` is a fixture
from tests.browser.portal_seed import TEMPORAL_UI


@dataclass(frozen=True)
class Renewals:
    renewing_a1: Line  # company A1, renewing normally, prepaid: reminders to come
    dunning_a2: Line  # company A2, suspended in dunning
    renewing_b: Line  # organisation B
    next_renewal_a1: date


def _msisdn() -> str:
    return f"+3361{random.randrange(10**7):07d}"


@pytest_asyncio.fixture(scope="module")
async def renewals(portal: Portal) -> Renewals:  # noqa: F811
    seed = portal.seed
    today = datetime.now(UTC).date()
    calendar = RenewalCalendar(anchor=today - timedelta(days=5), validity_days=30)
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        plans = {
            org: Plan(
                org_id=org,
                name=f"Prépayé 5 Go {org[:4]}",
                plan_type=PlanType.PREPAID,
                price_minor=1500,
                validity_days=30,
                carrier="Orange",
                auto_renew_mode=AutoRenewMode.ON,
            )
            for org in (seed.org_a, seed.org_b)
        }
        session.add_all(plans.values())
        await session.flush()
        lines = [
            Line(org_id=org, company_id=company, plan_id=plans[org].id, msisdn=_msisdn(), status=status)
            for org, company, status in (
                (seed.org_a, seed.company_a1, LineStatus.ACTIVE),
                (seed.org_a, seed.company_a2, LineStatus.SUSPENDED),
                (seed.org_b, seed.company_b1, LineStatus.ACTIVE),
            )
        ]
        session.add_all(lines)
        await session.flush()
        for line, dunning in zip(lines, (False, True, False), strict=True):
            session.add(
                Subscription(
                    org_id=line.org_id,
                    company_id=line.company_id,
                    line_id=line.id,
                    plan_id=line.plan_id,
                    anchor_on=calendar.anchor,
                    validity_days=30,
                    period=0,
                    next_renewal_on=calendar.period_end(0),
                    auto_renew_mode=AutoRenewMode.ON,
                    payment_method=PaymentMethod.CARD,
                    status=SubscriptionStatus.SUSPENDED if dunning else SubscriptionStatus.ACTIVE,
                    dunning_stage=DunningStage.SUSPENSION if dunning else None,
                    dunning_since=today - timedelta(days=9) if dunning else None,
                    workflow_id=f"subscription/{line.org_id}/{line.id}",
                )
            )
    return Renewals(lines[0], lines[1], lines[2], calendar.period_end(0))


def _row_ids(html: str, *lines: Line) -> set[str]:
    return {line.id for line in lines if f'data-line-id="{line.id}"' in html}


async def test_renewals_page_lists_the_scope_with_reminders_dunning_and_temporal_links(
    portal: Portal,  # noqa: F811
    renewals: Renewals,
) -> None:
    everyone = (renewals.renewing_a1, renewals.dunning_a2, renewals.renewing_b)
    async with logged_in(portal, portal.seed.staff_a) as client:
        response = await client.get("/portal/renewals")
        assert response.status_code == 200, response.text
        html = response.text
        assert '<a href="/portal/renewals" aria-current="page">Renouvellements</a>' in html
        assert _row_ids(html, *everyone) == {renewals.renewing_a1.id, renewals.dunning_a2.id}
        assert renewals.renewing_b.msisdn not in html
        for line in (renewals.renewing_a1, renewals.dunning_a2):
            workflow_id = f"subscription/{line.org_id}/{line.id}"
            assert f"{TEMPORAL_UI}/namespaces/default/workflows/{quote(workflow_id, safe='')}" in html
        assert f'data-next-renewal="{renewals.next_renewal_a1.isoformat()}"' in html
        ten_days = (renewals.next_renewal_a1 - timedelta(days=10)).strftime("%d/%m/%Y")
        assert f"J-10 : {ten_days}" in html and 'data-reminder="5"' in html
        assert 'data-dunning-stage="suspension"' in html and "Relance : Ligne suspendue" in html

        dunning = await client.get("/portal/renewals", params={"state": "dunning"})
        assert _row_ids(dunning.text, *everyone) == {renewals.dunning_a2.id}
        renewing = await client.get(
            "/portal/renewals",
            params={"state": "renewing"},
            headers={"HX-Request": "true", "HX-Target": "renewal-results"},
        )
        assert "<html" not in renewing.text and 'id="renewal-results"' in renewing.text
        assert _row_ids(renewing.text, *everyone) == {renewals.renewing_a1.id}

    async with logged_in(portal, portal.seed.staff_b) as client:
        html = (await client.get("/portal/renewals")).text
        assert _row_ids(html, *everyone) == {renewals.renewing_b.id}
        assert renewals.renewing_a1.msisdn not in html and renewals.dunning_a2.msisdn not in html

    async with logged_in(portal, portal.seed.staff_a1) as client:  # company A1's staff: their company only
        html = (await client.get("/portal/renewals")).text
        assert _row_ids(html, *everyone) == {renewals.renewing_a1.id}


async def test_line_page_shows_the_subscription_block_and_its_forms(
    portal: Portal,  # noqa: F811
    renewals: Renewals,
) -> None:
    line = renewals.dunning_a2
    async with logged_in(portal, portal.seed.staff_a) as client:
        response = await client.get(f"/portal/lines/{line.id}")
        assert response.status_code == 200, response.text
        html = response.text
        assert 'id="line-subscription"' in html and "Prépayé 5 Go" in html
        assert 'data-mode="on"' in html and "Automatique" in html
        assert f'data-next-renewal="{renewals.next_renewal_a1.isoformat()}"' in html and 'data-period="0"' in html
        assert "Ligne suspendue" in html
        assert f'action="/portal/lines/{line.id}/renewals"' in html and 'name="batch"' in html
        assert f'action="/portal/lines/{line.id}/auto-renew"' in html
        assert quote(f"subscription/{line.org_id}/{line.id}", safe="") in html

        # A mode outside the three is refused on the page, before any workflow is reached.
        refused = await client.post(
            f"/portal/lines/{line.id}/auto-renew", data={"csrf_token": csrf_from(html), "mode": "sometimes"}
        )
        assert refused.status_code == 422 and 'id="line-problem"' in refused.text and "mode" in refused.text

    async with logged_in(portal, portal.seed.staff_b) as client:
        token = csrf_from((await client.get("/portal/renewals")).text)
        for action, data in (("renewals", {"batch": "a" * 32}), ("auto-renew", {"mode": "off"})):
            response = await client.post(f"/portal/lines/{line.id}/{action}", data={"csrf_token": token, **data})
            assert response.status_code == 404, (action, response.status_code)
            assert line.msisdn is not None and line.msisdn not in response.text
