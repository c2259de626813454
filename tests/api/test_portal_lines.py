"""Portal lines, line actions, activation and home over HTTP (ASGI, no browser): tenancy — staff of another
organisation get 404 for a line's page, its tabs and every action, and never see it listed; company staff
see their company only. Runs on SQLite and, in CI, PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from domain.enums import WalletOwnerType
from domain.models import Line, Wallet, WalletFunding
from tests.api.test_portal import Portal, csrf_from, logged_in, portal  # noqa: F401 - `portal` is a fixture

SEEDED_MSISDN = "+33612345678"
TABS = ("status", "plan", "ocs", "maj", "journal", "recharges", "workflows")


async def _seeded_line(seeded: Portal) -> Line:
    async with seeded.app.state.simflow.sessionmaker() as session:
        query = select(Line).where(Line.msisdn == SEEDED_MSISDN, Line.org_id == seeded.seed.org_a)
        line = (await session.execute(query)).scalars().one()
    return line


async def test_staff_of_another_organisation_get_404_for_a_line_and_its_actions(portal: Portal) -> None:  # noqa: F811
    line = await _seeded_line(portal)
    async with logged_in(portal, portal.seed.staff_b) as client:
        for tab in TABS:
            response = await client.get(f"/portal/lines/{line.id}", params={"tab": tab})
            assert response.status_code == 404, (tab, response.status_code)
            assert "Page introuvable" in response.text and SEEDED_MSISDN not in response.text
        for path in ("activation", "updates"):
            assert (await client.get(f"/portal/lines/{line.id}/{path}")).status_code == 404
        token = csrf_from((await client.get("/portal/lines")).text)
        actions = {
            "recharges": {"data_gb": "1", "payment_method": "account"},
            "suspension": {},
            "resumption": {},
            "plan-change": {"plan_id": "0" * 32},
            "termination": {"grace_days": "7"},
            "termination/cancellation": {},
            "termination/retry": {},
        }
        for action, data in actions.items():
            response = await client.post(f"/portal/lines/{line.id}/{action}", data={"csrf_token": token, **data})
            assert response.status_code == 404, (action, response.status_code, response.text[:300])
        iccid = portal.seed.iccids_a[0]
        assert (await client.get(f"/portal/sims/{iccid}/activation")).status_code == 404
        response = await client.post(
            f"/portal/sims/{iccid}/activation",
            data={"csrf_token": token, "company_id": portal.seed.company_b1, "plan_id": "0" * 32},
        )
        assert response.status_code == 404
        # Their list does not show it, whatever the filters; their home counts none of org A's lines.
        listing = await client.get("/portal/lines", params={"q": SEEDED_MSISDN})
        assert listing.status_code == 200 and line.id not in listing.text
        home = await client.get("/portal/home")
        assert home.status_code == 200 and line.id not in home.text
    async with portal.app.state.simflow.sessionmaker() as session:
        unchanged = await session.get(Line, line.id)
    assert unchanged is not None and unchanged.status is line.status and unchanged.termination_workflow_id is None


async def test_staff_of_the_organisation_see_the_line_and_its_tabs(portal: Portal) -> None:  # noqa: F811
    line = await _seeded_line(portal)
    async with logged_in(portal, portal.seed.staff_a) as client:
        listing = await client.get("/portal/lines", params={"q": "06 12 34 56 78", "status": "active"})
        assert listing.status_code == 200 and f'data-line-id="{line.id}"' in listing.text
        assert "/api/v1/lines/export.csv?status=active&amp;msisdn=%2B33612345678" in listing.text
        for tab in TABS:
            response = await client.get(f"/portal/lines/{line.id}", params={"tab": tab})
            assert response.status_code == 200, (tab, response.text[:300])
            assert f'data-tab="{tab}"' in response.text
        partial = await client.get(
            f"/portal/lines/{line.id}",
            params={"tab": "journal"},
            headers={"HX-Request": "true", "HX-Target": "line-tabs"},
        )
        assert partial.status_code == 200 and "<html" not in partial.text and 'id="line-journal"' in partial.text
        bad = await client.get("/portal/lines", params={"q": "pas un numéro"})
        assert bad.status_code == 200 and 'id="line-problem"' in bad.text
        # The export link is the API's: the session cookie authenticates it.
        export = await client.get("/api/v1/lines/export.csv", params={"msisdn": SEEDED_MSISDN})
        assert export.status_code == 200 and SEEDED_MSISDN in export.content.decode("utf-8-sig")
        home = await client.get("/portal/home")
        assert home.status_code == 200 and 'id="attention-queue"' in home.text and 'id="line-counts"' in home.text


async def test_company_staff_see_only_their_company_lines(portal: Portal) -> None:  # noqa: F811
    line = await _seeded_line(portal)
    async with logged_in(portal, portal.seed.staff_a1) as client:
        assert line.company_id == portal.seed.company_a1
        assert (await client.get(f"/portal/lines/{line.id}")).status_code == 200
        listing = await client.get("/portal/lines", params={"company_id": portal.seed.company_a2})
        assert listing.status_code == 200 and line.id not in listing.text


async def test_wallet_funding_waiting_for_staff_is_in_the_home_queue(portal: Portal) -> None:  # noqa: F811
    async with portal.app.state.simflow.sessionmaker.begin() as session:
        wallet = Wallet(
            org_id=portal.seed.org_a,
            company_id=portal.seed.company_a1,
            owner_type=WalletOwnerType.COMPANY,
            owner_id=portal.seed.company_a1,
        )
        session.add(wallet)
        await session.flush()
        funding = WalletFunding(
            org_id=portal.seed.org_a,
            company_id=portal.seed.company_a1,
            wallet_id=wallet.id,
            idempotency_key="portal-queue-1",
            request_fingerprint="f" * 64,
            requested_by="test",
            amount_minor=5000,
            status="needs_attention",
            workflow_id=f"wallet-funding/{portal.seed.org_a}/portal-queue-1",
            failure_reason="remboursement refusé par Stripe",
        )
        session.add(funding)
    action = f"/portal/wallets/{wallet.id}/fundings/{funding.id}/resolution"
    async with logged_in(portal, portal.seed.staff_a) as client:
        home = await client.get("/portal/home")
        assert home.status_code == 200
        assert "Portefeuille : remboursement en échec" in home.text and "remboursement refusé par Stripe" in home.text
        assert f'action="{action}"' in home.text
        # A note is required: refused on the page, the funding still waits.
        refused = await client.post(
            action, data={"csrf_token": csrf_from(home.text), "action": "refunded_manually", "note": ""}
        )
        assert refused.status_code == 422 and "note" in refused.text
    async with portal.app.state.simflow.sessionmaker() as session:
        row = await session.get(WalletFunding, funding.id)
        assert row is not None and row.status == "needs_attention"
    async with logged_in(portal, portal.seed.staff_a1) as client:  # company staff see it, may not resolve it
        home = await client.get("/portal/home")
        assert "remboursement refusé par Stripe" in home.text and f'action="{action}"' not in home.text
    async with logged_in(portal, portal.seed.staff_b) as client:  # another organisation: not listed, 404
        home = await client.get("/portal/home")
        assert "remboursement refusé par Stripe" not in home.text
        other = await client.post(
            action, data={"csrf_token": csrf_from(home.text), "action": "refunded_manually", "note": "fait à la main"}
        )
        assert other.status_code == 404
