"""The top-up saga's money holes, each closed on the real parts (Temporal, the simulators, localstripe behind
the fault proxy): a SNAIC order poll that fails after the charge, a refund decided once Stripe has forgotten
the charge's idempotency key, a saved card changed between a lost charge answer and its retry, a SNAIC
option that completes after the SLA, and the invariant checker reading Stripe's own amounts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update
from temporalio.client import Client

from bench.invariants import check_invariants, list_all
from bench.topup_world import GOOD_CARD, World, build_world, provision_line
from domain.contracts import snaic_reference
from domain.models import Company, TopUp
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from integrations.stripe_gateway import StripeGateway
from tests.e2e.test_topup import assert_invariants, fault, headers_for, ocs_balances, recharge, save_history
from tests.e2e.topup_support import ApiServer, serve_api, wait_terminal

pytestmark = pytest.mark.usefixtures("worker")

SNAIC_SLA_S = 3
CHARGE_WINDOW_S = 8  # long enough for the held confirmation of the card-change test (2 s) and its retry


@pytest.fixture(scope="module")
def money_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"snaic_callback_sla_s": SNAIC_SLA_S, "topup_charge_window_s": CHARGE_WINDOW_S})


@pytest.fixture(scope="module")
def api_server(money_settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(money_settings, snaic_url)


@pytest_asyncio.fixture
async def http(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
def clean_faults(cfast_url: str, snaic_url: str, ocs_base_url: str, stripe_url: str) -> Iterator[None]:
    yield
    for url in (cfast_url, snaic_url, ocs_base_url, stripe_url):
        httpx.delete(f"{url}/_sim/faults", timeout=5).raise_for_status()
    httpx.post(f"{snaic_url}/_sim/config", json={"callbacks_enabled": True}, timeout=5).raise_for_status()


def stripe_get(localstripe_url: str, settings: Settings, path: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"}
    return httpx.get(f"{localstripe_url}{path}", params=params, headers=headers, timeout=10).raise_for_status().json()


def intents_of(localstripe_url: str, settings: Settings, recharge_id: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"}
    with httpx.Client(base_url=localstripe_url, headers=headers, timeout=10) as client:
        intents = list_all(client, "/v1/payment_intents")
    return [pi for pi in intents if (pi.get("metadata") or {}).get("topup_id") == recharge_id]


def refunded_minor(localstripe_url: str, settings: Settings, payment_intent_id: str) -> int:
    refunds = stripe_get(localstripe_url, settings, "/v1/refunds", payment_intent=payment_intent_id, limit=100)
    return sum(int(r["amount"]) for r in refunds["data"] if r.get("status") == "succeeded")


def update_of(final: dict[str, Any], operation: str) -> dict[str, Any]:
    return next(u for u in final["updates"] if u["operation"] == operation and u["status"] == "ok")


async def wait_for(condition: Any, timeout_s: float = 30, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not met after {timeout_s} s")
        await asyncio.sleep(0.1)


# --- 1. the SNAIC order poll fails after the charge ------------------------------------------------


@pytest.mark.parametrize(
    ("case", "mode", "times", "method"),
    [
        # Refused for good at once (a 4xx: the order is unknown to SNAIC), paid from the wallet.
        ("wallet_refund_snaic_poll_refused", "reject", 1, "wallet"),
        # Unavailable for the poll's whole retry budget (8 attempts), paid by card.
        ("refunded_snaic_poll_unavailable", "error", 8, "card"),
    ],
)
async def test_snaic_order_poll_failing_after_the_charge_compensates(
    http: httpx.AsyncClient,
    money_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
    snaic_url: str,
    case: str,
    mode: str,
    times: int,
    method: str,
) -> None:
    world = await build_world(money_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    # No callback: the workflow polls the order, and every poll fails.
    httpx.post(f"{snaic_url}/_sim/config", json={"callbacks_enabled": False}).raise_for_status()
    fault(snaic_url, "get_order", mode, times=times)

    receipt = (await recharge(http, headers, line_id, method)).json()
    assert receipt["status"] == "charged", receipt
    final = await wait_terminal(http, headers, receipt["recharge_id"], timeout_s=90)
    assert final["status"] == "refunded", final
    assert final["payment_status"] == "refunded"
    assert f"topup-{receipt['recharge_id']}" not in await ocs_balances(money_settings, ocs_base_url, line_id)
    # The option SNAIC may still have made is cancelled, so the line keeps nothing of a refunded top-up.
    snaic_line_id = update_of(final, "add_one_off_option")["sent"]["snaic_line_id"]
    line = httpx.get(f"{snaic_url}/lines/{snaic_line_id}").raise_for_status().json()
    reference = snaic_reference(receipt["workflow_id"], "one-off-option")
    assert [o["status"] for o in line["options"] if o["reference"] == reference] == ["cancelled"]
    await save_history(temporal_client, receipt["workflow_id"], case)
    await assert_invariants(money_settings, world, localstripe_url, ocs_base_url)


# --- 2. a refund decided after Stripe forgot the charge's idempotency key ---------------------------


async def test_refund_after_the_charge_key_expired_refunds_the_charge(
    http: httpx.AsyncClient,
    money_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
    stripe_url: str,
) -> None:
    world = await build_world(money_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    # The charge lands, but every answer to its confirmation is lost: after the charge window (shortened here
    # to CHARGE_WINDOW_S) the outcome is unknown.
    fault(stripe_url, "confirm_payment_intent", "lost_response", times=1000)
    fault(stripe_url, "create_refund", "reject")  # the first refund is refused: staff will retry it

    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"], timeout_s=60)
    assert final["status"] == "needs_attention", final
    assert final["payment_status"] == "refund_failed"
    [charged] = intents_of(localstripe_url, money_settings, receipt["recharge_id"])
    assert charged["status"] == "succeeded"

    # A day later Stripe has forgotten the charge's idempotency key; staff retry the refund.
    httpx.delete(f"{stripe_url}/_sim/faults").raise_for_status()
    httpx.post(f"{stripe_url}/_sim/idempotency/expire").raise_for_status()
    resolved = await http.post(
        f"/api/v1/recharges/{receipt['recharge_id']}/resolution",
        json={"action": "retry_refund", "note": "Stripe de nouveau disponible"},
        headers=headers,
    )
    assert resolved.status_code == 200, resolved.text
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "refunded", final
    assert refunded_minor(localstripe_url, money_settings, charged["id"]) == 100, "the card was charged: refund it"
    # No PaymentIntent was created to find the charge.
    assert [pi["id"] for pi in intents_of(localstripe_url, money_settings, receipt["recharge_id"])] == [charged["id"]]
    await save_history(temporal_client, receipt["workflow_id"], "unknown_charge_outcome_refunded_after_key_expiry")
    await assert_invariants(money_settings, world, localstripe_url, ocs_base_url)


# --- 3. the saved card changes between a lost charge answer and its retry ---------------------------


async def test_saved_card_changed_before_the_charge_retry_charges_the_first_card_once(
    http: httpx.AsyncClient,
    money_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
    stripe_url: str,
) -> None:
    world = await build_world(money_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    engine = create_engine(money_settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            company = await session.get(Company, world.company_id)
            assert company is not None and company.stripe_customer_id and company.stripe_payment_method_id
            customer, first_card = company.stripe_customer_id, company.stripe_payment_method_id
        async with StripeGateway(
            money_settings.stripe_secret_key.get_secret_value(), money_settings.stripe_api_base, 10
        ) as gateway:
            second_card = (
                await gateway.attach_card(customer, GOOD_CARD, f"{world.org_id}:second-card")
            ).payment_method_id

        # The confirmation is held, then applied and its answer lost; meanwhile the customer saves another card.
        fault(stripe_url, "confirm_payment_intent", "lost_response", latency_ms=2000)
        submitted = asyncio.create_task(recharge(http, headers, line_id, "card"))

        def created() -> bool:
            calls = httpx.get(f"{stripe_url}/_sim/calls", params={"op": "create_payment_intent"}).json()
            return any(c["request"].get("metadata[org_id]") == world.org_id for c in calls)

        await wait_for(created, what="the PaymentIntent is created")
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(
                update(Company).where(Company.id == world.company_id).values(stripe_payment_method_id=second_card)
            )
        receipt = (await submitted).json()
    finally:
        await engine.dispose()

    final = await wait_terminal(http, headers, receipt["recharge_id"], timeout_s=60)
    assert final["status"] == "completed", final
    [charged] = intents_of(localstripe_url, money_settings, receipt["recharge_id"])
    assert charged["status"] == "succeeded" and charged["payment_method"] == first_card
    assert final["payment_reference"] == charged["id"]
    await save_history(temporal_client, receipt["workflow_id"], "completed_card_changed_during_lost_charge")
    await assert_invariants(money_settings, world, localstripe_url, ocs_base_url)


async def test_idempotency_error_on_the_charge_retry_is_an_unknown_outcome_refunded(
    http: httpx.AsyncClient,
    money_settings: Settings,
    localstripe_url: str,
    ocs_base_url: str,
    stripe_url: str,
) -> None:
    world = await build_world(money_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    # The confirmation is held, then applied and its answer lost. Meanwhile Stripe forgets the key and another
    # request takes it: the retry's create gets `idempotency_error`, though the first attempt charged.
    fault(stripe_url, "confirm_payment_intent", "lost_response", latency_ms=2000)
    submitted = asyncio.create_task(recharge(http, headers, line_id, "card"))

    def created() -> dict[str, Any] | None:
        calls = httpx.get(f"{stripe_url}/_sim/calls", params={"op": "create_payment_intent"}).json()
        return next((c for c in calls if c["request"].get("metadata[org_id]") == world.org_id), None)

    first = await wait_for(created, what="the PaymentIntent is created")
    httpx.post(f"{stripe_url}/_sim/idempotency/expire").raise_for_status()
    other = httpx.post(
        f"{stripe_url}/v1/payment_intents",
        data={"amount": "1", "currency": "eur", "customer": first["request"]["customer"]},
        headers={
            "Authorization": f"Bearer {money_settings.stripe_secret_key.get_secret_value()}",
            "Idempotency-Key": first["idempotency_key"],
        },
    )
    assert other.status_code == 200, other.text
    receipt = (await submitted).json()

    final = await wait_terminal(http, headers, receipt["recharge_id"], timeout_s=60)
    assert final["status"] == "refunded", final
    [charged] = intents_of(localstripe_url, money_settings, receipt["recharge_id"])
    assert charged["status"] == "succeeded"
    assert refunded_minor(localstripe_url, money_settings, charged["id"]) == 100
    await assert_invariants(money_settings, world, localstripe_url, ocs_base_url)


# --- 4. a SNAIC option that completes after the SLA -------------------------------------------------


async def test_snaic_option_completing_after_the_sla_is_cancelled(
    http: httpx.AsyncClient,
    money_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
    snaic_url: str,
) -> None:
    world = await build_world(money_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    late_ms = (SNAIC_SLA_S + 4) * 1000
    fault(snaic_url, "complete_one_off_option", "latency", latency_ms=late_ms)

    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"], timeout_s=60)
    assert final["status"] == "refunded", final
    accepted = update_of(final, "add_one_off_option")
    order_id, snaic_line_id = accepted["ids_obtained"]["order_id"], accepted["sent"]["snaic_line_id"]

    def completed_late() -> bool:
        calls = httpx.get(f"{snaic_url}/_sim/calls", params={"op": "complete_one_off_option"}).json()
        return any(c["request"].get("order_id") == order_id for c in calls)

    await wait_for(completed_late, timeout_s=late_ms / 1000 + 10, what="SNAIC completes the order late")
    line = httpx.get(f"{snaic_url}/lines/{snaic_line_id}").raise_for_status().json()
    reference = snaic_reference(receipt["workflow_id"], "one-off-option")
    assert [o["status"] for o in line["options"] if o["reference"] == reference] == ["cancelled"]
    await save_history(temporal_client, receipt["workflow_id"], "refunded_snaic_option_cancelled_after_sla")
    await assert_invariants(money_settings, world, localstripe_url, ocs_base_url)


# --- 5. the invariant checker reads Stripe's amounts ------------------------------------------------


async def test_invariants_use_stripe_amounts_and_flag_a_stray_payment(
    http: httpx.AsyncClient, money_settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(money_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "completed", final
    await assert_invariants(money_settings, world, localstripe_url, ocs_base_url)

    async def report_for(only: World) -> list[str]:
        report = await check_invariants(
            database_url=money_settings.database_url,
            localstripe_url=localstripe_url,
            stripe_api_key=money_settings.stripe_secret_key.get_secret_value(),
            ocs_base_url=ocs_base_url,
            ocs_tenant=money_settings.ocs_tenant,
            cfast_url=money_settings.cfast_url,
            org_ids={only.org_id},
        )
        return report.violations

    # Our record says 2.00 €, Stripe charged 1.00 €: Stripe's amount is the truth.
    engine = create_engine(money_settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(update(TopUp).where(TopUp.id == receipt["recharge_id"]).values(amount_minor=200))
            company = await session.get(Company, world.company_id)
            assert company is not None and company.stripe_customer_id and company.stripe_payment_method_id
            customer, card = company.stripe_customer_id, company.stripe_payment_method_id
    finally:
        await engine.dispose()
    violations = await report_for(world)
    assert any(receipt["recharge_id"] in v and "Stripe charged 100" in v for v in violations), violations

    # A succeeded PaymentIntent on the organisation's customer that belongs to no top-up.
    other = await build_world(money_settings)
    async with StripeGateway(
        money_settings.stripe_secret_key.get_secret_value(), money_settings.stripe_api_base, 10
    ) as gateway:
        stray = await gateway.charge_off_session(
            customer, card, 700, "EUR", f"stray-{uuid.uuid4().hex}", {"org_id": world.org_id}
        )
    violations = await report_for(world)
    assert any(stray.payment_intent_id in v and "no top-up" in v for v in violations), violations
    assert await report_for(other) == [], "another organisation's report is not concerned"
