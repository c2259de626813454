"""Wallets over the API: one per company and per end user, enabled or not, a minimum balance that may be
negative, the ledger over a period with its CSV export, and the refusals (bad input, other tenants, a
disabled wallet) that change nothing. Funding by card end to end is in tests/e2e/test_wallet_funding.py."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.ledger import LedgerActivities
from domain.enums import WalletOwnerType
from domain.models import EndUser, Wallet, WalletEntry, WalletFunding
from domain.services.companies import create_company
from domain.wallet_contracts import FundingCredit, FundingStatusUpdate
from tests.api._support import STRONG_PASSWORD, assert_problem, unchanged
from tests.api.conftest import Tenant


async def _company_wallet(client: httpx.AsyncClient, tenant: Tenant, company_id: str) -> dict[str, object]:
    got = await client.get(f"/api/v1/companies/{company_id}/wallet", headers=tenant.org_staff)
    if got.status_code == 404:
        got = await client.post(f"/api/v1/companies/{company_id}/wallet", json={}, headers=tenant.org_staff)
        assert got.status_code == 201, got.text
    body: dict[str, object] = got.json()
    return body


async def test_company_wallet_created_once_enabled_and_min_balance(
    app_client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    url = f"/api/v1/companies/{tenant.sibling_company_id}/wallet"
    assert_problem(await app_client.get(url, headers=tenant.org_staff), 404)
    created = await app_client.post(url, json={"min_balance_minor": -5000}, headers=tenant.org_staff)
    assert created.status_code == 201, created.text
    wallet = created.json()
    assert wallet["owner_type"] == "company" and wallet["owner_id"] == tenant.sibling_company_id
    assert wallet["enabled"] is True and wallet["min_balance_minor"] == -5000 and wallet["balance_minor"] == 0
    assert_problem(await app_client.post(url, json={}, headers=tenant.org_staff), 409)

    patched = await app_client.patch(url, json={"enabled": False, "min_balance_minor": 1000}, headers=tenant.org_staff)
    assert patched.status_code == 200, patched.text
    again = (await app_client.get(url, headers=tenant.org_staff)).json()
    assert (again["id"], again["enabled"], again["min_balance_minor"]) == (wallet["id"], False, 1000)

    # Another organisation's staff: the wallet (and the company) do not exist for them.
    assert_problem(await app_client.get(url, headers=other_tenant.org_staff), 404)
    assert_problem(await app_client.patch(url, json={"enabled": True}, headers=other_tenant.org_staff), 404)
    assert_problem(await app_client.get(f"/api/v1/wallets/{wallet['id']}", headers=other_tenant.org_staff), 404)


async def test_company_staff_reads_but_does_not_set_up_wallets(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    wallet = await _company_wallet(app_client, tenant, tenant.company_id)
    url = f"/api/v1/companies/{tenant.company_id}/wallet"
    assert (await app_client.get(url, headers=tenant.company_staff)).json()["id"] == wallet["id"]
    async with unchanged(db):
        assert_problem(
            await app_client.patch(url, json={"min_balance_minor": -(10**6)}, headers=tenant.company_staff), 403
        )
    # The sibling company is outside a company staff member's subtree.
    sibling = f"/api/v1/companies/{tenant.sibling_company_id}/wallet"
    assert_problem(await app_client.get(sibling, headers=tenant.company_staff), 404)


async def test_end_user_wallet(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db.begin() as session:
        user = EndUser(
            org_id=tenant.org_id,
            company_id=tenant.company_id,
            email=f"eu-{uuid.uuid4().hex[:8]}@test.simflow",
            full_name="Utilisatrice",
        )
        session.add(user)
        await session.flush()
        user_id = user.id
    url = f"/api/v1/end-users/{user_id}/wallet"
    created = await app_client.post(url, json={"enabled": False}, headers=tenant.org_staff)
    assert created.status_code == 201, created.text
    assert created.json()["owner_type"] == "end_user" and created.json()["enabled"] is False
    async with db() as session:
        row = (
            await session.execute(
                select(Wallet).where(Wallet.owner_type == WalletOwnerType.END_USER, Wallet.owner_id == user_id)
            )
        ).scalar_one()
    assert row.company_id == tenant.company_id and row.end_user_id == user_id


async def test_bad_input_is_named_and_changes_nothing(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    wallet = await _company_wallet(app_client, tenant, tenant.company_id)
    url = f"/api/v1/companies/{tenant.company_id}/wallet"
    fundings = f"/api/v1/wallets/{wallet['id']}/fundings"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    async with unchanged(db):
        assert_problem(
            await app_client.patch(url, json={"min_balance_minor": 10**12}, headers=tenant.org_staff),
            422,
            "min_balance_minor",
        )
        assert_problem(
            await app_client.patch(url, json={"enabled": "peut-être"}, headers=tenant.org_staff), 422, "enabled"
        )
        assert_problem(
            await app_client.post(fundings, json={"amount_minor": 0}, headers={**tenant.org_staff, **key}),
            422,
            "amount_minor",
        )
        assert_problem(
            await app_client.post(fundings, json={"amount_minor": 10**9}, headers={**tenant.org_staff, **key}),
            422,
            "amount_minor",
        )
        assert_problem(
            await app_client.post(
                fundings, json={"amount_minor": 1000}, headers={**tenant.org_staff, "Idempotency-Key": "court"}
            ),
            422,
            "Idempotency-Key",
        )
        assert_problem(
            await app_client.get(
                f"/api/v1/wallets/{wallet['id']}?from=2026-05-02&to=2026-05-01", headers=tenant.org_staff
            ),
            422,
            "to",
        )


async def test_disabled_wallet_refuses_funding(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    wallet = await _company_wallet(app_client, tenant, tenant.sibling_company_id)
    url = f"/api/v1/companies/{tenant.sibling_company_id}/wallet"
    assert (await app_client.patch(url, json={"enabled": False}, headers=tenant.org_staff)).status_code == 200
    async with unchanged(db):
        refused = await app_client.post(
            f"/api/v1/wallets/{wallet['id']}/fundings",
            json={"amount_minor": 1000},
            headers={**tenant.org_staff, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert_problem(refused, 409, "wallet_id", "désactivé")
    async with db() as session:
        assert (
            await session.execute(select(WalletFunding).where(WalletFunding.wallet_id == wallet["id"]))
        ).first() is None


async def test_ledger_over_a_period_and_csv(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db.begin() as session:
        user = EndUser(
            org_id=tenant.org_id,
            company_id=tenant.company_id,
            email=f"ledger-{uuid.uuid4().hex[:8]}@test.simflow",
            full_name="Grand livre",
        )
        session.add(user)
        await session.flush()
        wallet = Wallet(
            org_id=tenant.org_id,
            company_id=tenant.company_id,
            owner_type=WalletOwnerType.END_USER,
            owner_id=user.id,
            min_balance_minor=-2000,
        )
        session.add(wallet)
        await session.flush()
        wallet_id, tag = wallet.id, uuid.uuid4().hex[:8]

        def entry(day: int, amount: int, kind: str, ref: str) -> WalletEntry:
            return WalletEntry(
                wallet_id=wallet_id,
                amount_minor=amount,
                kind=kind,
                reference=f"{tag}:{ref}",
                description=f"=cmd {ref}" if ref == "d1" else ref,
                at=datetime(2026, 5, day, 10, tzinfo=UTC),
            )

        session.add_all(
            [
                entry(1, 10_000, "card_funding", "f0"),  # before the period: the starting balance
                entry(10, 5_000, "card_funding", "f1"),
                entry(11, -1_500, "topup_debit", "d1"),
                entry(12, 1_500, "topup_refund", "r1"),
                entry(13, -2_000, "topup_debit", "d2"),
                entry(25, -700, "topup_debit", "d3"),  # after the period
            ]
        )
    got = await app_client.get(
        f"/api/v1/wallets/{wallet_id}", params={"from": "2026-05-05", "to": "2026-05-20"}, headers=tenant.org_staff
    )
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["starting_balance_minor"] == 10_000
    assert body["total_topped_up_minor"] == 5_000
    assert body["total_spent_minor"] == 2_000  # the refunded debit cancels out
    assert body["final_balance_minor"] == 13_000
    assert [e["reference"] for e in body["entries"]] == [f"{tag}:{r}" for r in ("f1", "d1", "r1", "d2")]
    assert [e["balance_after_minor"] for e in body["entries"]] == [15_000, 13_500, 15_000, 13_000]
    assert body["wallet"]["balance_minor"] == 12_300  # the wallet's balance now, all entries

    whole = (await app_client.get(f"/api/v1/wallets/{wallet_id}", headers=tenant.org_staff)).json()
    assert whole["starting_balance_minor"] == 0 and whole["final_balance_minor"] == 12_300

    csv = await app_client.get(
        f"/api/v1/wallets/{wallet_id}/ledger.csv",
        params={"from": "2026-05-05", "to": "2026-05-20"},
        headers=tenant.org_staff,
    )
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.content.startswith("\ufeff".encode())
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "date;type;description;reference;montant;devise;solde"
    assert len(lines) == 5
    assert lines[1].split(";")[1:] == ["Approvisionnement par carte", "f1", f"{tag}:f1", "50,00", "EUR", "150,00"]
    assert lines[2].split(";")[2] == "'=cmd d1"  # a formula-looking description is shown, never run
    assert lines[2].split(";")[4] == "-15,00"


async def test_funding_activities_refuse_another_tenants_funding(
    app_client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    """The ledger activities are handed the funding id and the tenant by the workflow: a funding of another
    organisation is refused for good (non-retryable) and nothing is written."""
    wallet = await _company_wallet(app_client, tenant, tenant.company_id)
    async with db.begin() as session:
        funding = WalletFunding(
            org_id=tenant.org_id,
            company_id=tenant.company_id,
            wallet_id=str(wallet["id"]),
            idempotency_key=uuid.uuid4().hex,
            request_fingerprint="x",
            requested_by="test",
            amount_minor=1_000,
            status="charged",
            workflow_id=f"wallet-funding/{tenant.org_id}/{uuid.uuid4().hex}",
        )
        session.add(funding)
    activities = LedgerActivities(db)
    async with unchanged(db):
        with pytest.raises(ApplicationError) as credit:
            await activities.credit_funding(
                FundingCredit(
                    funding_id=funding.id, org_id=other_tenant.org_id, reference=f"{funding.workflow_id}:credit"
                )
            )
        assert credit.value.non_retryable and credit.value.type == "funding.not_found"
        with pytest.raises(ApplicationError) as status:
            await activities.set_funding_status(
                FundingStatusUpdate(funding_id=funding.id, org_id=other_tenant.org_id, status="succeeded")
            )
        assert status.value.non_retryable
    async with db() as session:
        assert (await session.get(WalletFunding, funding.id)).status == "charged"  # type: ignore[union-attr]


CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


async def _portal_login(app_client: httpx.AsyncClient, email: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=app_client._transport, base_url="http://simflow.test")
    form = await client.get("/portal/login")
    match = CSRF_RE.search(form.text)
    assert match
    response = await client.post(
        "/portal/login",
        data={"email": email, "password": STRONG_PASSWORD, "csrf_token": match.group(1), "next": "/portal/companies"},
    )
    assert response.status_code == 303, response.text
    return client


async def test_portal_wallet_page_set_up_by_org_staff_only(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db.begin() as session:
        common = {"siret": None, "vat_number": None, "is_virtual": False, "billing_email": None, "address": None}
        company, _, _ = await create_company(session, org_id=tenant.org_id, name="Entreprise portail", **common)
        company_id = company.id
    page_url = f"/portal/companies/{company_id}/wallet"
    org = await _portal_login(app_client, tenant.org_staff_email)
    try:
        detail = await org.get(f"/portal/companies/{company_id}")
        assert f'href="{page_url}"' in detail.text
        empty = await org.get(page_url)
        assert empty.status_code == 200 and "Créer le portefeuille" in empty.text
        token = CSRF_RE.search(empty.text).group(1)  # type: ignore[union-attr]
        created = await org.post(page_url, data={"csrf_token": token})
        assert created.status_code == 303, created.text
        shown = await org.get(page_url)
        assert 'id="wallet-settings"' in shown.text and 'id="fund-form"' in shown.text
        assert "Aperçu des transactions" in shown.text and "Solde de départ" in shown.text
        refused = await org.post(f"{page_url}/settings", data={"csrf_token": token, "min_balance": "beaucoup"})
        assert refused.status_code == 422 and "Solde minimum : montant invalide" in refused.text
        saved = await org.post(f"{page_url}/settings", data={"csrf_token": token, "min_balance": "-12,50"})
        assert saved.status_code == 303, saved.text
    finally:
        await org.aclose()
    async with db() as session:
        wallet = (await session.execute(select(Wallet).where(Wallet.owner_id == company_id))).scalar_one()
    assert (wallet.enabled, wallet.min_balance_minor) == (False, -1_250)  # unchecked box: disabled

    # Company staff of another company: the page does not exist for them.
    staff = await _portal_login(app_client, tenant.company_staff_email)
    try:
        assert (await staff.get(page_url)).status_code == 404
        own = await staff.get(f"/portal/companies/{tenant.company_id}/wallet")
        assert own.status_code == 200 and 'id="wallet-settings"' not in own.text
    finally:
        await staff.aclose()


async def test_portal_wallet_page_of_an_end_user(
    app_client: httpx.AsyncClient, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db.begin() as session:
        common = {"siret": None, "vat_number": None, "is_virtual": False, "billing_email": None, "address": None}
        company, _, _ = await create_company(session, org_id=tenant.org_id, name="Entreprise d'Alice", **common)
        user = EndUser(
            org_id=tenant.org_id,
            company_id=company.id,
            email=f"eu-{uuid.uuid4().hex[:8]}@test.simflow",
            full_name="Alice",
        )
        session.add(user)
        await session.flush()
        user_id = user.id
    page_url = f"/portal/end-users/{user_id}/wallet"
    org = await _portal_login(app_client, tenant.org_staff_email)
    try:
        cards = await org.get(f"/portal/end-users/{user_id}/payment-methods")
        assert f'href="{page_url}"' in cards.text
        empty = await org.get(page_url)
        assert empty.status_code == 200 and "Cet utilisateur final n'a pas encore de portefeuille" in empty.text
        token = CSRF_RE.search(empty.text).group(1)  # type: ignore[union-attr]
        assert (await org.post(page_url, data={"csrf_token": token})).status_code == 303
        saved = await org.post(
            f"{page_url}/settings", data={"csrf_token": token, "min_balance": "-5,00", "enabled": "1"}
        )
        assert saved.status_code == 303 and saved.headers["location"] == page_url
        async with db.begin() as session:
            wallet = (
                await session.execute(
                    select(Wallet).where(Wallet.owner_type == WalletOwnerType.END_USER, Wallet.owner_id == user_id)
                )
            ).scalar_one()
            assert (wallet.enabled, wallet.min_balance_minor, wallet.end_user_id) == (True, -500, user_id)
            session.add(WalletEntry(wallet_id=wallet.id, amount_minor=2_000, kind="top_up", reference="depot-alice-1"))
        shown = await org.get(page_url)
        assert "Portefeuille — Alice" in shown.text and 'id="fund-form"' in shown.text
        assert f'action="{page_url}/fundings"' in shown.text and "depot-alice-1" in shown.text
        assert f"/api/v1/wallets/{wallet.id}/ledger.csv" in shown.text
        fundings = await org.get(f"{page_url}/fundings")  # the table htmx polls while a funding runs
        assert fundings.status_code == 200 and 'id="fundings"' in fundings.text
    finally:
        await org.aclose()
    # Staff of another company: the end user's page does not exist for them.
    staff = await _portal_login(app_client, tenant.company_staff_email)
    try:
        assert (await staff.get(page_url)).status_code == 404
        assert (await staff.get(f"{page_url}/fundings")).status_code == 404
    finally:
        await staff.aclose()
