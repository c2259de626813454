"""The subscription API of a line on the real stack (HTTP API → Temporal dev server → worker → localstripe):
the auto-renew switch, renew now by card charged once for a replayed Idempotency-Key, another organisation's
line refused (BOLA), a bad mode refused naming the field."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from bench.invariants import list_all
from bench.topup_world import World, build_world, provision_line
from domain.enums import AutoRenewMode, PlanType
from domain.models import Line, Plan, Transaction, Wallet
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.e2e.test_topup import headers_for
from tests.e2e.topup_support import ApiServer, serve_api

pytestmark = pytest.mark.usefixtures("worker")

PRICE_MINOR = 1500


@pytest.fixture(scope="module")
def api_server(settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(settings, snaic_url)


@pytest_asyncio.fixture
async def http(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=90) as client:
        yield client


async def card_paying_line(settings: Settings) -> tuple[World, str]:
    """A line on a prepaid plan renewing automatically, whose company pays by its saved card (no wallet)."""
    world = await build_world(settings, wallet_minor=0)
    line_id = await provision_line(world)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            plan = Plan(
                org_id=world.org_id,
                name="Basique 5 Go",
                plan_type=PlanType.PREPAID,
                price_minor=PRICE_MINOR,
                validity_days=30,
                carrier="Orange",
                auto_renew_mode=AutoRenewMode.ON,
            )
            session.add(plan)
            await session.flush()
            line = await session.get(Line, line_id)
            assert line is not None
            line.plan_id = plan.id
            line.next_renewal_on = (datetime.now(UTC) + timedelta(days=20)).date()
            for wallet in (await session.execute(select(Wallet).where(Wallet.org_id == world.org_id))).scalars():
                wallet.enabled = False
    finally:
        await engine.dispose()
    return world, line_id


def charges_of(settings: Settings, localstripe_url: str, workflow_id: str) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}"}
    with httpx.Client(base_url=localstripe_url, headers=headers, timeout=30) as client:
        intents = list_all(client, "/v1/payment_intents")
    return [pi for pi in intents if pi.get("status") == "succeeded" and _renews(pi, workflow_id)]


def _renews(intent: dict[str, object], workflow_id: str) -> bool:
    metadata = intent.get("metadata") or {}
    assert isinstance(metadata, dict)
    return metadata.get("subscription_id") is not None and metadata.get("org_id") == workflow_id.split("/")[1]


async def transactions_of(settings: Settings, workflow_id: str) -> list[Transaction]:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            found = await session.execute(select(Transaction).where(Transaction.reference.startswith(workflow_id)))
            return list(found.scalars())
    finally:
        await engine.dispose()


async def test_auto_renew_switch_and_renew_now_charges_the_card_once(
    http: httpx.AsyncClient, settings: Settings, localstripe_url: str
) -> None:
    world, line_id = await card_paying_line(settings)
    headers = await headers_for(http, world)

    switched = await http.put(f"/api/v1/lines/{line_id}/auto-renew", json={"mode": "prompt"}, headers=headers)
    assert switched.status_code == 200, switched.text
    body = switched.json()
    assert (body["auto_renew_mode"], body["status"], body["period"]) == ("prompt", "active", 0)
    assert body["payment_method"] == "card"
    assert body["workflow_id"] == f"subscription/{world.org_id}/{line_id}"
    assert body["workflow_id"].replace("/", "%2F") in body["workflow_url"]
    assert [r["days_before"] for r in body["upcoming_reminders"]] == [10, 5]

    read = await http.get(f"/api/v1/lines/{line_id}/subscription", headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["auto_renew_mode"] == "prompt"

    key = {"Idempotency-Key": f"renew-{uuid.uuid4().hex}"}
    first = await http.post(f"/api/v1/lines/{line_id}/renewals", headers=headers | key)
    assert first.status_code == 201, first.text
    renewal = first.json()
    assert (renewal["period"], renewal["amount_minor"], renewal["currency"]) == (1, PRICE_MINOR, "EUR")
    assert renewal["transaction_reference"] == f"{body['workflow_id']}:period-1:charge"
    assert renewal["period_start"] == body["next_renewal_on"]

    replayed = await http.post(f"/api/v1/lines/{line_id}/renewals", headers=headers | key)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == renewal

    after = (await http.get(f"/api/v1/lines/{line_id}/subscription", headers=headers)).json()
    assert (after["period"], after["next_renewal_on"]) == (1, renewal["period_end"])
    intents = charges_of(settings, localstripe_url, body["workflow_id"])
    assert [pi["amount"] for pi in intents] == [PRICE_MINOR]
    transactions = await transactions_of(settings, body["workflow_id"])
    assert [(t.reference, t.retail_minor) for t in transactions] == [(renewal["transaction_reference"], PRICE_MINOR)]
    # Paid by card: simflow issues the receipt, paid at once with the PaymentIntent as its payment reference.
    receipts = await http.get("/api/v1/invoices", params={"company_id": world.company_id}, headers=headers)
    assert receipts.status_code == 200, receipts.text
    assert [(i["status"], i["total_minor"], i["payment_reference"]) for i in receipts.json()["items"]] == [
        ("paid", PRICE_MINOR, intents[0]["id"])
    ]

    # A new key is a new request: it pays the following period.
    second = await http.post(
        f"/api/v1/lines/{line_id}/renewals", headers=headers | {"Idempotency-Key": f"renew-{uuid.uuid4().hex}"}
    )
    assert second.status_code == 201, second.text
    assert second.json()["period"] == 2
    assert len(charges_of(settings, localstripe_url, body["workflow_id"])) == 2


async def test_bad_mode_is_refused_naming_the_field_and_changes_nothing(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    world, line_id = await card_paying_line(settings)
    headers = await headers_for(http, world)
    refused = await http.put(f"/api/v1/lines/{line_id}/auto-renew", json={"mode": "sometimes"}, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "mode" in {error["field"] for error in refused.json()["errors"]}
    missing_key = await http.post(f"/api/v1/lines/{line_id}/renewals", headers=headers)
    assert missing_key.status_code == 422, missing_key.text
    none_yet = await http.get(f"/api/v1/lines/{line_id}/subscription", headers=headers)
    assert none_yet.status_code == 404, none_yet.text


async def test_another_organisations_line_is_not_found(http: httpx.AsyncClient, settings: Settings) -> None:
    _, line_id = await card_paying_line(settings)
    intruder, _ = await card_paying_line(settings)
    headers = await headers_for(http, intruder)
    key = {"Idempotency-Key": f"renew-{uuid.uuid4().hex}"}
    answers = [
        await http.get(f"/api/v1/lines/{line_id}/subscription", headers=headers),
        await http.put(f"/api/v1/lines/{line_id}/auto-renew", json={"mode": "off"}, headers=headers),
        await http.post(f"/api/v1/lines/{line_id}/renewals", headers=headers | key),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404], [a.text for a in answers]
    assert {a.json()["code"] for a in answers} == {"resource.not_found"}


async def test_renew_now_starts_the_subscription_workflow_the_reconciler_has_not_started(
    http: httpx.AsyncClient, settings: Settings, localstripe_url: str
) -> None:
    world, line_id = await card_paying_line(settings)
    headers = await headers_for(http, world)
    assert (await http.get(f"/api/v1/lines/{line_id}/subscription", headers=headers)).status_code == 404
    renewed = await http.post(
        f"/api/v1/lines/{line_id}/renewals", headers=headers | {"Idempotency-Key": f"renew-{uuid.uuid4().hex}"}
    )
    assert renewed.status_code == 201, renewed.text
    assert (renewed.json()["period"], renewed.json()["amount_minor"]) == (1, PRICE_MINOR)
    assert len(charges_of(settings, localstripe_url, renewed.json()["workflow_id"])) == 1
