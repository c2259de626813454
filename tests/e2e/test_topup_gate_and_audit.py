"""Top-ups and the rest of the system: the termination gate (a line whose termination is scheduled takes
no top-up, whether the termination came before the request or between the request and the charge), the
audit trail of money movements, and the `payment.created` webhook event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from activities.topups import TopUpActivities
from bench.invariants import stripe_facts
from bench.topup_world import build_world, provision_line
from domain.audit import verify_chain
from domain.contracts import SettleUnstartedTopUps, TopUpInput
from domain.enums import DeploymentStatus, PaymentMethod
from domain.models import AuditLog, Deployment, Line, TopUp, WebhookDelivery, WebhookEndpoint
from domain.security import SecretBox
from domain.services.topups import TopUpRequest, submit_topup
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from integrations.cfast import CfastClient
from integrations.snaic import SnaicClient
from starters.topups import start_topup
from tests.e2e.test_topup import assert_invariants, fault, headers_for, recharge
from tests.e2e.topup_support import ApiServer, serve_api, wait_terminal
from workflows.topup import TopUpWorkflow

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def gate_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"snaic_callback_sla_s": 3})


@pytest.fixture(scope="module")
def api_server(gate_settings: Settings, snaic_url: str) -> Iterator[ApiServer]:
    yield from serve_api(gate_settings, snaic_url)


@pytest_asyncio.fixture
async def http(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
def clean_faults(ocs_base_url: str) -> Iterator[None]:
    yield
    httpx.delete(f"{ocs_base_url}/_sim/faults", timeout=5).raise_for_status()


async def schedule_termination(settings: Settings, line_id: str) -> None:
    """What the deprovisioning workflow's first step does: the termination date closes the top-up gate."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(
                update(Line)
                .where(Line.id == line_id)
                .values(termination_scheduled_for=datetime.now(UTC) + timedelta(days=7))
            )
    finally:
        await engine.dispose()


async def count(settings: Settings, query) -> int:  # type: ignore[no-untyped-def]
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return int((await session.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def write_intent(settings: Settings, line_id: str, method: PaymentMethod, key: str | None = None) -> TopUpInput:
    """What the recharge route does before starting the workflow: the intent, then the workflow input."""
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        request = TopUpRequest(
            line_id=line_id,
            data_gb=1,
            payment_method=method,
            idempotency_key=key or f"intent-{uuid.uuid4().hex}",
            source="api",
            requested_by="intent@test",
        )
        async with sessionmaker() as session:
            submitted = await submit_topup(
                session,
                request,
                principal=None,
                sla_s=settings.snaic_callback_sla_s,
                charge_window_s=settings.topup_charge_window_s,
            )
        assert submitted.created
        return submitted.workflow_input
    finally:
        await engine.dispose()


async def test_line_with_a_scheduled_termination_refuses_a_recharge(
    http: httpx.AsyncClient, gate_settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(gate_settings)
    line_id = await provision_line(world)
    await schedule_termination(gate_settings, line_id)
    headers = await headers_for(http, world)

    response = await recharge(http, headers, line_id, "card")

    assert response.status_code == 409, response.text
    problem = response.json()
    assert "résiliation" in problem["detail"] and "line_id" in response.text
    assert await count(gate_settings, select(func.count()).select_from(TopUp).where(TopUp.line_id == line_id)) == 0
    line = (await http.get(f"/api/v1/lines/{line_id}", headers=headers)).json()
    assert line["accepts_topup"] is False
    await assert_invariants(gate_settings, world, localstripe_url, ocs_base_url)


async def test_termination_scheduled_between_request_and_charge_fails_before_any_charge(
    gate_settings: Settings, temporal_client: Client, localstripe_url: str, ocs_base_url: str
) -> None:
    """The race: the intent is written while the line is still open, the termination closes the gate, then
    the workflow runs. It checks the gate again before charging: failed, nothing charged or credited."""
    world = await build_world(gate_settings)
    line_id = await provision_line(world)
    data = await write_intent(gate_settings, line_id, PaymentMethod.CARD)
    await schedule_termination(gate_settings, line_id)
    receipt = await start_topup(temporal_client, gate_settings, data, msisdn=data.msisdn, iccid=data.iccid)
    result = await temporal_client.get_workflow_handle_for(TopUpWorkflow.run, receipt.workflow_id).result()
    assert receipt.status == "failed" and receipt.payment_status == "refused", receipt
    assert "résiliation" in (receipt.failure_reason or "")
    assert result.status == "failed"
    await assert_invariants(gate_settings, world, localstripe_url, ocs_base_url)
    charges = stripe_facts(localstripe_url, gate_settings.stripe_secret_key.get_secret_value()).charges
    assert charges.get(data.topup_id, 0) == 0


async def test_money_movements_are_audited_once_and_payment_event_is_published(
    http: httpx.AsyncClient, gate_settings: Settings, localstripe_url: str, ocs_base_url: str
) -> None:
    world = await build_world(gate_settings)
    line_id = await provision_line(world)
    engine = create_engine(gate_settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            box = SecretBox(gate_settings.secrets_key.get_secret_value())
            session.add(
                WebhookEndpoint(
                    org_id=world.org_id,
                    url="https://hooks.example.test/simflow",
                    secret_encrypted=box.seal("whsec-test"),
                    events=["payment.created"],
                    enabled=True,
                    validated_at=datetime.now(UTC),
                )
            )
    finally:
        await engine.dispose()
    headers = await headers_for(http, world)

    completed = (await recharge(http, headers, line_id, "card", data_gb=2)).json()
    completed_detail = await wait_terminal(http, headers, completed["recharge_id"])
    assert completed_detail["status"] == "completed"
    fault(ocs_base_url, "APIerSv1.SetBalance", "reject")
    refunded = (await recharge(http, headers, line_id, "wallet", data_gb=1)).json()
    assert (await wait_terminal(http, headers, refunded["recharge_id"]))["status"] == "refunded"

    engine = create_engine(gate_settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = list(
                (
                    await session.execute(
                        select(AuditLog).where(AuditLog.org_id == world.org_id, AuditLog.action.like("topup.%"))
                    )
                ).scalars()
            )
            deliveries = list(
                (await session.execute(select(WebhookDelivery).where(WebhookDelivery.org_id == world.org_id))).scalars()
            )
            chain = await verify_chain(session)
    finally:
        await engine.dispose()

    audited = sorted((row.target, row.action) for row in rows)
    assert audited == sorted(
        [
            (f"recharge:{completed['recharge_id']}", "topup.charge"),
            (f"recharge:{refunded['recharge_id']}", "topup.charge"),
            (f"recharge:{refunded['recharge_id']}", "topup.refund"),
        ]
    )
    charge = next(r for r in rows if r.target == f"recharge:{completed['recharge_id']}")
    assert charge.details["amount_minor"] == 100 and charge.details["payment_method"] == "card"
    assert charge.workflow_id == completed["workflow_id"] and charge.actor_kind == "workflow"
    assert chain.ok, chain

    events = {d.event_id: d for d in deliveries}
    assert set(events) == {f"payment-{completed['recharge_id']}", f"payment-{refunded['recharge_id']}"}
    payment = events[f"payment-{completed['recharge_id']}"]
    assert payment.event_type == "payment.created"
    assert payment.payload["data"]["amount_minor"] == 100
    assert payment.payload["data"]["payment_reference"] == completed_detail["payment_reference"]
    assert str(completed_detail["payment_reference"]).startswith("pi_")
    await assert_invariants(gate_settings, world, localstripe_url, ocs_base_url)


async def test_submit_cut_short_still_leaves_the_topup_running(
    gate_settings: Settings, temporal_client: Client, localstripe_url: str, ocs_base_url: str
) -> None:
    """A saturated worker answers the payment outcome late: the API gives up waiting, and the top-up it
    wrote must run all the same (never an intent left pending with no workflow)."""
    world = await build_world(gate_settings)
    line_id = await provision_line(world)
    impatient = gate_settings.model_copy(update={"topup_submit_timeout_s": 0.0001})
    data = await write_intent(gate_settings, line_id, PaymentMethod.WALLET)
    with pytest.raises(TimeoutError):
        await start_topup(temporal_client, impatient, data, msisdn=data.msisdn, iccid=data.iccid)
    workflow_id = f"topup/{data.org_id}/{data.topup_id}"
    result = await temporal_client.get_workflow_handle_for(TopUpWorkflow.run, workflow_id).result()
    assert result.status == "completed", result
    await assert_invariants(gate_settings, world, localstripe_url, ocs_base_url)


async def test_intents_whose_workflow_never_started_are_closed_without_charge(
    http: httpx.AsyncClient, gate_settings: Settings, temporal_client: Client, localstripe_url: str, ocs_base_url: str
) -> None:
    """The API stopped between writing the intent and starting the workflow: the auto top-up scan's first
    step closes such an intent as failed once it is old enough; one whose workflow exists, and a recent
    one, are left alone. The same key afterwards answers the recorded outcome and starts nothing."""
    world = await build_world(gate_settings)
    line_id = await provision_line(world)
    orphan = await write_intent(gate_settings, line_id, PaymentMethod.CARD, key=f"orphan-{uuid.uuid4().hex}")
    recent = await write_intent(gate_settings, line_id, PaymentMethod.CARD)
    running = await write_intent(gate_settings, line_id, PaymentMethod.WALLET)
    await start_topup(temporal_client, gate_settings, running, msisdn=running.msisdn, iccid=running.iccid)
    running_id = f"topup/{running.org_id}/{running.topup_id}"
    await temporal_client.get_workflow_handle(running_id).result()
    engine = create_engine(gate_settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker.begin() as session:  # an hour old; the running one seen as still pending
            old = datetime.now(UTC) - timedelta(hours=1)
            await session.execute(update(TopUp).where(TopUp.id == orphan.topup_id).values(created_at=old))
            await session.execute(
                update(TopUp).where(TopUp.id == running.topup_id).values(created_at=old, status="pending")
            )
        async with SnaicClient(gate_settings.snaic_url, 5) as snaic, CfastClient(gate_settings.cfast_url, 5) as cfast:
            activities = TopUpActivities(sessionmaker, snaic, cfast)
            env = ActivityEnvironment(client=temporal_client)
            settled = await env.run(activities.settle_unstarted, SettleUnstartedTopUps(older_than_s=600, limit=10_000))
            again = await env.run(activities.settle_unstarted, SettleUnstartedTopUps(older_than_s=600, limit=10_000))
        async with sessionmaker() as session:
            rows = {
                t.id: t
                for t in (
                    await session.execute(
                        select(TopUp).where(TopUp.id.in_([orphan.topup_id, recent.topup_id, running.topup_id]))
                    )
                ).scalars()
            }
            deployment = await session.get(Deployment, rows[orphan.topup_id].deployment_id)
    finally:
        await engine.dispose()
    assert orphan.topup_id in settled.topup_ids and orphan.topup_id not in again.topup_ids
    assert recent.topup_id not in settled.topup_ids and running.topup_id not in settled.topup_ids
    closed = rows[orphan.topup_id]
    assert (closed.status, closed.payment_status) == ("failed", "not_started") and "jamais démarrée" in (
        closed.failure_reason or ""
    )
    assert deployment is not None and deployment.status is DeploymentStatus.FAILED
    assert rows[recent.topup_id].status == "pending" and rows[running.topup_id].status == "pending"

    # The client retries with the same key: the recorded outcome, and still no workflow, no charge.
    headers = await headers_for(http, world)
    retried = await http.post(
        f"/api/v1/lines/{line_id}/recharges",
        json={"data_gb": 1, "payment_method": "card"},
        headers={**headers, "Idempotency-Key": closed.idempotency_key},
    )
    assert retried.status_code == 200 and retried.json()["status"] == "failed", retried.text
    with pytest.raises(RPCError):
        await temporal_client.get_workflow_handle(f"topup/{orphan.org_id}/{orphan.topup_id}").describe()
    charges = stripe_facts(localstripe_url, gate_settings.stripe_secret_key.get_secret_value()).charges
    assert charges.get(orphan.topup_id, 0) == 0
