"""A renewal refund that fails for good reaches the portal home's needs-attention queue, on the real stack
(Temporal dev server, worker, OCS simulator, localstripe behind the Stripe proxy): the card is charged, the OCS
refuses the grant (the line's account does not exist there), the proxy refuses the refund; the subscription
waits in `needs_attention`, staff retry the refund from the home page once Stripe answers again."""

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
from domain.lifecycle_contracts import AttentionState
from domain.models import Line, Plan, Refund, Subscription
from domain.subscription_contracts import SubscriptionInput, charge_key
from infra.db import create_engine, create_sessionmaker
from infra.settings import Settings
from tests.e2e.lifecycle_support import add_fault, clear_faults
from tests.e2e.test_portal_bulk import csrf, staff  # noqa: F401 - `staff` is a fixture
from tests.e2e.test_subscription_api import card_paying_line
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def stripe_faults_cleared(stripe_url: str) -> Iterator[None]:
    yield
    clear_faults(stripe_url)


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
    add_fault(stripe_url, "create_refund", "reject")  # refused for good: not retried

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
