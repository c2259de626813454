"""Saved cards through the API, against localstripe (behind the Stripe fault proxy): SetupIntent, confirm
as Stripe.js does, record, list, default, remove; and each organisation's own Stripe account."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import update

from domain.models import Company, EndUser, Organisation, SavedPaymentMethod
from infra.settings import Settings
from tests.api._security_support import Db, add_end_user, bearer
from tests.api._support import STRONG_PASSWORD, assert_problem
from tests.api.conftest import Tenant
from tests.card_support import confirm_card_setup, save_card
from tests.conftest import login

GOOD = "4242424242424242"
DECLINING = "4000000000000341"


def _base(company_id: str) -> str:
    return f"/api/v1/companies/{company_id}/payment-methods"


def _stripe_pm(localstripe_url: str, settings: Settings, pm_id: str) -> dict[str, Any]:
    key = settings.stripe_secret_key.get_secret_value()
    answer: dict[str, Any] = httpx.get(
        f"{localstripe_url}/v1/payment_methods/{pm_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    return answer


def _calls(stripe_url: str, op: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{stripe_url}/_sim/calls", params={"op": op}, timeout=10).json()
    return calls


async def test_company_saves_lists_defaults_and_removes_cards(
    app_client: httpx.AsyncClient, tenant: Tenant, db: Db, settings: Settings, localstripe_url: str
) -> None:
    base = _base(tenant.company_id)
    headers = tenant.org_staff
    first = await save_card(app_client, headers, base, localstripe_url, GOOD)
    assert (first["brand"], first["last4"], first["exp_month"], first["exp_year"]) == ("visa", "4242", 12, 2034)
    assert first["is_default"] is True  # the first card saved is the default
    async with db() as session:
        company = await session.get(Company, tenant.company_id)
        assert company is not None and company.stripe_customer_id and company.stripe_customer_id.startswith("cus_")
        assert company.stripe_payment_method_id == first["stripe_payment_method_id"]
        customer_id = company.stripe_customer_id
    # Stripe holds the card on the company's customer
    assert _stripe_pm(localstripe_url, settings, first["stripe_payment_method_id"])["customer"] == customer_id

    second = await save_card(app_client, headers, base, localstripe_url, DECLINING)
    assert second["last4"] == "0341" and second["is_default"] is False
    listed = (await app_client.get(base, headers=headers)).json()
    assert [(c["last4"], c["is_default"]) for c in listed["items"]] == [("4242", True), ("0341", False)]
    assert listed["default_payment_method_id"] == first["id"]

    made = await app_client.post(f"{base}/{second['id']}/default", headers=headers)
    assert made.status_code == 200 and made.json()["is_default"] is True, made.text
    async with db() as session:
        company = await session.get(Company, tenant.company_id)
        assert company is not None and company.stripe_payment_method_id == second["stripe_payment_method_id"]
        assert company.stripe_customer_id == customer_id  # one customer for both cards

    removed = await app_client.delete(f"{base}/{first['id']}", headers=headers)
    assert removed.status_code == 204, removed.text
    assert _stripe_pm(localstripe_url, settings, first["stripe_payment_method_id"])["customer"] is None  # detached
    listed = (await app_client.get(base, headers=headers)).json()
    assert [(c["last4"], c["is_default"]) for c in listed["items"]] == [("0341", True)]
    again = await app_client.delete(f"{base}/{first['id']}", headers=headers)
    assert again.status_code == 404

    # removing the default card leaves no default: a card recharge then says no card is saved
    assert (await app_client.delete(f"{base}/{second['id']}", headers=headers)).status_code == 204
    async with db() as session:
        company = await session.get(Company, tenant.company_id)
        assert company is not None and company.stripe_payment_method_id is None


async def test_recording_is_checked_with_stripe_and_idempotent(
    app_client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: Db, localstripe_url: str
) -> None:
    base = _base(tenant.company_id)
    headers = tenant.org_staff
    intent = (await app_client.post(f"{base}/setup-intent", headers=headers)).json()

    # not confirmed yet: refused, nothing recorded
    async with db() as session:
        before = len((await session.execute(SavedPaymentMethod.__table__.select())).all())
    pending = await app_client.post(base, json={"setup_intent_id": intent["setup_intent_id"]}, headers=headers)
    assert_problem(pending, 422, field="setup_intent_id")

    confirm_card_setup(localstripe_url, intent["client_secret"], GOOD, intent["publishable_key"])
    # another company (of another organisation) cannot record this company's SetupIntent
    other_base = _base(other_tenant.company_id)
    await app_client.post(f"{other_base}/setup-intent", headers=other_tenant.org_staff)  # gives it a customer
    stolen = await app_client.post(
        other_base, json={"setup_intent_id": intent["setup_intent_id"]}, headers=other_tenant.org_staff
    )
    assert_problem(stolen, 422, field="setup_intent_id")
    async with db() as session:
        assert len((await session.execute(SavedPaymentMethod.__table__.select())).all()) == before

    recorded = await app_client.post(base, json={"setup_intent_id": intent["setup_intent_id"]}, headers=headers)
    replayed = await app_client.post(base, json={"setup_intent_id": intent["setup_intent_id"]}, headers=headers)
    assert recorded.status_code == replayed.status_code == 201
    assert recorded.json()["id"] == replayed.json()["id"]

    bad = await app_client.post(base, json={"setup_intent_id": "pi_123"}, headers=headers)
    assert_problem(bad, 422, field="setup_intent_id")
    unknown = await app_client.post(base, json={"setup_intent_id": "seti_doesnotexist123"}, headers=headers)
    assert_problem(unknown, 422, field="setup_intent_id")


async def test_end_user_saves_own_card_and_cannot_touch_the_company_cards(
    app_client: httpx.AsyncClient, tenant: Tenant, db: Db, localstripe_url: str
) -> None:
    email, end_user_id = await add_end_user(db, tenant.org_id, tenant.company_id)
    user_headers = await login(app_client, email, STRONG_PASSWORD)
    base = f"/api/v1/end-users/{end_user_id}/payment-methods"
    card = await save_card(app_client, user_headers, base, localstripe_url, GOOD)
    assert card["end_user_id"] == end_user_id and card["is_default"] is True
    async with db() as session:
        user = await session.get(EndUser, end_user_id)
        assert user is not None and user.stripe_payment_method_id == card["stripe_payment_method_id"]
    # staff of the company see it; the end user does not see the company's cards
    staff_view = (await app_client.get(base, headers=tenant.company_staff)).json()
    assert [c["id"] for c in staff_view["items"]] == [card["id"]]
    company_cards = await app_client.get(_base(tenant.company_id), headers=user_headers)
    assert company_cards.status_code == 404
    # the end user's card is not reachable through the company's routes
    wrong_owner = await app_client.post(f"{_base(tenant.company_id)}/{card['id']}/default", headers=tenant.org_staff)
    assert wrong_owner.status_code == 404


async def test_each_organisation_uses_its_own_stripe_account(
    app_client: httpx.AsyncClient, db: Db, tenant: Tenant, other_tenant: Tenant, stripe_url: str, localstripe_url: str
) -> None:
    """localstripe has no Stripe Connect (one store for every key and account): what this proves is the
    routing, at the request level, as the Stripe fault proxy records the `Stripe-Account` header of each call."""
    accounts = {tenant.org_id: f"acct_{uuid.uuid4().hex[:16]}", other_tenant.org_id: f"acct_{uuid.uuid4().hex[:16]}"}
    async with db.begin() as session:
        for org_id, account in accounts.items():
            await session.execute(
                update(Organisation).where(Organisation.id == org_id).values(stripe_account_ref=account)
            )
            # a fresh customer in the connected account
            await session.execute(update(Company).where(Company.org_id == org_id).values(stripe_customer_id=None))
    try:
        for t in (tenant, other_tenant):
            await save_card(app_client, t.org_staff, _base(t.company_id), localstripe_url, GOOD)
            setup = await app_client.post(f"{_base(t.company_id)}/setup-intent", headers=t.org_staff)
            assert setup.json()["stripe_account"] == accounts[t.org_id]  # Stripe.js opens the same account
        for op in ("create_customer", "create_setup_intent", "retrieve_setup_intent", "attach_payment_method"):
            seen = {c["request"].get("_stripe_account") for c in _calls(stripe_url, op)}
            assert set(accounts.values()) <= seen, (op, seen)
        for t in (tenant, other_tenant):
            async with db() as session:
                company = await session.get(Company, t.company_id)
                assert company is not None
                customer_id = company.stripe_customer_id
            for op in ("create_setup_intent", "attach_payment_method"):
                mine = [c for c in _calls(stripe_url, op) if c["request"].get("customer") == customer_id]
                assert mine and {c["request"].get("_stripe_account") for c in mine} == {accounts[t.org_id]}, op
    finally:
        async with db.begin() as session:
            for org_id in accounts:
                await session.execute(
                    update(Organisation).where(Organisation.id == org_id).values(stripe_account_ref=None)
                )


async def test_staff_without_the_payment_area_is_refused(app_client: httpx.AsyncClient, tenant: Tenant, db: Db) -> None:
    from tests.api._security_support import add_staff_member

    email, _ = await add_staff_member(db, org_id=tenant.org_id, permissions=["company"])
    headers = await bearer(app_client, email)
    refused = await app_client.post(f"{_base(tenant.company_id)}/setup-intent", headers=headers)
    assert refused.status_code == 403


async def test_organisation_staff_set_their_stripe_account(
    app_client: httpx.AsyncClient, other_tenant: Tenant, tenant: Tenant, db: Db
) -> None:
    path = f"/api/v1/organisations/{other_tenant.org_id}/stripe-account"
    bad = await app_client.put(path, json={"stripe_account_ref": "sk_live_oops"}, headers=other_tenant.org_staff)
    assert_problem(bad, 422, field="stripe_account_ref")
    foreign = await app_client.put(path, json={"stripe_account_ref": "acct_1Q2w3E4r5T6y"}, headers=tenant.org_staff)
    assert foreign.status_code == 404
    company_level = await app_client.put(
        path, json={"stripe_account_ref": "acct_1Q2w3E4r5T6y"}, headers=other_tenant.company_staff
    )
    assert company_level.status_code == 404
    from tests.api._security_support import add_staff_member

    email, _ = await add_staff_member(db, org_id=other_tenant.org_id, permissions=["payment"])
    no_psp = await app_client.put(
        path, json={"stripe_account_ref": "acct_1Q2w3E4r5T6y"}, headers=await bearer(app_client, email)
    )
    assert no_psp.status_code == 403
    async with db() as session:
        org = await session.get(Organisation, other_tenant.org_id)
        assert org is not None and org.stripe_account_ref is None

    done = await app_client.put(path, json={"stripe_account_ref": "acct_1Q2w3E4r5T6y"}, headers=other_tenant.org_staff)
    assert done.status_code == 200 and done.json() == {
        "org_id": other_tenant.org_id,
        "stripe_account_ref": "acct_1Q2w3E4r5T6y",
    }
    back = await app_client.put(path, json={"stripe_account_ref": None}, headers=other_tenant.org_staff)
    assert back.status_code == 200
    async with db() as session:
        org = await session.get(Organisation, other_tenant.org_id)
        assert org is not None and org.stripe_account_ref is None
