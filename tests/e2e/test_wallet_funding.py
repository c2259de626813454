"""Wallet funding by card end to end: HTTP API → Temporal → worker → Stripe fault proxy → localstripe, and
the ledger. After every test the money invariants (F1–F5 of bench/invariants.py) are computed from
localstripe's own PaymentIntents and refunds and from the ledger.

Record the replay histories with `SIMFLOW_RECORD_HISTORIES=1` (tests/replay/histories/WalletFundingWorkflow__*)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from api.demo_data import DEMO_WALLET_FUNDING_MINOR, add_demo_card, fund_demo_wallet
from bench.invariants import check_invariants
from bench.topup_world import DECLINING_CARD, STAFF_PASSWORD, World, build_world
from domain.models import AuditLog, Company, Payment, Refund, Transaction, Wallet, WalletEntry, WalletFunding
from domain.wallet_contracts import FUNDING_TERMINAL_STATUSES
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.e2e.lifecycle_support import keep_history

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(autouse=True)
def clean_faults(stripe_url: str) -> Iterator[None]:
    yield
    httpx.delete(f"{stripe_url}/_sim/faults", timeout=5).raise_for_status()


def fault(url: str, op: str, mode: str, times: int = 1, latency_ms: int = 0) -> None:
    body = {"op": op, "mode": mode, "times": times, "latency_ms": latency_ms}
    httpx.post(f"{url}/_sim/faults", json=body, timeout=5).raise_for_status()


async def headers_for(client: httpx.AsyncClient, world: World) -> dict[str, str]:
    token = await client.post("/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def company_wallet(client: httpx.AsyncClient, headers: dict[str, str], world: World) -> dict[str, Any]:
    got = await client.get(f"/api/v1/companies/{world.company_id}/wallet", headers=headers)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


async def fund(
    client: httpx.AsyncClient, headers: dict[str, str], wallet_id: str, amount_minor: int, key: str | None = None
) -> httpx.Response:
    return await client.post(
        f"/api/v1/wallets/{wallet_id}/fundings",
        json={"amount_minor": amount_minor},
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def wait_funding(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    wallet_id: str,
    funding_id: str,
    until: tuple[str, ...] = FUNDING_TERMINAL_STATUSES,
    timeout_s: float = 60,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        got = await client.get(f"/api/v1/wallets/{wallet_id}/fundings/{funding_id}", headers=headers)
        assert got.status_code == 200, got.text
        body: dict[str, Any] = got.json()
        if body["status"] in until:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"funding {funding_id} still {body['status']} after {timeout_s} s")
        await asyncio.sleep(0.05)


def stripe_intents(localstripe_url: str, settings: Settings, funding_id: str) -> list[dict[str, Any]]:
    """localstripe's own record of the funding's PaymentIntents (found by the id in their metadata)."""
    auth = {"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"}
    intents = httpx.get(f"{localstripe_url}/v1/payment_intents", params={"limit": 100}, headers=auth).json()["data"]
    return [pi for pi in intents if (pi.get("metadata") or {}).get("wallet_funding_id") == funding_id]


def stripe_refunds(localstripe_url: str, settings: Settings, payment_intent_id: str) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"}
    refunds = httpx.get(f"{localstripe_url}/v1/refunds", params={"limit": 100}, headers=auth).json()["data"]
    return [r for r in refunds if r.get("payment_intent") == payment_intent_id]


async def db_rows(settings: Settings, query: Any) -> list[Any]:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return list((await session.execute(query)).scalars())
    finally:
        await engine.dispose()


async def money_rows(settings: Settings, workflow_id: str) -> tuple[list[Any], list[Any], list[Any]]:
    """The funding's transactions (charge, reversal), payment and refund rows, by their workflow references."""
    transactions = await db_rows(
        settings, select(Transaction).where(Transaction.reference.startswith(f"{workflow_id}:")).order_by("created_at")
    )
    payments = await db_rows(settings, select(Payment).where(Payment.reference == f"{workflow_id}:payment"))
    refunds = await db_rows(settings, select(Refund).where(Refund.reference == f"{workflow_id}:refund"))
    return transactions, payments, refunds


async def assert_invariants(settings: Settings, world: World, localstripe_url: str, ocs_base_url: str) -> None:
    report = await check_invariants(
        database_url=settings.database_url,
        localstripe_url=localstripe_url,
        stripe_api_key=settings.stripe_secret_key.get_secret_value(),
        ocs_base_url=ocs_base_url,
        ocs_tenant=settings.ocs_tenant,
        cfast_url=settings.cfast_url,
        org_ids={world.org_id},
    )
    assert report.ok, report.violations
    assert report.fundings >= 1


async def test_funding_charges_the_card_and_credits_the_ledger(
    app_client: httpx.AsyncClient,
    settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    world = await build_world(settings, wallet_minor=10_000)
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)
    assert wallet["balance_minor"] == 10_000

    started = await fund(app_client, headers, wallet["id"], 2_550)
    assert started.status_code == 202, started.text
    funding = started.json()
    assert funding["workflow_id"] == f"wallet-funding/{world.org_id}/{funding['funding_id']}"
    final = await wait_funding(app_client, headers, wallet["id"], funding["funding_id"])
    assert final["status"] == "succeeded", final
    assert final["ledger_reference"] == f"{funding['workflow_id']}:credit"

    # Stripe's own record: one succeeded PaymentIntent of that amount, the one the funding names.
    intents = stripe_intents(localstripe_url, settings, funding["funding_id"])
    assert [(pi["id"], pi["status"], pi["amount"]) for pi in intents] == [
        (final["payment_reference"], "succeeded", 2_550)
    ]
    credits = await db_rows(settings, select(WalletEntry).where(WalletEntry.reference == final["ledger_reference"]))
    assert [(c.amount_minor, c.kind) for c in credits] == [(2_550, "card_funding")]
    assert (await company_wallet(app_client, headers, world))["balance_minor"] == 12_550

    ledger = (await app_client.get(f"/api/v1/wallets/{wallet['id']}", headers=headers)).json()
    assert ledger["total_topped_up_minor"] == 10_000 + 2_550 and ledger["final_balance_minor"] == 12_550
    assert ledger["entries"][-1]["reference"] == final["ledger_reference"]
    audited = await db_rows(
        settings,
        select(AuditLog.action).where(
            AuditLog.target == f"wallet_funding:{funding['funding_id']}", AuditLog.action.startswith("wallet_funding.")
        ),
    )
    assert audited == ["wallet_funding.charge"]
    # The money movement is a transaction, not a sale: no VAT, no document (the top-ups it pays are billed).
    transactions, payments, refunds = await money_rows(settings, funding["workflow_id"])
    assert [
        (t.reference, t.retail_minor, t.tax_minor, t.billed_by, t.invoice_id, t.company_id) for t in transactions
    ] == [(f"{funding['workflow_id']}:transaction", 2_550, 0, "none", None, world.company_id)]
    assert [(p.method, p.amount_minor, p.status, p.stripe_payment_intent_id) for p in payments] == [
        ("card", 2_550, "succeeded", final["payment_reference"])
    ]
    assert refunds == []
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)
    await keep_history(
        temporal_client.get_workflow_handle(funding["workflow_id"]), "WalletFundingWorkflow", "succeeded"
    )


async def test_declined_card_fails_and_credits_nothing(
    app_client: httpx.AsyncClient,
    settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    world = await build_world(settings, card=DECLINING_CARD, wallet_minor=0)
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)

    started = await fund(app_client, headers, wallet["id"], 5_000)
    assert started.status_code == 202, started.text
    final = await wait_funding(app_client, headers, wallet["id"], started.json()["funding_id"])
    assert final["status"] == "failed", final
    assert final["failure_reason"] and final["ledger_reference"] is None and final["refund_reference"] is None
    assert all(pi["status"] != "succeeded" for pi in stripe_intents(localstripe_url, settings, final["funding_id"]))
    assert await db_rows(settings, select(WalletEntry).where(WalletEntry.wallet_id == wallet["id"])) == []
    assert (await company_wallet(app_client, headers, world))["balance_minor"] == 0
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)
    await keep_history(temporal_client.get_workflow_handle(final["workflow_id"]), "WalletFundingWorkflow", "declined")


async def test_no_saved_card_fails_before_any_charge(
    app_client: httpx.AsyncClient, settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(settings, card=None, wallet_minor=0)
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)
    started = await fund(app_client, headers, wallet["id"], 1_000)
    final = await wait_funding(app_client, headers, wallet["id"], started.json()["funding_id"])
    assert final["status"] == "failed" and "carte" in final["failure_reason"], final
    assert stripe_intents(localstripe_url, settings, final["funding_id"]) == []


async def test_wallet_disabled_after_the_charge_refunds_it(
    app_client: httpx.AsyncClient,
    settings: Settings,
    temporal_client: Client,
    stripe_url: str,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    """The ledger refuses the credit (the wallet was disabled while the card was being charged): the charge
    is refunded in full and nothing is credited."""
    world = await build_world(settings, wallet_minor=0)
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)
    fault(stripe_url, "confirm_payment_intent", "latency", latency_ms=2_500)  # the charge takes its time

    started = await fund(app_client, headers, wallet["id"], 4_200)
    assert started.status_code == 202, started.text
    funding_id = started.json()["funding_id"]
    await wait_funding(app_client, headers, wallet["id"], funding_id, until=("charging",))
    disabled = await app_client.patch(
        f"/api/v1/companies/{world.company_id}/wallet", json={"enabled": False}, headers=headers
    )
    assert disabled.status_code == 200, disabled.text

    final = await wait_funding(app_client, headers, wallet["id"], funding_id)
    assert final["status"] == "refunded", final
    assert "désactivé" in final["failure_reason"]
    intents = stripe_intents(localstripe_url, settings, funding_id)
    assert [(pi["status"], pi["amount"]) for pi in intents] == [("succeeded", 4_200)]
    refunds = stripe_refunds(localstripe_url, settings, intents[0]["id"])
    assert [(r["id"], r["amount"], r["status"]) for r in refunds] == [(final["refund_reference"], 4_200, "succeeded")]
    assert await db_rows(settings, select(WalletEntry).where(WalletEntry.wallet_id == wallet["id"])) == []
    audited = await db_rows(
        settings,
        select(AuditLog.action).where(
            AuditLog.target == f"wallet_funding:{funding_id}", AuditLog.action.startswith("wallet_funding.")
        ),
    )
    assert sorted(audited) == ["wallet_funding.charge", "wallet_funding.refund"]
    # Charged then refunded: the charge and its reversal (no document), the Refund row with Stripe's id.
    transactions, payments, refund_rows = await money_rows(settings, final["workflow_id"])
    charge, reversal = sorted(transactions, key=lambda t: t.reverses_id is not None)
    assert (charge.retail_minor, charge.billed_by, charge.invoice_id) == (4_200, "none", None)
    assert (reversal.retail_minor, reversal.reverses_id, reversal.invoice_id) == (-4_200, charge.id, None)
    [payment] = payments
    assert (payment.status, payment.stripe_payment_intent_id) == ("refunded", intents[0]["id"])
    assert [(r.payment_id, r.amount_minor, r.stripe_refund_id, r.status) for r in refund_rows] == [
        (payment.id, 4_200, final["refund_reference"], "succeeded")
    ]
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)
    await keep_history(
        temporal_client.get_workflow_handle(final["workflow_id"]), "WalletFundingWorkflow", "refunded_wallet_disabled"
    )


async def test_same_idempotency_key_twice_charges_once(
    app_client: httpx.AsyncClient, settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(settings, wallet_minor=0)
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)
    key = uuid.uuid4().hex

    first, second = await asyncio.gather(
        fund(app_client, headers, wallet["id"], 3_000, key), fund(app_client, headers, wallet["id"], 3_000, key)
    )
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["funding_id"] == second.json()["funding_id"]
    final = await wait_funding(app_client, headers, wallet["id"], first.json()["funding_id"])
    assert final["status"] == "succeeded", final
    # The same key once more, after the end: the recorded funding, no new workflow, no new charge.
    third = await fund(app_client, headers, wallet["id"], 3_000, key)
    assert third.status_code == 202 and third.json()["funding_id"] == final["funding_id"]
    assert third.json()["status"] == "succeeded"
    # The same key for another amount is refused.
    other = await fund(app_client, headers, wallet["id"], 3_100, key)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key", other.text

    intents = stripe_intents(localstripe_url, settings, final["funding_id"])
    assert [(pi["status"], pi["amount"]) for pi in intents] == [("succeeded", 3_000)]
    count = await db_rows(
        settings, select(func.count()).select_from(WalletFunding).where(WalletFunding.wallet_id == wallet["id"])
    )
    assert count == [1]
    balance = await db_rows(
        settings, select(func.sum(WalletEntry.amount_minor)).join(Wallet).where(Wallet.id == wallet["id"])
    )
    assert balance == [3_000]
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)


async def test_lost_charge_answer_is_retried_under_its_key(
    app_client: httpx.AsyncClient,
    settings: Settings,
    temporal_client: Client,
    stripe_url: str,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    """Stripe charged but its answer was lost: the retry under the same key gets the stored answer, so the
    funding is credited once for one charge."""
    world = await build_world(settings, wallet_minor=0)
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)
    fault(stripe_url, "confirm_payment_intent", "lost_response")
    started = await fund(app_client, headers, wallet["id"], 1_500)
    final = await wait_funding(app_client, headers, wallet["id"], started.json()["funding_id"])
    assert final["status"] == "succeeded", final
    intents = stripe_intents(localstripe_url, settings, final["funding_id"])
    assert [(pi["status"], pi["amount"]) for pi in intents] == [("succeeded", 1_500)]
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)
    await keep_history(
        temporal_client.get_workflow_handle(final["workflow_id"]), "WalletFundingWorkflow", "charge_answer_lost"
    )


async def test_demo_wallet_is_funded_by_the_saved_test_card(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    """What `make run` loads for the demo company: a saved test card and a wallet funded through the workflow."""
    world = await build_world(settings, card=None, wallet_minor=0)
    await add_demo_card(app_client, admin_headers, settings, world.company_id)
    assert await fund_demo_wallet(app_client, admin_headers, world.company_id) == "approvisionné"
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)
    assert wallet["balance_minor"] == DEMO_WALLET_FUNDING_MINOR
    # Loading again changes nothing: the same key answers the same funding.
    assert await fund_demo_wallet(app_client, admin_headers, world.company_id) == "approvisionné"
    assert (await company_wallet(app_client, headers, world))["balance_minor"] == DEMO_WALLET_FUNDING_MINOR
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)


async def test_refund_refused_needs_attention_until_staff_retry_it(
    app_client: httpx.AsyncClient,
    settings: Settings,
    temporal_client: Client,
    stripe_url: str,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    """The credit is refused (wallet disabled during the charge) and Stripe refuses the refund: the funding
    waits in needs_attention, charged and not credited, until staff retry the refund."""
    world = await build_world(settings, wallet_minor=0)
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)
    fault(stripe_url, "confirm_payment_intent", "latency", latency_ms=2_500)
    fault(stripe_url, "create_refund", "reject")

    started = await fund(app_client, headers, wallet["id"], 1_800)
    funding_id = started.json()["funding_id"]
    await wait_funding(app_client, headers, wallet["id"], funding_id, until=("charging",))
    url = f"/api/v1/companies/{world.company_id}/wallet"
    assert (await app_client.patch(url, json={"enabled": False}, headers=headers)).status_code == 200
    stuck = await wait_funding(app_client, headers, wallet["id"], funding_id)
    assert stuck["status"] == "needs_attention" and "remboursement en échec" in stuck["failure_reason"], stuck
    resolution = f"/api/v1/wallets/{wallet['id']}/fundings/{funding_id}/resolution"
    unauthenticated = await app_client.post(
        resolution, json={"action": "retry_refund", "note": "non"}, headers={"Authorization": "Bearer x"}
    )
    assert unauthenticated.status_code == 401

    resolved = await app_client.post(
        resolution, json={"action": "retry_refund", "note": "Stripe rétabli, on relance"}, headers=headers
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "refunded"
    final = await wait_funding(app_client, headers, wallet["id"], funding_id, until=("refunded",))
    intents = stripe_intents(localstripe_url, settings, funding_id)
    refunds = stripe_refunds(localstripe_url, settings, intents[0]["id"])
    assert [(r["id"], r["amount"]) for r in refunds] == [(final["refund_reference"], 1_800)]
    again = await app_client.post(resolution, json={"action": "retry_refund", "note": "encore"}, headers=headers)
    assert again.status_code == 409, again.text
    transactions, _payments, refund_rows = await money_rows(settings, final["workflow_id"])
    assert sorted(t.retail_minor for t in transactions) == [-1_800, 1_800]
    assert [(r.amount_minor, r.stripe_refund_id) for r in refund_rows] == [(1_800, final["refund_reference"])]
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)
    await keep_history(
        temporal_client.get_workflow_handle(final["workflow_id"]), "WalletFundingWorkflow", "needs_attention_resolved"
    )


async def test_end_user_wallet_is_funded_by_the_company_card_when_the_user_has_none(
    app_client: httpx.AsyncClient, settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(settings, wallet_minor=0)
    headers = await headers_for(app_client, world)
    created = await app_client.post(f"/api/v1/end-users/{world.end_user_id}/wallet", json={}, headers=headers)
    assert created.status_code == 201, created.text
    wallet = created.json()
    started = await fund(app_client, headers, wallet["id"], 2_000)
    final = await wait_funding(app_client, headers, wallet["id"], started.json()["funding_id"])
    assert final["status"] == "succeeded", final
    (intent,) = stripe_intents(localstripe_url, settings, final["funding_id"])
    companies = await db_rows(settings, select(Company.stripe_customer_id).where(Company.id == world.company_id))
    assert intent["customer"] == companies[0] and intent["amount"] == 2_000
    got = await app_client.get(f"/api/v1/end-users/{world.end_user_id}/wallet", headers=headers)
    assert got.json()["balance_minor"] == 2_000
    # The company's own wallet is another one: untouched.
    assert (await company_wallet(app_client, headers, world))["balance_minor"] == 0
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)


async def test_cancelled_while_charging_keeps_no_money_apart(
    app_client: httpx.AsyncClient,
    settings: Settings,
    temporal_client: Client,
    stripe_url: str,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    """Staff cancel the workflow while Stripe is charging: the charge in flight is awaited (never abandoned),
    it lands, and it is too late to cancel: the wallet is credited with it. Never charged and not credited."""
    world = await build_world(settings, wallet_minor=0)
    headers = await headers_for(app_client, world)
    wallet = await company_wallet(app_client, headers, world)
    fault(stripe_url, "confirm_payment_intent", "latency", latency_ms=2_000)
    started = await fund(app_client, headers, wallet["id"], 1_200)
    funding = started.json()
    await wait_funding(app_client, headers, wallet["id"], funding["funding_id"], until=("charging",))
    await temporal_client.get_workflow_handle(funding["workflow_id"]).cancel()
    final = await wait_funding(app_client, headers, wallet["id"], funding["funding_id"])
    assert final["status"] == "succeeded", final
    (intent,) = stripe_intents(localstripe_url, settings, funding["funding_id"])
    assert (intent["status"], intent["amount"]) == ("succeeded", 1_200)
    assert stripe_refunds(localstripe_url, settings, intent["id"]) == []
    credits = await db_rows(settings, select(WalletEntry.amount_minor).where(WalletEntry.wallet_id == wallet["id"]))
    assert credits == [1_200]
    transactions, payments, _refunds = await money_rows(settings, funding["workflow_id"])
    assert [t.retail_minor for t in transactions] == [1_200]
    assert [(p.status, p.stripe_payment_intent_id) for p in payments] == [("succeeded", intent["id"])]
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)
