"""Cards saved in the product pay card recharges (the real top-up workflow, Temporal, worker, simulators
and localstripe): the default card is the one charged, a declining default ends the recharge `failed`
with nothing credited; and each organisation's Stripe account carries only its own charges and refunds."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update

from api.demo_data import add_demo_card
from bench.topup_world import World, build_world, provision_line
from domain.models import Organisation, StripeEvent
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.card_support import save_card
from tests.e2e.test_topup import assert_invariants, fault, headers_for, ocs_balances, recharge, signed
from tests.e2e.topup_support import ApiServer, serve_api, wait_terminal

pytestmark = pytest.mark.usefixtures("worker")

GOOD = "4242424242424242"
DECLINING = "4000000000000341"


@pytest.fixture(scope="module")
def api_server(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings.model_copy(update={"snaic_callback_sla_s": 3}), snaic_url)


@pytest_asyncio.fixture
async def http(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
def clean_faults(ocs_base_url: str, stripe_url: str) -> Iterator[None]:
    yield
    for url in (ocs_base_url, stripe_url):
        httpx.delete(f"{url}/_sim/faults", timeout=5).raise_for_status()


def _cards(world: World) -> str:
    return f"/api/v1/companies/{world.company_id}/payment-methods"


async def _set_account(settings: Settings, org_id: str, account: str | None) -> None:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(
                update(Organisation).where(Organisation.id == org_id).values(stripe_account_ref=account)
            )
    finally:
        await engine.dispose()


def _stripe(localstripe_url: str, settings: Settings, path: str) -> dict[str, Any]:
    key = settings.stripe_secret_key.get_secret_value()
    answer: dict[str, Any] = httpx.get(
        f"{localstripe_url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    return answer


def _calls(stripe_url: str, op: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{stripe_url}/_sim/calls", params={"op": op}, timeout=10).json()
    return calls


async def test_a_declining_default_card_fails_the_recharge_and_credits_nothing(
    http: httpx.AsyncClient, settings: Settings, localstripe_url: str, ocs_base_url: str, stripe_url: str
) -> None:
    world = await build_world(settings, card=None)  # no card: saved below through the portal's API
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    no_card = (await recharge(http, headers, line_id, "card")).json()
    assert no_card["status"] == "failed" and "aucune carte" in no_card["failure_reason"], no_card

    good = await save_card(http, headers, _cards(world), localstripe_url, GOOD)
    declining = await save_card(http, headers, _cards(world), localstripe_url, DECLINING)
    made = await http.post(f"{_cards(world)}/{declining['id']}/default", headers=headers)
    assert made.status_code == 200, made.text

    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "failed" and final["payment_status"] == "declined", final
    assert await ocs_balances(settings, ocs_base_url, line_id) == {}
    charged = [
        c["request"]["payment_method"]
        for c in _calls(stripe_url, "create_payment_intent")
        if c["request"].get("metadata[topup_id]") == final["recharge_id"]
    ]
    assert charged == [declining["stripe_payment_method_id"]]  # the default card, and only it

    # the other saved card made default: the next recharge is charged on it and credited
    assert (await http.post(f"{_cards(world)}/{good['id']}/default", headers=headers)).status_code == 200
    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "completed", final
    intent = _stripe(localstripe_url, settings, f"/v1/payment_intents/{final['payment_reference']}")
    assert intent["payment_method"] == good["stripe_payment_method_id"] and intent["status"] == "succeeded"
    assert (await ocs_balances(settings, ocs_base_url, line_id))[f"topup-{receipt['recharge_id']}"] > 0
    await assert_invariants(settings, world, localstripe_url, ocs_base_url)


async def test_two_organisations_money_never_mixes(
    http: httpx.AsyncClient, settings: Settings, localstripe_url: str, ocs_base_url: str, stripe_url: str
) -> None:
    """localstripe has no Stripe Connect (one store whatever the account): what this proves is that every
    request for an organisation's money is sent to that organisation's account (the `Stripe-Account`
    header the fault proxy records), that a refund touches only its own PaymentIntent, and that a webhook
    from one account is never matched to another organisation's top-up."""
    worlds = [await build_world(settings, card=None) for _ in range(2)]
    accounts = [f"acct_{uuid.uuid4().hex[:16]}" for _ in worlds]
    receipts = []
    for world, account in zip(worlds, accounts, strict=True):
        await _set_account(settings, world.org_id, account)
        line_id = await provision_line(world)
        headers = await headers_for(http, world)
        await save_card(http, headers, _cards(world), localstripe_url, GOOD)
        if world is worlds[0]:
            fault(ocs_base_url, "APIerSv1.SetBalance", "reject")  # credit refused after the charge: refund
        receipt = (await recharge(http, headers, line_id, "card")).json()
        receipts.append(await wait_terminal(http, headers, receipt["recharge_id"], timeout_s=90))
    refunded, completed = receipts
    assert refunded["status"] == "refunded" and completed["status"] == "completed", receipts

    for final, account in zip(receipts, accounts, strict=True):
        created = [
            c
            for c in _calls(stripe_url, "create_payment_intent")
            if c["request"].get("metadata[topup_id]") == final["recharge_id"]
        ]
        assert created and {c["request"].get("_stripe_account") for c in created} == {account}
        confirmed = [c for c in _calls(stripe_url, "confirm_payment_intent") if c.get("idempotency_key", "")]
        mine = [c for c in confirmed if str(final["workflow_id"]) in str(c["idempotency_key"])]
        assert mine and {c["request"].get("_stripe_account") for c in mine} == {account}
    refunds = [c for c in _calls(stripe_url, "create_refund") if c["applied"]]
    ours = [c for c in refunds if c["request"].get("_stripe_account") in accounts]
    assert [(c["request"]["payment_intent"], c["request"]["_stripe_account"]) for c in ours] == [
        (refunded["payment_reference"], accounts[0])
    ]
    first = _stripe(localstripe_url, settings, f"/v1/payment_intents/{refunded['payment_reference']}")
    second = _stripe(localstripe_url, settings, f"/v1/payment_intents/{completed['payment_reference']}")
    assert first["metadata"]["org_id"] == worlds[0].org_id and second["metadata"]["org_id"] == worlds[1].org_id
    refunds_of = {
        final["recharge_id"]: _stripe(
            localstripe_url, settings, f"/v1/refunds?payment_intent={final['payment_reference']}"
        )
        for final in receipts
    }
    assert len(refunds_of[refunded["recharge_id"]]["data"]) == 1  # in localstripe's own records
    assert refunds_of[completed["recharge_id"]]["data"] == []

    # a webhook about the first organisation's PaymentIntent, sent from the second one's account, is not its
    secret = settings.stripe_webhook_secret.get_secret_value()
    event_ids = {}
    for name, account in (("foreign", accounts[1]), ("own", accounts[0])):
        event_ids[name] = f"evt_{uuid.uuid4().hex[:16]}"
        payload = json.dumps(
            {
                "id": event_ids[name],
                "type": "charge.refunded",
                "account": account,
                "created": int(time.time()),
                "data": {"object": {"object": "charge", "payment_intent": refunded["payment_reference"]}},
            }
        ).encode()
        answer = await http.post(
            "/api/v1/stripe/webhook", content=payload, headers={"Stripe-Signature": signed(payload, secret)}
        )
        assert answer.status_code == 200, answer.text
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            foreign = await session.get(StripeEvent, event_ids["foreign"])
            own = await session.get(StripeEvent, event_ids["own"])
            assert foreign is not None and foreign.topup_id is None and not foreign.routed
            assert own is not None and own.topup_id == refunded["recharge_id"]
    finally:
        await engine.dispose()
    for world in worlds:
        await assert_invariants(settings, world, localstripe_url, ocs_base_url)


async def test_the_demo_company_gets_a_saved_default_test_card(http: httpx.AsyncClient, settings: Settings) -> None:
    world = await build_world(settings, card=None)
    headers = await headers_for(http, world)
    await add_demo_card(http, headers, settings, world.company_id)
    listed = (await http.get(_cards(world), headers=headers)).json()
    assert [(c["brand"], c["last4"], c["is_default"]) for c in listed["items"]] == [("visa", "4242", True)]
