"""A renewal refund that fails for good reaches the portal home's needs-attention queue, on the real stack
(Temporal dev server, worker, OCS simulator, localstripe behind the Stripe proxy): the card is charged, the OCS
refuses the grant, the proxy refuses the refund; the subscription waits in `needs_attention`, staff retry the
refund from the home page once Stripe answers again — a line's, and a pool's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client

from activities.subscriptions import start_subscription_workflow
from domain.enums import PlanType, PoolKind, SubscriptionKind
from domain.lifecycle_contracts import AttentionState
from domain.models import Line, Plan, Pool, Refund, Subscription
from domain.pools import pool_ocs_account
from domain.subscription_contracts import SubscriptionInput, charge_key
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.e2e.lifecycle_support import add_fault, clear_faults
from tests.e2e.test_portal_bulk import csrf, staff  # noqa: F401 - `staff` is a fixture
from tests.e2e.test_subscription_api import card_paying_line
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def stripe_faults_cleared(stripe_url: str, ocs_base_url: str) -> Iterator[None]:
    yield
    clear_faults(stripe_url, ocs_base_url)


async def _attention_when(client: Client, workflow_id: str, ready: Callable[[AttentionState], bool]) -> AttentionState:
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(600):
        state = await handle.query(SubscriptionWorkflow.attention_state)
        if ready(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id}: never reached, last {state}")


async def test_a_renewal_refund_refused_for_good_waits_on_the_home_queue_until_staff_retry(
    staff: httpx.AsyncClient,  # noqa: F811
    settings: Settings,
    temporal_client: Client,
    stripe_url: str,
    stripe_faults_cleared: None,
) -> None:
    world, line_id = await card_paying_line(settings)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            line = await session.get(Line, line_id)
            assert line is not None
            line.next_renewal_on = datetime.now(UTC).date()  # due now: the workflow renews at once
            line.ocs_account = f"ocs-missing-{uuid.uuid4().hex[:12]}"  # the OCS refuses the grant for good
            plan = await session.get(Plan, line.plan_id)
            assert plan is not None
            plan.data_allowance_bytes = 1 << 30  # a grant to make
            msisdn = line.msisdn
    finally:
        await engine.dispose()
    # Refused for good (not retried): this organisation's refund only (its key holds the workflow id).
    add_fault(stripe_url, "create_refund", "reject", match=world.org_id)

    workflow_id = await start_subscription_workflow(
        temporal_client,
        settings.task_queue,
        SubscriptionInput(org_id=world.org_id, company_id=world.company_id, line_id=line_id),
        msisdn_hash=None,
    )
    state = await _attention_when(temporal_client, workflow_id, lambda s: s.attention is not None)
    assert state.status == "needs_attention" and state.attention and "refund" in state.attention

    # The home queue lists it, named after its line, with the action that answers it.
    row = f'data-kind="renewal_refund" data-workflow-id="{workflow_id}"'
    for _ in range(100):  # visibility follows the search attribute a little later
        home = await staff.get("/portal/home")
        if row in home.text:
            break
        await asyncio.sleep(0.1)
    assert home.status_code == 200 and row in home.text, home.text[-3000:]
    assert "Renouvellement : remboursement en échec" in home.text and (msisdn or line_id) in home.text
    assert f'action="/portal/lines/{line_id}/compensation"' in home.text

    clear_faults(stripe_url)
    answered = await staff.post(
        f"/portal/lines/{line_id}/compensation",
        data={"csrf_token": csrf(home.text), "workflow_id": workflow_id, "action": "retry", "note": "Stripe revenu"},
    )
    assert answered.status_code == 303 and "done=compensation" in answered.headers["location"], answered.text
    await _attention_when(temporal_client, workflow_id, lambda s: s.attention is None and s.status == "dunning")

    key = charge_key(workflow_id, 1)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            refunds = (await session.execute(select(Refund).where(Refund.reference == f"{key}:refund"))).scalars()
            subscription = (
                await session.execute(select(Subscription).where(Subscription.workflow_id == workflow_id))
            ).scalar_one()
            assert [r.stripe_refund_id is not None for r in refunds] == [True]
            assert subscription.status == "dunning" and subscription.period == 0
    finally:
        await engine.dispose()
    await temporal_client.get_workflow_handle(workflow_id).execute_update(SubscriptionWorkflow.cancel)


async def _home_row(staff: httpx.AsyncClient, row: str) -> str:  # noqa: F811
    for _ in range(100):  # visibility follows the search attribute a little later
        home = await staff.get("/portal/home")
        if row in home.text:
            return home.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"not on the home page: {row}")


async def test_a_pool_renewal_refund_refused_for_good_is_answered_from_the_pool_on_the_home_queue(
    staff: httpx.AsyncClient,  # noqa: F811
    settings: Settings,
    temporal_client: Client,
    stripe_url: str,
    ocs_base_url: str,
    stripe_faults_cleared: None,
) -> None:
    world, _ = await card_paying_line(settings)  # the company pays by its saved card, no wallet
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            plan = Plan(
                org_id=world.org_id,
                name="Pool statique 10 Go",
                plan_type=PlanType.SUBSCRIPTION,
                subscription_kind=SubscriptionKind.STATIC_POOL,
                price_minor=2500,
                data_allowance_bytes=10 << 30,
                validity_days=30,
                carrier="Orange",
            )
            session.add(plan)
            await session.flush()
            pool = Pool(
                org_id=world.org_id, company_id=world.company_id, name="Camions", kind=PoolKind.STATIC, plan_id=plan.id
            )
            session.add(pool)
            await session.flush()
            pool.ocs_account = pool_ocs_account(pool.id)
            pool_id = pool.id
    finally:
        await engine.dispose()
    # The pool's first grant, refused for good, then its refund: theirs only, on the shared simulators.
    add_fault(ocs_base_url, "APIerSv1.SetBalance", "reject", match=pool_ocs_account(pool_id))
    add_fault(stripe_url, "create_refund", "reject", match=world.org_id)

    workflow_id = await start_subscription_workflow(
        temporal_client,
        settings.task_queue,
        SubscriptionInput(org_id=world.org_id, company_id=world.company_id, pool_id=pool_id),
        msisdn_hash=None,
    )
    state = await _attention_when(temporal_client, workflow_id, lambda s: s.attention is not None)
    assert state.attention and "refund" in state.attention

    home = await _home_row(staff, f'data-kind="renewal_refund" data-workflow-id="{workflow_id}"')
    assert f'action="/portal/pools/{pool_id}/compensation"' in home
    clear_faults(stripe_url, ocs_base_url)
    refused = await staff.post(
        f"/portal/pools/{pool_id}/compensation", data={"csrf_token": csrf(home), "action": "guess", "note": ""}
    )
    assert refused.status_code == 422 and "Décision inconnue." in refused.text
    answered = await staff.post(
        f"/portal/pools/{pool_id}/compensation",
        data={"csrf_token": csrf(home), "action": "retry", "note": "Stripe revenu"},
    )
    assert answered.status_code == 303 and "done=compensation" in answered.headers["location"], answered.text
    await _attention_when(temporal_client, workflow_id, lambda s: s.attention is None and s.status == "dunning")
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            key = f"{charge_key(workflow_id, 1)}:refund"
            refunds = (await session.execute(select(Refund).where(Refund.reference == key))).scalars().all()
    finally:
        await engine.dispose()
    assert len(refunds) == 1
    await temporal_client.get_workflow_handle(workflow_id).execute_update(SubscriptionWorkflow.cancel)
