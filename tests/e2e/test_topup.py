"""Top-up / recharge DATA end to end: HTTP API → Temporal → worker → SNAIC/OCS/CFAST simulators and
localstripe, under injected faults. After every test the money invariants I1–I6 are computed from the
outside systems' own records."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.converter import decode_typed_search_attributes

from bench.invariants import check_invariants
from bench.topup_world import DECLINING_CARD, STAFF_PASSWORD, World, build_world, provision_line
from domain.models import Invoice, Notification, Payment, Refund, Transaction, UpdateRecord, Wallet, WalletEntry
from domain.outbox_contracts import OutboxRelay
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.conftest import SmtpSink
from tests.e2e.lifecycle_support import keep_history
from tests.e2e.topup_support import ApiServer, serve_api, wait_terminal
from workflows._search import BUSINESS_STATUS
from workflows.outbox_relay import OutboxRelayWorkflow
from workflows.topup import TopUpWorkflow

pytestmark = pytest.mark.usefixtures("worker")

SNAIC_SLA_S = 3
HISTORIES = Path(__file__).resolve().parent.parent / "replay" / "histories"


@pytest.fixture(scope="module")
def topup_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"snaic_callback_sla_s": SNAIC_SLA_S})


@pytest.fixture(scope="module")
def api_server(topup_settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(topup_settings, snaic_url)


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


async def headers_for(http: httpx.AsyncClient, world: World) -> dict[str, str]:
    token = await http.post("/api/v1/auth/token", data={"username": world.staff_email, "password": STAFF_PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def fault(url: str, op: str, mode: str, times: int = 1, latency_ms: int = 0) -> None:
    body = {"op": op, "mode": mode, "times": times, "latency_ms": latency_ms}
    httpx.post(f"{url}/_sim/faults", json=body, timeout=5).raise_for_status()


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


async def recharge(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    line_id: str,
    method: str,
    data_gb: int = 2,
    key: str | None = None,
) -> httpx.Response:
    return await http.post(
        f"/api/v1/lines/{line_id}/recharges",
        json={"data_gb": data_gb, "payment_method": method},
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def save_history(client: Client, workflow_id: str, case: str) -> None:
    """With SIMFLOW_RECORD_HISTORIES=1, stores the run's history for the replay test, under the case name
    prefixed by SIMFLOW_HISTORY_CASE_PREFIX (the generation of the command sequence). A history already
    kept is never overwritten: running workflows of that shape must go on replaying."""
    if os.environ.get("SIMFLOW_RECORD_HISTORIES") != "1":
        return
    path = HISTORIES / f"TopUpWorkflow__{os.environ.get('SIMFLOW_HISTORY_CASE_PREFIX', '')}{case}.json"
    if path.exists():
        return
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    HISTORIES.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1))


async def db_scalar(settings: Settings, query):  # type: ignore[no-untyped-def]
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return (await session.execute(query)).scalar_one()
    finally:
        await engine.dispose()


async def db_rows(settings: Settings, query):  # type: ignore[no-untyped-def]
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return [tuple(row) for row in (await session.execute(query)).all()]
    finally:
        await engine.dispose()


async def ocs_balances(settings: Settings, ocs_base_url: str, line_id: str) -> dict[str, float]:
    engine = create_engine(settings.database_url)
    from domain.models import Line

    try:
        async with create_sessionmaker(engine)() as session:
            line = await session.get(Line, line_id)
            assert line is not None
            account = line.ocs_account
    finally:
        await engine.dispose()
    reply = httpx.post(
        f"{ocs_base_url}/jsonrpc",
        json={
            "method": "APIerSv2.GetAccount",
            "params": [{"Tenant": settings.ocs_tenant, "Account": account}],
            "id": 1,
        },
    ).json()
    balances = (((reply["result"] or {}).get("BalanceMap") or {}).get("*data")) or []
    return {b["ID"]: b["Value"] for b in balances}


# --- happy paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["card", "wallet", "account"])
async def test_recharge_completes_for_each_payment_method(
    http: httpx.AsyncClient,
    topup_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
    cfast_url: str,
    smtp_sink: SmtpSink,
    method: str,
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)

    response = await recharge(http, headers, line_id, method, data_gb=2)
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["amount_minor"] == 100 and receipt["currency"] == "EUR"
    assert receipt["payment_status"] == ("on_account" if method == "account" else "succeeded")
    assert receipt["workflow_id"] == f"topup/{world.org_id}/{receipt['recharge_id']}"

    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "completed", final
    balances = await ocs_balances(topup_settings, ocs_base_url, line_id)
    assert balances[f"topup-{receipt['recharge_id']}"] == 2 * 1_073_741_824

    # The deployment's MAJ history: what was pushed to each system, with the answers.
    systems = {(u["system"], u["operation"]) for u in final["updates"]}  # type: ignore[union-attr]
    assert ("snaic", "add_one_off_option") in systems and ("snaic", "one_off_option_result") in systems
    assert ("cfast", "add_one_off_article") in systems and ("ocs", "credit_data") in systems
    assert all(u["status"] == "ok" for u in final["updates"])  # type: ignore[union-attr]

    # The charge is a transaction. By card or wallet simflow issues the receipt: a paid invoice carrying the
    # payment reference. On account CFAST bills the article: no simflow document.
    wf = receipt["workflow_id"]
    charge = await db_scalar(topup_settings, select(Transaction).where(Transaction.reference == f"{wf}:transaction"))
    assert (charge.retail_minor, charge.tax_minor) == (100, 17)
    invoices = await db_scalar(
        topup_settings, select(func.count()).select_from(Invoice).where(Invoice.reference == f"{wf}:invoice")
    )
    if method == "account":
        assert invoices == 0 and charge.billed_by == "cfast" and charge.invoice_id is None
    else:
        invoice_ref = await db_scalar(
            topup_settings, select(Invoice.payment_reference).where(Invoice.reference == f"{wf}:invoice")
        )
        assert invoice_ref == final["payment_reference"] and charge.invoice_id is not None
        if method == "card":
            assert str(invoice_ref).startswith("pi_")
    if method == "wallet":
        balance = await db_scalar(
            topup_settings,
            select(func.sum(WalletEntry.amount_minor)).join(Wallet).where(Wallet.company_id == world.company_id),
        )
        assert balance == 10_000 - 100
    service = httpx.get(f"{cfast_url}/services/{_cfast_service(final)}").json()
    billed = [a for a in service["oneOffArticles"] if a["reference"] == f"topup:{receipt['recharge_id']}"]
    assert len(billed) == 1 and billed[0]["quantity"] == 2
    assert billed[0]["unitPrice"] == (50 if method == "account" else 0)
    notices = await db_scalar(
        topup_settings, select(func.count()).select_from(Notification).where(Notification.org_id == world.org_id)
    )
    assert notices == (1 if method == "account" else 2)  # by card or wallet, the receipt invoice is mailed too
    if method == "card":  # the receipt is really mailed: the outbox relay sends it to the SMTP sink
        await temporal_client.execute_workflow(
            OutboxRelayWorkflow.run,
            OutboxRelay(poll_s=0.2, stop_when_idle=True),
            id=f"outbox-relay-topup-{uuid.uuid4().hex[:8]}",
            task_queue=topup_settings.task_queue,
        )
        notice = await db_scalar(
            topup_settings,
            select(Notification).where(
                Notification.org_id == world.org_id, Notification.reference == f"{wf}:notify-completed"
            ),
        )
        assert notice.sent_at is not None and notice.recipient
        [mail] = [m for m in smtp_sink.messages(to=notice.recipient) if m["subject"] == notice.subject]
        assert mail["message_id"] == f"<notifications.{notice.id}@simflow.local>"
        # The receipt invoice, to the same address, with its PDF.
        number = await db_scalar(topup_settings, select(Invoice.number).where(Invoice.reference == f"{wf}:invoice"))
        [invoice_mail] = [
            m for m in smtp_sink.messages(to=notice.recipient) if m["subject"] == f"Votre facture F-{number:06d}"
        ]
        assert [a["filename"] for a in invoice_mail["attachments"]] == [f"facture-F-{number:06d}.pdf"]
    # BusinessStatus shows the phase (one visibility write per phase); the step is in the details.
    handle = temporal_client.get_workflow_handle(receipt["workflow_id"])
    assert (await handle.describe()).typed_search_attributes.get(BUSINESS_STATUS) == "completed"
    shown = [
        decode_typed_search_attributes(e.upsert_workflow_search_attributes_event_attributes.search_attributes).get(
            BUSINESS_STATUS
        )
        for e in (await handle.fetch_history()).events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    # (other upserts carry the patch markers' TemporalChangeVersion)
    assert [status for status in shown if status is not None] == ["charging", "provisioning", "completed"]
    await save_history(temporal_client, receipt["workflow_id"], f"completed_{method}")
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


def _cfast_service(final: dict[str, object]) -> str:
    for update in final["updates"]:  # type: ignore[attr-defined]
        if update["system"] == "cfast" and update["operation"] == "add_one_off_article":
            return str(update["sent"]["cfast_service_id"])
    raise AssertionError("no CFAST article pushed")


async def test_missing_snaic_and_cfast_ids_are_fetched_on_the_fly(
    http: httpx.AsyncClient, topup_settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world, record_ids=False)
    headers = await headers_for(http, world)
    receipt = (await recharge(http, headers, line_id, "card", data_gb=1)).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "completed", final
    fetched = [u for u in final["updates"] if u["operation"] == "fetch_line_ids"]  # type: ignore[union-attr]
    assert set(fetched[0]["ids_obtained"]) == {"snaic_line_id", "cfast_service_id"}
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


# --- payment refused: nothing moves -------------------------------------------------------------


async def test_declined_card_fails_and_credits_nothing(
    http: httpx.AsyncClient,
    topup_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    world = await build_world(topup_settings, card=DECLINING_CARD)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    response = await recharge(http, headers, line_id, "card")
    receipt = response.json()
    assert receipt["status"] == "failed" and receipt["payment_status"] == "declined", receipt
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "failed"
    assert await ocs_balances(topup_settings, ocs_base_url, line_id) == {}
    await save_history(temporal_client, receipt["workflow_id"], "failed_declined")
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


async def test_insufficient_wallet_fails_without_debit(
    http: httpx.AsyncClient, topup_settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(topup_settings, wallet_minor=60, min_balance_minor=0)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    receipt = (await recharge(http, headers, line_id, "wallet", data_gb=2)).json()
    assert receipt["status"] == "failed" and receipt["payment_status"] == "declined", receipt
    assert "solde insuffisant" in receipt["failure_reason"]
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


# --- failures after payment: refunded exactly once ----------------------------------------------


@pytest.mark.parametrize(
    ("case", "system", "op", "mode", "method"),
    [
        ("ocs_failure", "ocs", "APIerSv1.SetBalance", "reject", "card"),
        ("snaic_rejection", "snaic", "complete_one_off_option", "reject", "card"),
        ("snaic_refused", "snaic", "add_one_off_option", "reject", "wallet"),
        ("snaic_no_answer", "snaic", "complete_one_off_option", "timeout", "card"),
        ("cfast_failure", "cfast", "add_one_off_article", "reject", "card"),
        ("ocs_failure_account", "ocs", "APIerSv1.SetBalance", "reject", "account"),
    ],
)
async def test_failure_after_payment_refunds_exactly_once(
    http: httpx.AsyncClient,
    topup_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
    snaic_url: str,
    cfast_url: str,
    case: str,
    system: str,
    op: str,
    mode: str,
    method: str,
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    url = {"ocs": ocs_base_url, "snaic": snaic_url, "cfast": cfast_url}[system]
    fault(url, op, mode, times=1, latency_ms=600_000 if mode == "timeout" else 0)
    if case == "snaic_no_answer":
        httpx.post(f"{snaic_url}/_sim/config", json={"callbacks_enabled": False}).raise_for_status()

    receipt = (await recharge(http, headers, line_id, method)).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"], timeout_s=90)
    assert final["status"] == "refunded", final
    assert final["payment_status"] == "refunded"
    assert f"topup-{receipt['recharge_id']}" not in await ocs_balances(topup_settings, ocs_base_url, line_id)
    errors = [u for u in final["updates"] if u["status"] == "error"]  # type: ignore[union-attr]
    assert errors, "the failing push is recorded in the MAJ history"
    # The charge and its reversal are transactions; the refund is a Refund row of the payment.
    wf = receipt["workflow_id"]
    moves = await db_rows(
        topup_settings,
        select(Transaction.reference, Transaction.retail_minor).where(Transaction.reference.like(f"{wf}:%")),
    )
    assert sorted(amount for _ref, amount in moves) == [-100, 100], moves
    refund = await db_scalar(topup_settings, select(Refund).where(Refund.reference == f"{wf}:refund"))
    assert refund.amount_minor == 100 and refund.status == "succeeded"
    if method == "card":
        assert str(refund.stripe_refund_id).startswith("re_")
    await save_history(temporal_client, receipt["workflow_id"], f"refunded_{case}")
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


async def test_snaic_callback_lost_completes_by_polling(
    http: httpx.AsyncClient, topup_settings: Settings, localstripe_url: str, ocs_base_url: str, snaic_url: str
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    httpx.post(f"{snaic_url}/_sim/config", json={"callbacks_enabled": False}).raise_for_status()
    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"], timeout_s=60)
    assert final["status"] == "completed", final
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


async def test_refund_failure_needs_attention_then_staff_resolve(
    http: httpx.AsyncClient,
    topup_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
    stripe_url: str,
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    fault(ocs_base_url, "APIerSv1.SetBalance", "reject")
    fault(stripe_url, "create_refund", "reject")
    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "needs_attention", final
    assert final["payment_status"] == "refund_failed"

    # Staff retry the refund once Stripe answers again: the top-up ends refunded, one refund.
    httpx.delete(f"{stripe_url}/_sim/faults").raise_for_status()
    bad = await http.post(
        f"/api/v1/recharges/{receipt['recharge_id']}/resolution", json={"action": "guess", "note": "?"}, headers=headers
    )
    assert bad.status_code == 422
    resolved = await http.post(
        f"/api/v1/recharges/{receipt['recharge_id']}/resolution",
        json={"action": "retry_refund", "note": "Stripe de nouveau disponible"},
        headers=headers,
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "refunded", resolved.json()
    final = await wait_terminal(http, headers, receipt["recharge_id"], until=("refunded",))
    assert final["payment_status"] == "refunded"
    again = await http.post(
        f"/api/v1/recharges/{receipt['recharge_id']}/resolution",
        json={"action": "retry_refund", "note": "encore"},
        headers=headers,
    )
    assert again.status_code == 409
    # One refund row and one reversal, however many attempts the refund took.
    wf = receipt["workflow_id"]
    refunds = await db_rows(topup_settings, select(Refund.stripe_refund_id).where(Refund.reference.like(f"{wf}:%")))
    assert len(refunds) == 1 and str(refunds[0][0]).startswith("re_")
    moves = await db_rows(topup_settings, select(Transaction.retail_minor).where(Transaction.reference.like(f"{wf}:%")))
    assert sorted(m for (m,) in moves) == [-100, 100]
    await save_history(temporal_client, receipt["workflow_id"], "needs_attention_resolved")
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


# --- lost responses: the effect applied, the answer lost — never twice ---------------------------


@pytest.mark.parametrize(
    ("where", "op"),
    [
        ("stripe", "create_payment_intent"),
        ("stripe", "confirm_payment_intent"),
        ("ocs", "APIerSv1.SetBalance"),
        ("snaic", "add_one_off_option"),
        ("cfast", "add_one_off_article"),
    ],
)
async def test_lost_responses_never_duplicate(
    http: httpx.AsyncClient,
    topup_settings: Settings,
    localstripe_url: str,
    ocs_base_url: str,
    stripe_url: str,
    snaic_url: str,
    cfast_url: str,
    where: str,
    op: str,
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    fault(
        {"stripe": stripe_url, "ocs": ocs_base_url, "snaic": snaic_url, "cfast": cfast_url}[where], op, "lost_response"
    )
    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "completed", final
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


async def test_lost_refund_response_refunds_once(
    http: httpx.AsyncClient, topup_settings: Settings, localstripe_url: str, ocs_base_url: str, stripe_url: str
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    fault(ocs_base_url, "APIerSv1.SetBalance", "reject")
    fault(stripe_url, "create_refund", "lost_response")
    receipt = (await recharge(http, headers, line_id, "card")).json()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "refunded", final
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


# --- duplicates and concurrency ------------------------------------------------------------------


async def test_same_key_twenty_concurrent_submits_make_one_recharge(
    http: httpx.AsyncClient, topup_settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    key = f"key-{uuid.uuid4().hex}"
    responses = await asyncio.gather(*(recharge(http, headers, line_id, "card", key=key) for _ in range(20)))
    assert {r.status_code for r in responses} <= {200, 201}, [r.text for r in responses if r.status_code >= 300]
    assert sum(r.status_code == 201 for r in responses) == 1
    assert len({r.json()["recharge_id"] for r in responses}) == 1
    final = await wait_terminal(http, headers, responses[0].json()["recharge_id"])
    assert final["status"] == "completed"

    again = await recharge(http, headers, line_id, "card", key=key)
    assert again.status_code == 200 and again.json()["status"] == "completed"
    other_body = await recharge(http, headers, line_id, "card", data_gb=3, key=key)
    assert other_body.status_code == 422
    assert other_body.json()["errors"][0]["field"] == "Idempotency-Key"
    payments = await db_scalar(
        topup_settings, select(func.count()).select_from(Payment).where(Payment.org_id == world.org_id)
    )
    assert payments == 1
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


async def test_bad_recharge_input_names_the_field_and_changes_nothing(
    http: httpx.AsyncClient, topup_settings: Settings
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    cases = [
        ({"data_gb": 0, "payment_method": "card"}, "data_gb"),
        ({"data_gb": 1000, "payment_method": "card"}, "data_gb"),
        ({"data_gb": 1, "payment_method": "cash"}, "payment_method"),
        ({"data_gb": 1, "payment_method": "card", "amount_minor": 1}, "amount_minor"),
    ]
    for body, field in cases:
        response = await http.post(
            f"/api/v1/lines/{line_id}/recharges", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
        )
        assert response.status_code == 422, response.text
        assert any(e["field"] == field for e in response.json()["errors"]), response.json()
    short_key = await http.post(
        f"/api/v1/lines/{line_id}/recharges",
        json={"data_gb": 1, "payment_method": "card"},
        headers={**headers, "Idempotency-Key": "x"},
    )
    assert short_key.status_code == 422 and short_key.json()["errors"][0]["field"] == "Idempotency-Key"
    other_org = await build_world(topup_settings)
    foreign = await http.post(
        f"/api/v1/lines/{line_id}/recharges",
        json={"data_gb": 1, "payment_method": "card"},
        headers={**await headers_for(http, other_org), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert foreign.status_code == 404
    count = await db_scalar(
        topup_settings, select(func.count()).select_from(UpdateRecord).where(UpdateRecord.org_id == world.org_id)
    )
    assert count == 0


# --- cancellation mid-saga ----------------------------------------------------------------------


async def test_cancellation_mid_saga_compensates(
    http: httpx.AsyncClient,
    topup_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
    snaic_url: str,
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    # SNAIC accepts the order and never completes it: the saga waits for the supplier.
    httpx.post(f"{snaic_url}/_sim/config", json={"callbacks_enabled": False}).raise_for_status()
    fault(snaic_url, "complete_one_off_option", "timeout", latency_ms=600_000)
    receipt = (await recharge(http, headers, line_id, "card")).json()
    handle = temporal_client.get_workflow_handle_for(TopUpWorkflow.run, receipt["workflow_id"])
    for _ in range(100):
        if (await handle.query(TopUpWorkflow.receipt)).status == "charged":
            break
        await asyncio.sleep(0.05)
    await handle.cancel()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "refunded", final
    assert f"topup-{receipt['recharge_id']}" not in await ocs_balances(topup_settings, ocs_base_url, line_id), [
        (u["operation"], u["status"], u["error"]) for u in final["updates"]
    ]
    assert f"topup-{receipt['recharge_id']}" not in await ocs_balances(topup_settings, ocs_base_url, line_id)
    await save_history(temporal_client, receipt["workflow_id"], "refunded_cancelled")
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


# --- Stripe webhooks ----------------------------------------------------------------------------


def signed(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    import hashlib
    import hmac
    import time

    t = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={signature}"


async def test_stripe_webhooks_are_verified_deduplicated_and_routed(
    http: httpx.AsyncClient, topup_settings: Settings, temporal_client: Client, snaic_url: str
) -> None:
    world = await build_world(topup_settings)
    line_id = await provision_line(world)
    headers = await headers_for(http, world)
    # The top-up stays in flight (SNAIC never answers) so the event reaches a running workflow.
    httpx.post(f"{snaic_url}/_sim/config", json={"callbacks_enabled": False}).raise_for_status()
    fault(snaic_url, "complete_one_off_option", "timeout", latency_ms=600_000)
    receipt = (await recharge(http, headers, line_id, "card")).json()
    payment_intent = (await http.get(f"/api/v1/recharges/{receipt['recharge_id']}", headers=headers)).json()[
        "payment_reference"
    ]
    secret = topup_settings.stripe_webhook_secret.get_secret_value()
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    payload = json.dumps(
        {
            "id": event_id,
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": payment_intent, "object": "payment_intent", "status": "succeeded"}},
        }
    ).encode()

    tampered = await http.post(
        "/api/v1/stripe/webhook",
        content=payload.replace(b"succeeded", b"canceled"),
        headers={"Stripe-Signature": signed(payload, secret)},
    )
    assert tampered.status_code == 400
    stale = await http.post(
        "/api/v1/stripe/webhook",
        content=payload,
        headers={"Stripe-Signature": signed(payload, secret, timestamp=1_600_000_000)},
    )
    assert stale.status_code == 400

    first = await http.post(
        "/api/v1/stripe/webhook", content=payload, headers={"Stripe-Signature": signed(payload, secret)}
    )
    assert first.status_code == 200 and first.json() == {"received": True, "routed": True}, first.text
    again = await http.post(
        "/api/v1/stripe/webhook", content=payload, headers={"Stripe-Signature": signed(payload, secret)}
    )
    assert again.json()["duplicate"] is True

    handle = temporal_client.get_workflow_handle_for(TopUpWorkflow.run, receipt["workflow_id"])
    events = await handle.query(TopUpWorkflow.payment_events)
    assert [e.event_id for e in events] == [event_id]
    await handle.cancel()
    final = await wait_terminal(http, headers, receipt["recharge_id"])
    assert final["status"] == "refunded"


# --- auto top-up rule ---------------------------------------------------------------------------


async def test_auto_topup_rule_recharges_a_line_under_its_threshold_once(
    http: httpx.AsyncClient,
    topup_settings: Settings,
    temporal_client: Client,
    localstripe_url: str,
    ocs_base_url: str,
) -> None:
    from datetime import timedelta

    from domain.contracts import AutoTopUpScan
    from domain.models import Line, Rule, TopUp
    from starters.schedules import ensure_schedules
    from workflows.auto_topup import SCHEDULE_ID, AutoTopUpScanWorkflow

    world = await build_world(topup_settings)
    low = await provision_line(world)
    high = await provision_line(world)
    engine = create_engine(topup_settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            session.add(
                Rule(
                    org_id=world.org_id,
                    company_id=world.company_id,
                    name="Recharge auto 1 Go",
                    entity="sim_card",
                    period="permanent",
                    trigger="remaining_usage",
                    condition={"remaining_mb_below": 500},
                    action="auto_top_up",
                    action_params={"data_gb": 1, "payment_method": "card"},
                )
            )
            accounts = {line_id: (await session.get(Line, line_id)).ocs_account for line_id in (low, high)}
    finally:
        await engine.dispose()
    for line_id, megabytes in ((low, 100), (high, 2048)):
        httpx.post(
            f"{ocs_base_url}/jsonrpc",
            json={
                "method": "APIerSv1.SetBalance",
                "id": 1,
                "params": [
                    {
                        "Tenant": topup_settings.ocs_tenant,
                        "Account": accounts[line_id],
                        "BalanceType": "*data",
                        "Value": megabytes * 1_048_576,
                        "Balance": {"ID": "plan-allowance", "Weight": 20},
                    }
                ],
            },
        ).raise_for_status()

    scan_id = f"auto-topup-scan-test-{uuid.uuid4().hex[:8]}"
    started = await temporal_client.execute_workflow(
        AutoTopUpScanWorkflow.run,
        AutoTopUpScan(),
        id=scan_id,
        task_queue=topup_settings.task_queue,
        execution_timeout=timedelta(minutes=2),
    )
    ours = [wf for wf in started if f"/{world.org_id}/" in wf]
    assert len(ours) == 1
    result = await temporal_client.get_workflow_handle_for(TopUpWorkflow.run, ours[0]).result()
    assert result.status == "completed"
    topup = await db_scalar(topup_settings, select(TopUp).where(TopUp.org_id == world.org_id))
    assert topup.line_id == low and topup.source == "rule" and topup.quantity == 1
    # The child top-up is indexed by the keyed hash of its line's number, never by the number.
    child = (await temporal_client.get_workflow_handle(ours[0]).describe()).search_attributes
    line = await db_scalar(topup_settings, select(Line).where(Line.id == low))
    assert child.get("MsisdnHash") == [topup_settings.msisdn_hash(line.msisdn)] and "Msisdn" not in child, child

    # The line is now above its threshold: the next scan starts nothing more for it.
    again = await temporal_client.execute_workflow(
        AutoTopUpScanWorkflow.run,
        AutoTopUpScan(),
        id=f"{scan_id}-2",
        task_queue=topup_settings.task_queue,
        execution_timeout=timedelta(minutes=2),
    )
    assert [wf for wf in again if f"/{world.org_id}/" in wf] == []
    await keep_history(
        temporal_client.get_workflow_handle(scan_id), "AutoTopUpScanWorkflow", "one_line_under_threshold"
    )
    await keep_history(
        temporal_client.get_workflow_handle(f"{scan_id}-2"), "AutoTopUpScanWorkflow", "nothing_under_threshold"
    )
    # The worker creates the schedule that runs the scan; creating it twice is harmless.
    await ensure_schedules(temporal_client, topup_settings)
    await ensure_schedules(temporal_client, topup_settings)
    described = await temporal_client.get_schedule_handle(SCHEDULE_ID).describe()
    assert described.schedule.spec.intervals[0].every == timedelta(seconds=topup_settings.auto_topup_scan_s)
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)


# --- the portal's "Recharge DATA" action ----------------------------------------------------------


async def test_portal_recharge_data_on_selected_lines_creates_deployments_and_shows_progress(
    api_server: ApiServer, topup_settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    import re

    from domain.models import Line, SimCard

    world = await build_world(topup_settings)
    line_ids = [await provision_line(world) for _ in range(2)]
    engine = create_engine(topup_settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            iccids = [
                (await session.get(SimCard, (await session.get(Line, line_id)).sim_id)).iccid for line_id in line_ids
            ]
    finally:
        await engine.dispose()
    csrf = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
    async with httpx.AsyncClient(base_url=api_server.url, timeout=60, headers={"Origin": api_server.url}) as browser:
        login_page = await browser.get("/portal/login")
        await browser.post(
            "/portal/login",
            data={
                "email": world.staff_email,
                "password": STAFF_PASSWORD,
                "next": "/portal/sims",
                "csrf_token": csrf.search(login_page.text).group(1),
            },
        )
        sims_page = await browser.get("/portal/sims")
        assert "Recharge DATA" in sims_page.text
        batch = re.search(r'name="batch" value="([0-9a-f]{32})"', sims_page.text).group(1)
        form = {
            "csrf_token": csrf.search(sims_page.text).group(1),
            "batch": batch,
            "data_gb": "2",
            "payment_method": "wallet",
            "iccid": iccids,
        }
        submitted = await browser.post("/portal/recharges", data=form)
        assert submitted.status_code == 303, submitted.text
        resubmitted = await browser.post("/portal/recharges", data=form)  # a double click recharges nothing twice
        assert resubmitted.status_code == 303
        listing = submitted.headers["location"]
        for _ in range(600):
            rows = await browser.get(listing, headers={"HX-Request": "true"})
            if 'data-live="no"' in rows.text:
                break
            await asyncio.sleep(0.1)
        assert rows.text.count('data-status="completed"') == 2, rows.text
        recharge_id = re.search(r'data-recharge-id="([0-9a-f]{32})"', rows.text).group(1)
        detail = await browser.get(f"/portal/recharges/{recharge_id}")
        assert "Recharge DATA 1Go" in detail.text and "Opérateur de collecte" in detail.text
        assert "add_one_off_option" in detail.text and "Voir dans Temporal" in detail.text
    balance = await db_scalar(
        topup_settings,
        select(func.sum(WalletEntry.amount_minor)).join(Wallet).where(Wallet.company_id == world.company_id),
    )
    assert balance == 10_000 - 2 * 100
    await assert_invariants(topup_settings, world, localstripe_url, ocs_base_url)
